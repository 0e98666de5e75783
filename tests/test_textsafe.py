"""Hostile text is made inert before any terminal sees it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icwschat.textsafe import inert

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


@given(st.text())
def test_anything_comes_out_printable(text: str) -> None:
    shown = inert(text)
    assert all(c == "\n" or c.isprintable() or ord(c) > 0x9F for c in shown)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in shown)
