"""JSON in and out at speed, and the same text as the standard library for every string.

orjson parses and writes several times faster than the standard library, which is what makes ``replay`` fast.
It refuses a few things the standard library takes: lone surrogates (``"\\ud800"``, which hostile chat
text may carry) and NaN; those fall back to the standard library, so every string comes out exactly as the
standard library would write it. Differences remain only in numbers ICWS does not send: integers beyond
64 bits are read as floats, floats may be spelled differently (``1.5e-7`` for ``1.5e-07``), and NaN or
infinity (not JSON at all) are written as ``null``.

A document nested deeper than :data:`MAX_DEPTH` is not JSON here: ``ValueError`` like any other. orjson reads
1024 levels and the standard library up to the recursion limit, but ``repr()`` and the standard library's
writer give up near 1000 levels less the caller's stack, so such a message would crash whatever reports or
writes it.
"""

from __future__ import annotations

import io
import itertools
import json
from typing import Any

import orjson

MAX_DEPTH = 512
"""Levels of arrays and objects a document may nest: ICWS nests half a dozen, and ``repr()`` handles this
many with room to spare."""
_TOO_DEEP = f"JSON nested too deep to read (more than {MAX_DEPTH} levels)"
_SHALLOW_LENGTH = 2 * MAX_DEPTH
"""A document this long or shorter cannot nest too deep: each level takes two brackets."""


def loads(data: bytes | str) -> Any:
    """Parse one JSON document; raises ``ValueError`` when neither parser accepts it, or it nests too deep."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(data)
        except RecursionError:
            raise ValueError(_TOO_DEEP) from None
    if len(data) > _SHALLOW_LENGTH:
        _check_depth(data, value)
    return value


def loads_all(documents: list[bytes]) -> list[Any]:
    """Parse every document, in one pass when orjson takes them all; raises ``ValueError``."""
    try:
        values = [orjson.loads(document) for document in documents]
    except orjson.JSONDecodeError:
        return [loads(document) for document in documents]
    # Nearly every message is short: the long ones are picked out without a Python loop over all of them.
    if documents and max(map(len, documents)) > _SHALLOW_LENGTH:
        longer = map(_SHALLOW_LENGTH.__lt__, map(len, documents))
        for document, value in itertools.compress(zip(documents, values, strict=True), longer):
            _check_depth(document, value)
    return values


def _check_depth(document: bytes | str, value: Any) -> None:
    # Nor can a document nest deeper than its count of opening brackets, which is far quicker to take than
    # a walk over the value.
    raw = document.encode() if isinstance(document, str) else document
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise ValueError(_TOO_DEEP)


def _deeper_than(value: Any, limit: int) -> bool:
    pending = [(value, 1)] if isinstance(value, (dict, list)) else []
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def stdlib_line(value: Any) -> bytes:
    """The reference encoding: compact, UTF-8 text kept as is, text UTF-8 cannot carry left escaped."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def dumps_lines(values: list[Any]) -> bytes:
    """Compact UTF-8 JSON lines, one per value, byte for byte what :func:`stdlib_line` gives for chat data.

    Each line goes into one buffer as soon as it is made, rather than all kept for a join: orjson makes
    each in a buffer of its own, and a batch's worth of those, freed together, is memory the C allocator
    gives back to the system and takes back, page fault by page fault, for the next batch (a fifth of a
    replay's CPU time, in the kernel, where instruction counts do not look).
    """
    try:
        out = io.BytesIO()
        for value in values:
            out.write(orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE))
        return out.getvalue()
    except TypeError:
        return b"".join(map(_line, values))


def _line(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return stdlib_line(value)
