"""Parsers of untrusted input: SSE framing, timestamps, and the message fuzzing the watcher relies on."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone
from typing import Any

import pytest
from builders import IID
from hypothesis import given, settings
from hypothesis import strategies as st

from icwschat.cache import ChatCache
from icwschat.models import BadMessage, format_timestamp, parse_timestamp
from icwschat.transport import SSEParser

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def feed_in_pieces(stream: bytes, cuts: list[int]) -> list[tuple[str, str]]:
    parser = SSEParser()
    events = []
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for start, end in itertools.pairwise(points):
        events += [(e.event, e.data) for e in parser.feed(stream[start:end])]
    return events


def test_sse_fields_comments_and_multiline_data() -> None:
    stream = b"\xef\xbb\xbf: hello\r\nid: 7\r\nevent: ping\ndata: a\n\ndata:  b\rdata: c\r\n\r\nretry: 50\n\n"
    parser = SSEParser()
    events = parser.feed(stream)
    assert [(e.event, e.data, e.id) for e in events] == [("ping", "a", "7"), ("message", " b\nc", "7")]
    assert parser.retry_ms == 50


messages = st.lists(
    st.dictionaries(st.text(max_size=5), st.text(max_size=20) | st.integers(), max_size=3), max_size=5
)


@settings(max_examples=300)
@given(messages, st.lists(st.integers(min_value=0), max_size=20), st.sampled_from(["\n", "\r\n", "\r"]))
def test_sse_events_survive_any_chunking(
    payloads: list[dict[str, Any]], cuts: list[int], newline: str
) -> None:
    text = "".join(
        f":ping{newline}data: {json.dumps(p, ensure_ascii=False)}{newline}{newline}" for p in payloads
    )
    events = feed_in_pieces(text.encode(), cuts)
    assert [json.loads(data) for _, data in events] == payloads


@pytest.mark.parametrize(
    ("wire", "extended"),
    [
        ("20201029T082018Z", "2020-10-29T08:20:18Z"),
        ("20201029T0820Z", "2020-10-29T08:20:00Z"),
        ("2020-10-29T08:20:18.123Z", "2020-10-29T08:20:18.123Z"),
        ("2020-10-29T10:20:18+02:00", "2020-10-29T08:20:18Z"),
        ("20201029T082018.5Z", "2020-10-29T08:20:18.5Z"),
    ],
)
def test_timestamps_in_both_forms(wire: str, extended: str) -> None:
    assert format_timestamp(parse_timestamp(wire)) == extended


@pytest.mark.parametrize("bad", ["", "yesterday", "20201329T082018Z", 20201029, None, "2020-10-29T08:20:18"])
def test_bad_timestamps_are_bad_messages(bad: Any) -> None:
    with pytest.raises(BadMessage):
        parse_timestamp(bad)


@given(st.datetimes(timezones=st.just(timezone.utc)))
def test_timestamp_round_trip(moment: datetime) -> None:
    assert parse_timestamp(format_timestamp(moment)) == moment


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
chat_types = st.sampled_from(
    [
        "urn:inin.com:interactions.chat:chatMembersMessage",
        "urn:inin.com:interactions.chat:chatContentsMessage",
        "urn:inin.com:interactions:interactionChangedMessage",
        "urn:inin.com:interactions:interactionDeallocatedMessage",
        "urn:inin.com:something:unknown",
    ]
)
field_names = st.sampled_from(
    [
        "isDelta",
        "membersAdded",
        "membersChanged",
        "membersRemoved",
        "messagesAdded",
        "attributes",
        "interactionID",
    ]
)
hostile_messages = st.builds(
    lambda kind, fields, extra: {
        "__type": kind,
        "interactionId": IID,
        "interactionID": IID,
        **fields,
        **extra,
    },
    chat_types,
    st.dictionaries(field_names, json_values, max_size=5),
    st.dictionaries(st.text(max_size=8), json_values, max_size=2),
)


@settings(max_examples=500)
@given(st.lists(hostile_messages | json_values, max_size=8))
def test_fuzzed_messages_never_crash_or_corrupt_the_cache(batch: list[Any]) -> None:
    cache = ChatCache(IID)
    for message in batch:
        try:
            outcome = cache.apply(message, AT)
        except BadMessage:
            continue
        for event in outcome.events:
            json.dumps(event.to_json())
    assert all(isinstance(k, tuple) and len(k) == 2 for k in cache.members)
    assert all(isinstance(line.text, str) for line in cache.transcript)
