"""Parsers of untrusted input: SSE framing, timestamps, and the message fuzzing the watcher relies on."""

from __future__ import annotations

import contextlib
import itertools
import json
import pickle
from datetime import datetime, timezone
from typing import Any

import pytest
from builders import IID
from hypothesis import given, settings
from hypothesis import strategies as st

from icwschat import jsonio
from icwschat.cache import ChatCache
from icwschat.models import (
    BadMessage,
    MemberType,
    canonical_timestamp,
    format_timestamp,
    member,
    parse_member,
    parse_timestamp,
)
from icwschat.transport import SSEParser
from icwschat.updates import parse_messages

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


basic_forms = st.builds(
    lambda digits, suffix: digits[:8] + "T" + digits[8:] + suffix,
    st.text(alphabet="0123456789", min_size=14, max_size=14),
    st.sampled_from(["Z", "Z ", "", "z"]),
)


@settings(max_examples=500)
@given(basic_forms | st.text(max_size=20) | st.datetimes().map(lambda d: d.strftime("%Y%m%dT%H%M%SZ")))
def test_canonical_timestamp_is_format_of_parse(wire: str) -> None:
    """The text-only fast path agrees with the datetime path on every input, bad ones included."""
    try:
        expected: str | None = format_timestamp(parse_timestamp(wire))
    except BadMessage:
        expected = None
    try:
        got: str | None = canonical_timestamp(wire)
    except BadMessage:
        got = None
    assert got == expected


def reference_member(data: Any) -> tuple[str, str, str, MemberType, bool]:
    """parse_member as the protocol doc reads, written the slow and obvious way."""
    if not isinstance(data, dict) or not isinstance(data.get("userId"), str):
        raise BadMessage("no member")
    interaction = data.get("interactionId")
    name = data.get("displayName")
    kind = data.get("chatMemberType")
    return (
        data["userId"],
        interaction if isinstance(interaction, str) and interaction else IID,
        name if isinstance(name, str) else data["userId"],
        MemberType(kind) if type(kind) is int and kind in range(5) else MemberType.NONE,
        data.get("isTyping") is True,
    )


member_fields = st.fixed_dictionaries(
    {},
    optional={
        "userId": st.text(max_size=5) | json_values,
        "interactionId": st.sampled_from(["", IID, "9"]) | json_values,
        "displayName": st.text(max_size=5) | json_values,
        "chatMemberType": st.integers(-1, 6) | json_values,
        "isTyping": st.booleans() | json_values,
    },
)


@settings(max_examples=500)
@given(member_fields | json_values)
def test_parse_member_matches_the_reference(data: Any) -> None:
    try:
        expected: Any = reference_member(data)
    except BadMessage:
        expected = None
    try:
        m = member(*parse_member(data, default_interaction=IID))
        got: Any = (m.user_id, m.interaction_id, m.display_name, m.type, m.is_typing)
    except BadMessage:
        got = None
    assert got == expected


text_with_surrogates = st.text(alphabet=st.characters(), max_size=20) | st.just("\ud83d x \x1b\u202e")
# Integers orjson reads within 64 bits; beyond that it reads a float (documented in icwschat.jsonio).
wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text_with_surrogates,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text_with_surrogates, inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=500)
@given(wire_values)
def test_fast_json_reads_back_what_the_stdlib_reads(value: Any) -> None:
    line = jsonio.dumps_lines([value])
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert json.loads(line) == json.loads(jsonio.stdlib_line(value))
    assert jsonio.loads(line) == json.loads(line)


@given(st.lists(st.recursive(text_with_surrogates, lambda inner: st.lists(inner, max_size=4), max_leaves=20)))
def test_fast_json_writes_text_byte_for_byte_as_the_stdlib(values: list[Any]) -> None:
    # A batch mixing what orjson takes with what only the stdlib takes still comes out line for line.
    assert jsonio.dumps_lines(values) == b"".join(map(jsonio.stdlib_line, values))


@given(st.lists(st.binary(max_size=8) | st.builds(jsonio.stdlib_line, wire_values), max_size=6))
def test_a_batch_reads_as_its_lines_read_one_by_one(documents: list[bytes]) -> None:
    def each(document: bytes) -> Any:
        try:
            return ("ok", jsonio.loads(document))
        except ValueError:
            return ("bad", None)

    expected = [each(document) for document in documents]
    try:
        assert [("ok", value) for value in jsonio.loads_all(documents)] == expected
    except ValueError:
        assert ("bad", None) in expected


@pytest.mark.parametrize("text", [b'"\\ud800"', b"NaN", b'{"a": [1, "\\udfff"]}'])
def test_json_the_fast_parser_refuses_falls_back_to_the_stdlib(text: bytes) -> None:
    assert json.dumps(jsonio.loads(text)) == json.dumps(json.loads(text))


@settings(max_examples=300)
@given(st.lists(hostile_messages | json_values, max_size=8))
def test_a_batch_with_bad_messages_applies_the_good_ones(batch: list[Any]) -> None:
    one_by_one = ChatCache(IID)
    events = []
    for message in batch:
        with contextlib.suppress(ValueError):
            events += one_by_one.apply(message, AT).events
    together = ChatCache(IID)
    outcome = together.apply_all(batch, AT)
    assert outcome.events == events
    assert together.members == one_by_one.members and together.transcript == one_by_one.transcript


@settings(max_examples=300)
@given(st.lists(hostile_messages | json_values, max_size=8))
def test_updates_parsed_elsewhere_apply_as_the_messages_do(batch: list[Any]) -> None:
    # replay parses in a second process: its updates cross a pipe pickled, then apply as in one process.
    updates, problems = parse_messages(batch)
    crossed = pickle.loads(pickle.dumps((updates, problems)))
    assert crossed == (updates, problems)
    here, there = ChatCache(IID), ChatCache(IID)
    assert there.apply_updates(crossed[0], AT, crossed[1]) == here.apply_all(batch, AT)
    assert there.members == here.members and there.transcript == here.transcript
