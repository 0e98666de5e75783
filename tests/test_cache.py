"""The pure cache: documented isDelta semantics, contract events, reconciliation, and tolerance."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from builders import IID, contents_msg, line, member, members_msg
from hypothesis import given, settings
from hypothesis import strategies as st

from icwschat.cache import ChatCache, overlap
from icwschat.events import Event

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def apply_all(cache: ChatCache, *messages: Any) -> list[Event]:
    events: list[Event] = []
    for message in messages:
        events.extend(cache.apply(message, AT).events)
    return events


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def test_first_snapshot_is_history_and_carries_typing_in_the_member() -> None:
    cache = ChatCache(IID)
    events = apply_all(
        cache,
        members_msg(delta=False, added=[member("a", typing=True), member("b")]),
        contents_msg(line("a", "hi"), line("b", "yo"), delta=False),
    )
    assert kinds(events) == ["member_joined", "member_joined", "message", "message"]
    assert all(e.history for e in events)
    assert events[0].to_json()["member"]["isTyping"] is True
    assert cache.has_snapshot


def test_snapshot_clears_and_replaces_members_and_transcript_separately() -> None:
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False, added=[member("a")]), contents_msg(line("a", "1"), delta=False))
    apply_all(cache, members_msg(added=[member("b")]))
    assert set(cache.members) == {("a", IID), ("b", IID)}
    apply_all(cache, members_msg(delta=False, added=[member("c")]))
    assert set(cache.members) == {("c", IID)}
    assert [ln.text for ln in cache.transcript] == ["1"]


def test_duplicate_add_is_a_rename() -> None:
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False, added=[member("v", "Jane")]))
    events = apply_all(cache, members_msg(added=[member("v", "Jane Doe")]))
    assert kinds(events) == ["member_changed"]
    assert events[0].to_json()["previous"]["displayName"] == "Jane"
    assert cache.members[("v", IID)].display_name == "Jane Doe"


def test_members_are_keyed_by_user_and_interaction() -> None:
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False, added=[member("u", iid=IID), member("u", iid="2002")]))
    assert len(cache.members) == 2
    events = apply_all(cache, members_msg(removed=[member("u", iid="2002")]))
    assert kinds(events) == ["member_left"]
    assert list(cache.members) == [("u", IID)]


def test_typing_events_come_from_transitions_only() -> None:
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False, added=[member("a")]))
    events = apply_all(
        cache,
        members_msg(changed=[member("a", typing=True)]),
        members_msg(changed=[member("a", typing=True)]),
        members_msg(changed=[member("a", typing=False)]),
        members_msg(changed=[member("a", typing=False)]),
    )
    assert kinds(events) == ["typing_started", "typing_stopped"]


def test_removal_by_key_never_by_index() -> None:
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False, added=[member("first"), member("second")]))
    apply_all(cache, members_msg(removed=[member("first")]))
    assert list(cache.members) == [("second", IID)]


def test_removal_falls_back_to_user_id() -> None:
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False, added=[member("u")]))
    events = apply_all(cache, members_msg(removed=[member("u", iid="other")]))
    assert kinds(events) == ["member_left"] and not cache.members


def test_messages_for_other_interactions_and_unknown_types_are_ignored() -> None:
    cache = ChatCache(IID)
    events = apply_all(
        cache,
        contents_msg(line("a", "x"), iid="9"),
        {"__type": "urn:inin.com:status:userStatusMessage", "isDelta": False},
        {
            "__type": "urn:inin.com:interactions.chat:chatContentsMessage",
            "isDelta": True,
            "interactionId": IID,
        },
    )
    assert events == [] and cache.transcript == []


def test_both_timestamp_forms_give_the_same_extended_form() -> None:
    cache = ChatCache(IID)
    events = apply_all(
        cache,
        contents_msg(delta=False),
        contents_msg(line("a", "x", "20201029T082018Z"), line("a", "y", "2020-10-29T08:20:18.123Z")),
    )
    assert [e.to_json()["timestamp"] for e in events] == ["2020-10-29T08:20:18Z", "2020-10-29T08:20:18.123Z"]


def test_a_bad_line_is_skipped_and_reported_not_fatal() -> None:
    cache = ChatCache(IID)
    outcome = cache.apply(contents_msg(line("a", "ok"), {"text": 5}, line("a", "still ok"), delta=False), AT)
    assert [e.line.text for e in outcome.events if e.line] == ["ok", "still ok"]
    assert len(outcome.problems) == 1


DISCONNECTED = {
    "__type": "urn:inin.com:interactions:interactionChangedMessage",
    "isDelta": True,
    "interactionID": IID,
    "attributes": {"Eic_State": "E"},
}


def test_chat_ends_on_disconnected_state_once() -> None:
    cache = ChatCache(IID)
    dealloc = {"__type": "urn:inin.com:interactions:interactionDeallocatedMessage", "interactionID": IID}
    assert kinds(apply_all(cache, DISCONNECTED, dealloc)) == ["chat_ended"]
    assert cache.ended


def test_resync_emits_only_new_lines_then_resynced() -> None:
    cache = ChatCache(IID)
    first = [line("a", "1"), line("a", "dup"), line("a", "dup")]
    apply_all(cache, members_msg(delta=False, added=[member("a")]), contents_msg(*first, delta=False))
    cache.expect_resync()
    events = apply_all(
        cache,
        members_msg(delta=False, added=[member("a"), member("b")]),
        contents_msg(*first, line("a", "dup"), line("b", "new"), delta=False),
    )
    assert kinds(events) == ["member_joined", "message", "message", "resynced"]
    assert [e.line.text for e in events if e.line] == ["dup", "new"]
    assert not any(e.history for e in events if e.line)


def test_resync_copes_with_trimmed_history() -> None:
    cache = ChatCache(IID)
    apply_all(cache, contents_msg(line("a", "1"), line("a", "2"), line("a", "3"), delta=False))
    events = apply_all(cache, contents_msg(line("a", "2"), line("a", "3"), line("a", "4"), delta=False))
    assert [e.line.text for e in events if e.line] == ["4"]


# ---- properties ---------------------------------------------------------------------------------------

users = st.sampled_from(["a", "b", "c"])
iids = st.sampled_from([IID, "2002"])
members_st = st.builds(member, users, st.sampled_from(["A", "B"]), st.integers(0, 4), st.booleans(), iids)
lines_st = st.builds(line, users, st.sampled_from(["hi", "ok", "bye"]))
deltas = st.one_of(
    st.builds(
        lambda a, c, r: members_msg(added=a, changed=c, removed=r),
        st.lists(members_st, max_size=3),
        st.lists(members_st, max_size=3),
        st.lists(members_st, max_size=2),
    ),
    st.builds(lambda ls: contents_msg(*ls), st.lists(lines_st, max_size=3)),
)


def reference(
    messages: list[dict[str, Any]],
) -> tuple[dict[tuple[str, str], tuple[str, int, bool]], list[str]]:
    """The protocol reference's algorithm (section 5.4), written as plainly as possible."""
    members: dict[tuple[str, str], tuple[str, int, bool]] = {}
    transcript: list[str] = []
    for message in messages:
        if message["__type"].endswith("chatMembersMessage"):
            if not message["isDelta"]:
                members.clear()
            for m in message["membersAdded"] + message["membersChanged"]:
                members[(m["userId"], m["interactionId"])] = (
                    m["displayName"],
                    m["chatMemberType"],
                    m["isTyping"],
                )
            for m in message["membersRemoved"]:
                key = (m["userId"], m["interactionId"])
                if key in members:
                    del members[key]
                else:
                    for other in [k for k in members if k[0] == m["userId"]]:
                        del members[other]
        else:
            if not message["isDelta"]:
                transcript.clear()
            transcript.extend(x["text"] for x in message["messagesAdded"])
    return members, transcript


def state(cache: ChatCache) -> tuple[dict[tuple[str, str], tuple[str, int, bool]], list[str]]:
    members = {k: (m.display_name, m.type.value, m.is_typing) for k, m in cache.members.items()}
    return members, [ln.text for ln in cache.transcript]


@settings(max_examples=300)
@given(st.lists(members_st, max_size=4), st.lists(lines_st, max_size=4), st.lists(deltas, max_size=12))
def test_any_delta_sequence_matches_the_reference_model(
    snap_members: list[dict[str, Any]], snap_lines: list[dict[str, Any]], later: list[dict[str, Any]]
) -> None:
    messages = [members_msg(delta=False, added=snap_members), contents_msg(*snap_lines, delta=False), *later]
    cache = ChatCache(IID)
    events = apply_all(cache, *messages)
    assert state(cache) == reference(messages)
    assert sum(1 for e in events if e.kind == "message") == len(cache.transcript)


@settings(max_examples=200)
@given(st.lists(deltas, max_size=10), st.lists(members_st, max_size=4))
def test_a_members_snapshot_after_deltas_equals_the_snapshot_alone(
    later: list[dict[str, Any]], snap_members: list[dict[str, Any]]
) -> None:
    snapshot = members_msg(delta=False, added=snap_members)
    after = ChatCache(IID)
    apply_all(after, members_msg(delta=False), *later, snapshot)
    alone = ChatCache(IID)
    apply_all(alone, snapshot)
    assert state(after)[0] == state(alone)[0]


@settings(max_examples=200)
@given(st.lists(lines_st, max_size=6), st.lists(lines_st, max_size=6))
def test_a_transcript_snapshot_that_extends_what_was_seen_equals_the_snapshot_alone(
    seen: list[dict[str, Any]], more: list[dict[str, Any]]
) -> None:
    after = ChatCache(IID)
    apply_all(after, contents_msg(delta=False), *(contents_msg(x) for x in seen))
    events = apply_all(after, contents_msg(*seen, *more, delta=False))
    alone = ChatCache(IID)
    apply_all(alone, contents_msg(*seen, *more, delta=False))
    assert state(after)[1] == state(alone)[1]
    assert len([e for e in events if e.kind == "message"]) == len(more)


def test_deltas_queued_before_a_resync_snapshot_are_left_to_it() -> None:
    """A re-subscription on the same session: deltas still queued ahead of the new snapshot are in it."""
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False, added=[member("a")]), contents_msg(line("a", "1"), delta=False))
    cache.expect_resync()
    events = apply_all(
        cache,
        contents_msg(line("a", "3")),  # "2" was lost with a cut reply; "3" was queued after it
        members_msg(added=[member("b")]),
        members_msg(delta=False, added=[member("a"), member("b")]),
        contents_msg(line("a", "1"), line("a", "2"), line("a", "3"), delta=False),
        contents_msg(line("b", "4")),
    )
    assert [e.line.text for e in events if e.line] == ["2", "3", "4"]
    assert kinds(events) == ["member_joined", "message", "message", "resynced", "message"]


def test_chat_ended_is_the_last_event_of_its_batch() -> None:
    """A resync snapshot queued behind the end still counts, but after chat_ended nothing more is said."""
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False, added=[member("a")]), contents_msg(line("a", "1"), delta=False))
    cache.expect_resync()
    outcome = cache.apply_all(
        [
            DISCONNECTED,
            members_msg(delta=False, added=[member("a")]),
            contents_msg(line("a", "1"), line("a", "2"), delta=False),
        ],
        AT,
    )
    assert kinds(outcome.events) == ["message", "resynced", "chat_ended"]


# ---- deltas that precede our subscription's snapshot ------------------------------------------------


def test_deltas_queued_before_the_first_snapshot_are_left_to_it() -> None:
    """A watcher restarted on the same session: the old subscription's deltas are still queued ahead of the
    new snapshot, which already holds them."""
    cache = ChatCache(IID)
    events = apply_all(
        cache,
        members_msg(added=[member("b")]),
        contents_msg(line("a", "2")),
        members_msg(delta=False, added=[member("a"), member("b")]),
        contents_msg(line("a", "1"), line("a", "2"), delta=False),
        contents_msg(line("b", "3")),
    )
    assert [(e.kind, e.history) for e in events] == [
        ("member_joined", True),
        ("member_joined", True),
        ("message", True),
        ("message", True),
        ("message", False),
    ]
    assert [ln.text for ln in cache.transcript] == ["1", "2", "3"]


def test_an_interaction_state_queued_before_the_first_snapshot_does_not_end_the_chat() -> None:
    """The old watcher's interaction watch said "ended" after it was killed: the new one must still show
    the chat, then end."""
    cache = ChatCache(IID)
    events = apply_all(cache, DISCONNECTED, members_msg(delta=False, added=[member("a")]))
    assert kinds(events) == ["member_joined"] and not cache.ended
    events = apply_all(cache, contents_msg(line("a", "1"), delta=False), DISCONNECTED)
    assert kinds(events) == ["message", "chat_ended"]


def test_a_members_snapshot_alone_lets_later_lines_through() -> None:
    """A server that sends no contents snapshot (a chat with no lines yet): a line after our members
    snapshot was queued after our subscription, so it is new, not stale."""
    cache = ChatCache(IID)
    events = apply_all(
        cache,
        contents_msg(line("a", "stale")),
        members_msg(delta=False, added=[member("a")]),
        contents_msg(line("a", "hello")),
    )
    assert [(e.kind, e.history) for e in events] == [("member_joined", True), ("message", False)]
    assert cache.has_snapshot and cache.has_members_snapshot


def test_a_contents_snapshot_after_lines_let_through_repeats_none() -> None:
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False, added=[member("a")]), contents_msg(line("a", "hello")))
    events = apply_all(cache, contents_msg(line("a", "hello"), line("a", "again"), delta=False))
    assert [e.line.text for e in events if e.line] == ["again"]


def test_members_snapshot_is_reported_before_the_contents_one() -> None:
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False, added=[member("a")]))
    assert cache.has_members_snapshot and not cache.has_snapshot


# ---- morph and faulted subscriptions ------------------------------------------------------------------

NEW = "2002"


def morphed(old: str = IID, new: str = NEW) -> dict[str, Any]:
    return {
        "__type": "urn:inin.com:interactions:interactionMorphedMessage",
        "isDelta": True,
        "interactionID": old,
        "newInteractionID": new,
    }


def faulted(state: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "__type": "urn:inin.com:messaging:subscriptionStateMessage",
        "isDelta": True,
        "state": state,
        **extra,
    }


def test_a_morphed_chat_continues_under_its_new_id_with_nothing_repeated() -> None:
    cache = ChatCache(IID)
    apply_all(
        cache,
        members_msg(delta=False, added=[member("a"), member("b")]),
        contents_msg(line("a", "1"), line("b", "2"), delta=False),
    )
    outcome = cache.apply_all(
        [
            morphed(),
            {"__type": "urn:inin.com:interactions:interactionDeallocatedMessage", "interactionID": IID},
            contents_msg(line("a", "queued before our subscription", iid=NEW), iid=NEW),
            members_msg(delta=False, added=[member("a", iid=NEW), member("b", iid=NEW)], iid=NEW),
            contents_msg(
                line("a", "1", iid=NEW),
                line("b", "2", iid=NEW),
                line("a", "queued before our subscription", iid=NEW),
                delta=False,
                iid=NEW,
            ),
            contents_msg(line("b", "3", iid=NEW), iid=NEW),
        ],
        AT,
    )
    assert kinds(outcome.events) == ["message", "resynced", "message"]
    assert [e.line.text for e in outcome.events if e.line] == ["queued before our subscription", "3"]
    assert {e.interaction_id for e in outcome.events} == {NEW}
    assert cache.interaction_id == NEW and not cache.ended
    assert cache.needs_subscribe
    assert set(cache.members) == {("a", NEW), ("b", NEW)}


def test_a_morph_of_another_interaction_is_ignored() -> None:
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False), morphed(old="9", new="10"))
    assert cache.interaction_id == IID and not cache.needs_subscribe


def test_a_faulted_subscription_is_made_again_and_reconciled() -> None:
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False, added=[member("a")]), contents_msg(line("a", "1"), delta=False))
    events = apply_all(cache, faulted())
    assert events == [] and cache.needs_subscribe
    events = apply_all(
        cache,
        contents_msg(line("a", "2")),  # the old subscription's, if the server sent any after the fault
        members_msg(delta=False, added=[member("a")]),
        contents_msg(line("a", "1"), line("a", "2"), delta=False),
    )
    assert kinds(events) == ["message", "resynced"]


@pytest.mark.parametrize(
    "message",
    [faulted(state=1), faulted(state=2), faulted(interactionId="9"), faulted(interactionID="9")],
)
def test_other_subscription_states_change_nothing(message: dict[str, Any]) -> None:
    cache = ChatCache(IID)
    apply_all(cache, members_msg(delta=False), message)
    assert not cache.needs_subscribe


def test_the_current_user_is_labelled_in_every_output() -> None:
    from icwschat.render import badge
    from icwschat.sinks import plain_line

    cache = ChatCache(IID)
    events = apply_all(cache, members_msg(delta=False, added=[member("agent.one", "Agent One", kind=2)]))
    assert events[0].to_json()["member"]["type"] == "current_user"
    assert plain_line(events[0]) is not None and "(you)" in plain_line(events[0])  # type: ignore[operator]
    assert events[0].member is not None and badge(events[0].member).plain.strip() == "you"


# ---- resync alignment: linear, and the same answer as the plain algorithm ------------------------------


def naive_overlap(known: list[Any], fresh: list[Any]) -> int:
    """The alignment as first written (quadratic): the earliest start in ``known`` that ``fresh``
    continues."""
    if not fresh:
        return 0
    for start in range(len(known)):
        if known[start] != fresh[0]:
            continue
        overlap = min(len(known) - start, len(fresh))
        if known[start : start + overlap] == fresh[:overlap]:
            return overlap
    return 0


@settings(max_examples=1000)
@given(st.lists(st.sampled_from("ab"), max_size=12), st.lists(st.sampled_from("abc"), max_size=12))
def test_overlap_agrees_with_the_plain_algorithm(known: list[str], fresh: list[str]) -> None:
    assert overlap(known, fresh) == naive_overlap(known, fresh)


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from("ab"), max_size=10),
    st.integers(0, 10),
    st.lists(st.sampled_from("ab"), max_size=5),
)
def test_overlap_of_a_trimmed_snapshot_agrees_with_the_plain_algorithm(
    known: list[str], trim: int, more: list[str]
) -> None:
    fresh = known[trim:] + more
    assert overlap(known, fresh) == naive_overlap(known, fresh)


class Counted:
    """An item that counts how often it is compared."""

    comparisons = 0

    def __init__(self, value: str) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        Counted.comparisons += 1
        return isinstance(other, Counted) and self.value == other.value

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("known", "kept"), [(20_000, 10_000), (20_000, 19_999), (20_000, 20_000), (20_000, 1)]
)
def test_overlap_work_is_linear_in_identical_lines(known: int, kept: int) -> None:
    """A trimmed snapshot of identical lines plus one new line: the plain algorithm compares about
    ``known * kept`` times (10^8 for the first case); this must stay near ``known + kept``."""
    seen = [Counted("ok") for _ in range(known)]
    fresh = [Counted("ok") for _ in range(kept)] + [Counted("new")]
    Counted.comparisons = 0
    assert overlap(seen, fresh) == kept
    assert Counted.comparisons <= 4 * (known + kept + 1)


def test_a_resync_over_20k_identical_lines_is_quick() -> None:
    import time

    cache = ChatCache(IID)
    same = [line("a", "ok") for _ in range(20_000)]
    apply_all(cache, members_msg(delta=False, added=[member("a")]), contents_msg(*same, delta=False))
    cache.expect_resync()
    trimmed = contents_msg(*same[10_000:], line("a", "new"), delta=False)
    started = time.process_time()
    events = apply_all(cache, members_msg(delta=False, added=[member("a")]), trimmed)
    spent = time.process_time() - started
    assert [e.line.text for e in events if e.line] == ["new"]
    assert spent < 2.0  # generous: the quadratic version took minutes here
