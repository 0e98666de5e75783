"""JSON in and out at speed, and the same text as the standard library for every string.

orjson parses and writes several times faster than the standard library, which is what makes ``replay`` fast.
It refuses a few things the standard library takes: lone surrogates (``"\\ud800"``, which hostile chat
text may carry) and NaN; those fall back to the standard library, so every string comes out exactly as the
standard library would write it. Differences remain only in numbers ICWS does not send: integers beyond
64 bits are read as floats, floats may be spelled differently (``1.5e-7`` for ``1.5e-07``), and NaN or
infinity (not JSON at all) are written as ``null``.

A document nested deeper than either parser goes (orjson stops at 1024 levels, the standard library at the
interpreter's recursion limit) is not JSON here: ``ValueError`` like any other, never ``RecursionError``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    """Parse one JSON document; raises ``ValueError`` when neither parser accepts it."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deep to read") from None


def loads_all(documents: list[bytes]) -> list[Any]:
    """Parse every document, in one pass when orjson takes them all; raises ``ValueError``."""
    try:
        return [orjson.loads(document) for document in documents]
    except orjson.JSONDecodeError:
        return [loads(document) for document in documents]


def stdlib_line(value: Any) -> bytes:
    """The reference encoding: compact, UTF-8 text kept as is, text UTF-8 cannot carry left escaped."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def dumps_lines(values: list[Any]) -> bytes:
    """Compact UTF-8 JSON lines, one per value, byte for byte what :func:`stdlib_line` gives for chat data."""
    try:
        return b"".join([orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE) for value in values])
    except TypeError:
        return b"".join(map(_line, values))


def _line(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return stdlib_line(value)
