"""Hostile files and documents: JSON nested past any parser, a state directory others could write,
symbolic links planted where icwschat writes, and a stored session that was damaged."""

from __future__ import annotations

import pytest

from icwschat import jsonio

DEEP = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b'["\\ud800",' + b"[" * 3_000 + b"]" * 3_001,  # a lone surrogate: only the standard library reads it
]


@pytest.mark.parametrize("document", DEEP, ids=["arrays", "objects", "stdlib only"])
def test_json_nested_too_deep_is_not_json(document: bytes) -> None:
    with pytest.raises(ValueError, match="nested too deep"):
        jsonio.loads(document)
    with pytest.raises(ValueError, match="nested too deep"):
        jsonio.loads_all([b"{}", document])


def test_json_as_deep_as_the_fast_parser_takes_is_read() -> None:
    assert jsonio.loads(b"[" * 500 + b"]" * 500) == jsonio.loads_all([b"[" * 500 + b"]" * 500])[0]
