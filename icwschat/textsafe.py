"""Making server text inert before it reaches a terminal.

Chat lines and member names come from the public internet. Every control character (C0 but newline, DEL,
C1), and so every escape sequence (CSI, OSC titles, hyperlinks and clipboard writes, DCS, APC), plus the
invisible bidirectional overrides that reorder what a reader sees, is replaced by a visible placeholder.
Rich markup is not interpreted because callers hand the result to ``rich.text.Text``, never to markup.

Other invisible characters stay: zero-width joiners and non-joiners (emoji sequences and Indic scripts need
them), byte order marks, soft hyphens, tags, private use and unassigned code points; a terminal draws them
or nothing, and acts on none of them.
"""

from __future__ import annotations

import re

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_SEPARATORS = "\u2028\u2029"
"""Unicode's line and paragraph separators: line breaks to Unicode, nothing or a box to most terminals, so a
name could hide a break in them; shown as the newline they mean."""
_ACTIVE = f"\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}{_SEPARATORS}"
_UNSAFE = re.compile(f"[{_ACTIVE}]|[\ud800-\udfff]")
_ACTIVE_IN_JSON = re.compile(f"[{_ACTIVE}]")


def _placeholder(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode "control pictures": ␛ for ESC, ␇ for BEL
    if code == 0x7F:
        return "␡"
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    if char in _SEPARATORS:
        return "\n"
    return f"<U+{code:04X}>"


def inert(text: str, *, multiline: bool = True) -> str:
    """``text`` with every control, escape and bidi-override character made visible and harmless.

    Tabs become spaces; newlines (and Unicode's line and paragraph separators) stay when ``multiline`` (chat
    text), else they are shown as ``␊`` (names).
    """
    text = _UNSAFE.sub(_placeholder, text.replace("\t", "    "))
    if not multiline:
        text = text.replace("\n", "␊")
    return text


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def inert_json(lines: bytes) -> bytes:
    """JSON lines in UTF-8 with every character :func:`inert` replaces written as a ``\\uXXXX`` escape: the
    same values once decoded, and nothing a terminal acts on.

    Only for JSON as :mod:`icwschat.jsonio` writes it, compact with a newline after each value: those
    characters can then stand only inside strings, where an escape means the same. Lone surrogates are
    escaped by the writer already (UTF-8 cannot carry them).
    """
    return _ACTIVE_IN_JSON.sub(_json_escape, lines.decode()).encode()
