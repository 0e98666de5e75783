"""Making server text inert before it reaches a terminal.

Chat lines and member names come from the public internet. Every control character (C0 but newline, DEL,
C1), and so every escape sequence (CSI, OSC titles, hyperlinks and clipboard writes, DCS, APC), plus the
invisible bidirectional overrides that reorder what a reader sees, is replaced by a visible placeholder.
Rich markup is not interpreted because callers hand the result to ``rich.text.Text``, never to markup.
"""

from __future__ import annotations

import re

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]|[\ud800-\udfff]")


def _placeholder(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode "control pictures": ␛ for ESC, ␇ for BEL
    if code == 0x7F:
        return "␡"
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return f"<U+{code:04X}>"


def inert(text: str, *, multiline: bool = True) -> str:
    """``text`` with every control, escape and bidi-override character made visible and harmless.

    Tabs become spaces; newlines stay when ``multiline`` (chat text), else they are shown as ``␊`` (names).
    """
    text = text.replace("\t", "    ")
    if not multiline:
        text = text.replace("\n", "␊")
    return _UNSAFE.sub(_placeholder, text)
