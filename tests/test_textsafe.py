"""Hostile text is made inert before any terminal sees it."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from typing import Any

import pytest
from builders import contents_msg, line, member, members_msg
from hypothesis import given
from hypothesis import strategies as st

from icwschat.jsonio import dumps_lines
from icwschat.replay import replay
from icwschat.sinks import JSONSink, RawSink
from icwschat.textsafe import inert, inert_json

CORPUS = {
    "csi clear": "\x1b[2J\x1b[H",
    "csi colour": "\x1b[31mred\x1b[0m",
    "osc title": "\x1b]0;pwned\x07",
    "osc 2 title": "\x1b]2;pwned\x1b\\",
    "osc 8 hyperlink": "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07",
    "osc 52 clipboard": "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07",
    "dcs": "\x1bP1$r0m\x1b\\",
    "apc": "\x1b_Gf=100;AAAA\x1b\\",
    "bare esc": "a\x1bb",
    "c1 csi": "\x9b2J",
    "c1 osc": "\x9d0;pwned\x9c",
    "bel": "ding\x07",
    "backspace": "over\bwrite",
    "carriage return": "safe\rUNSAFE",
    "rtl override": "abc\u202eevil\u202c",
    "isolates": "\u2066x\u2069",
    "nul": "a\x00b",
    "del": "a\x7fb",
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_is_inert(name: str) -> None:
    shown = inert(CORPUS[name])
    assert not any(ord(c) < 0x20 and c != "\n" for c in shown)
    assert not any(0x7F <= ord(c) <= 0x9F for c in shown)
    assert not any(c in shown for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def test_placeholders_stay_visible() -> None:
    assert inert("\x1b]0;t\x07") == "␛]0;t␇"
    assert inert("a\u202eb") == "a<U+202E>b"
    assert inert("a\tb") == "a    b"


def test_names_lose_their_newlines_text_keeps_them() -> None:
    assert inert("two\nlines") == "two\nlines"
    assert inert("two\nlines", multiline=False) == "two␊lines"


def test_line_and_paragraph_separators_are_the_line_breaks_they_mean() -> None:
    assert inert("one\u2028two\u2029three") == "one\ntwo\nthree"
    assert inert("one\u2028two", multiline=False) == "one␊two"


BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
KEPT = "\u200b\u200c\u200d\ufeff\u00ad\U000e0041"
"""Invisible but inert: zero-width (non-)joiners that emoji and Indic scripts need, BOM, soft hyphen, tags."""


ANY_CODE_POINT = st.characters(exclude_categories=())
"""Lone surrogates too: JSON escapes (``"\\ud800"``) carry them, and the standard library decodes them."""


@given(st.text(alphabet=ANY_CODE_POINT) | st.text(alphabet=BIDI + KEPT + "\x1b\x9b\u2028\n\t"))
def test_anything_a_server_can_send_comes_out_inert(text: str) -> None:
    for multiline in (True, False):
        shown = inert(text, multiline=multiline)
        # Controls (Cc), lone surrogates (Cs), line and paragraph separators (Zl, Zp) and bidi formatting
        # never come out; other invisible characters (format, private use, unassigned) are inert.
        assert all(
            (c == "\n" and multiline) or unicodedata.category(c) not in ("Cc", "Cs", "Zl", "Zp")
            for c in shown
        )
        assert not set(shown) & set(BIDI)
        assert set(text) & set(KEPT) <= set(shown)


ACTIVE_BYTES = re.compile(
    "|".join(
        re.escape(c) for c in ["\x1b", "\x7f", *map(chr, range(0x80, 0xA0)), *BIDI, "\u2028", "\u2029"]
    ).encode()
)
"""What must not reach a terminal raw from ``--json`` or ``--raw``, as UTF-8."""
HOSTILE = [
    "\x1b]0;pwned\x07\x1b[2J",
    "\x9b2J\x9d0;t\x9c",
    "a\u202eb\u2066c\u200fd",
    "e\x7ff",
    "g\u2028h",
    "\ud800!",
]


def active_bytes(data: bytes) -> list[bytes]:
    return ACTIVE_BYTES.findall(data.replace(b"\n", b""))


@given(st.lists(st.text(alphabet=ANY_CODE_POINT), max_size=4))
def test_json_made_inert_decodes_to_the_same_values(texts: list[str]) -> None:
    data = inert_json(dumps_lines([{"text": t} for t in texts]))
    assert [json.loads(line)["text"] for line in data.splitlines()] == texts
    assert active_bytes(data) == []


def test_json_on_a_terminal_carries_the_exact_text_and_nothing_a_terminal_acts_on() -> None:
    messages = [
        members_msg(delta=False, added=[member("jane", HOSTILE[0])]),
        contents_msg(*(line("jane", text) for text in HOSTILE), delta=False),
    ]
    capture = io.BytesIO(dumps_lines(messages))
    written: dict[bool, bytes] = {}
    for terminal in (False, True):
        out = io.BytesIO()
        capture.seek(0)
        replay(capture, "capture", JSONSink(out, io.StringIO(), terminal=terminal), parallel=False)
        written[terminal] = out.getvalue()
    assert active_bytes(written[False])  # the fast path writes UTF-8 as it is; only a terminal needs more
    assert active_bytes(written[True]) == []
    decoded = {
        terminal: [json.loads(line) for line in data.splitlines()] for terminal, data in written.items()
    }
    for event in decoded[False] + decoded[True]:
        del event["at"]  # the moment of the replay
    assert [e["text"] for e in decoded[True] if e["event"] == "message"] == HOSTILE
    assert decoded[True] == decoded[False]


def test_raw_on_a_terminal_carries_the_exact_messages_and_nothing_a_terminal_acts_on() -> None:
    messages: list[Any] = [contents_msg(line("jane", text)) for text in HOSTILE]
    out = io.BytesIO()
    RawSink(out, io.StringIO(), terminal=True).raw(messages)
    assert active_bytes(out.getvalue()) == []
    assert [json.loads(line) for line in out.getvalue().splitlines()] == messages
