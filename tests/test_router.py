"""The router: many chats' messages in one queue, routed to per-chat caches; queue contents to chat events."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icwschat.router import DEPARTED_KEPT, Queue, Router, parse_queue
from icwschat.updates import parse_messages
from tests.builders import contents_msg, line, member, members_msg

AT = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
QUEUE = Queue("workgroup", "Support")
QUEUE_TYPE = "urn:inin.com:queues:queueContentsMessage"


def apply(router: Router, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    updates, problems = parse_messages(messages)
    return [event.to_json() for event in router.apply_updates(updates, AT, problems).events]


def queued(iid: str, kind: str | None = "Chat", **attributes: str) -> dict[str, Any]:
    values = dict(attributes)
    if kind is not None:
        values["Eic_ObjectType"] = kind
    return {"interactionId": iid, "attributes": values}


def queue_msg(
    *,
    delta: bool = True,
    added: list[dict[str, Any]] | None = None,
    changed: list[dict[str, Any]] | None = None,
    removed: list[str] | None = None,
    subscription: str = QUEUE.subscription_id,
    **extra: Any,
) -> dict[str, Any]:
    message = {"__type": QUEUE_TYPE, "subscriptionId": subscription, "isDelta": delta, **extra}
    for name, value in (("interactionsAdded", added), ("interactionsChanged", changed)):
        if value is not None:
            message[name] = value
    if removed is not None:
        message["interactionsRemoved"] = removed
    return message


def snapshot(iid: str, *texts: str) -> list[dict[str, Any]]:
    return [
        members_msg(delta=False, added=[member("jane", "Jane", iid=iid)], iid=iid),
        contents_msg(*(line("jane", text, iid=iid) for text in texts), delta=False, iid=iid),
    ]


def kinds(events: list[dict[str, Any]], iid: str | None = None) -> list[str]:
    return [e["event"] for e in events if iid is None or e["interactionId"] == iid]


def texts(events: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in events if e["event"] == "message"]


# ---- routing ---------------------------------------------------------------------------------------


def test_messages_for_chats_not_followed_are_ignored() -> None:
    router = Router(["1001"])
    events = apply(router, *snapshot("1001", "mine"), *snapshot("2002", "not mine"))
    assert texts(events) == ["mine"]
    assert set(router.chats) == {"1001"}


def test_followed_by_id_ends_when_the_last_chat_ends() -> None:
    router = Router(["1001", "1002"])
    apply(router, *snapshot("1001"), *snapshot("1002"))
    ended = {"__type": "urn:inin.com:interactions:interactionDeallocatedMessage", "interactionID": "1001"}
    apply(router, ended)
    assert not router.ended
    assert router.wanted() == {"1002"}  # an ended chat's subscription is not kept
    apply(router, {**ended, "interactionID": "1002"})
    assert router.ended


def test_chat_ended_is_the_last_event_of_its_chat_in_a_batch() -> None:
    router = Router(["1001", "1002"])
    ended = {"__type": "urn:inin.com:interactions:interactionDeallocatedMessage", "interactionID": "1001"}
    events = apply(
        router, *snapshot("1001", "a"), ended, *snapshot("1002", "b"), contents_msg(line("jane", "late"))
    )
    mine = kinds(events, "1001")
    assert mine[-1] == "chat_ended" and mine.count("message") == 2
    assert kinds(events, "1002") == ["member_joined", "message"]


def test_a_morph_keeps_the_chat_under_its_new_id() -> None:
    router = Router(["1001"])
    apply(router, *snapshot("1001", "a"))
    morphed = {
        "__type": "urn:inin.com:interactions:interactionMorphedMessage",
        "interactionID": "1001",
        "newInteractionID": "1009",
    }
    apply(router, morphed)
    assert set(router.chats) == {"1009"} and router.wanted() == {"1009"}
    assert texts(apply(router, *snapshot("1009", "a", "b"))) == ["b"]  # reconciled, not repeated


def test_a_fault_naming_no_subscription_resubscribes_everything() -> None:
    router = Router(["1001", "1002"])
    apply(router, *snapshot("1001"), *snapshot("1002"))
    apply(router, {"__type": "urn:inin.com:messaging:subscriptionStateMessage", "state": 3})
    assert router.take_resubscribes() == ({"1001", "1002"}, False)
    assert router.take_resubscribes() == (set(), False)


chats = st.sampled_from(["1001", "2002", "3003"])
said = st.sampled_from(["hi", "ok", "bye"])


def chat_messages(iid: str, draw_lines: list[str], typing: list[bool]) -> list[dict[str, Any]]:
    messages = snapshot(iid, *draw_lines[:1])
    for text, flag in zip(draw_lines[1:], typing, strict=False):
        messages.append(members_msg(changed=[member("jane", "Jane", typing=flag, iid=iid)], iid=iid))
        messages.append(contents_msg(line("jane", text, iid=iid), iid=iid))
    return messages


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        chats, st.tuples(st.lists(said, max_size=6), st.lists(st.booleans(), max_size=6)), min_size=1
    ),
    st.randoms(use_true_random=False),
    st.integers(1, 5),
)
def test_interleaved_chats_give_each_chat_the_events_it_gives_alone(
    scripts: dict[str, tuple[list[str], list[bool]]], rng: Any, batch: int
) -> None:
    per_chat = {iid: chat_messages(iid, *script) for iid, script in scripts.items()}
    alone = {iid: apply(Router([iid]), *messages) for iid, messages in per_chat.items()}
    # A random interleaving that keeps each chat's own order, cut into batches of random size.
    queues = {iid: list(messages) for iid, messages in per_chat.items()}
    mixed: list[dict[str, Any]] = []
    while any(queues.values()):
        iid = rng.choice([iid for iid, left in queues.items() if left])
        mixed.append(queues[iid].pop(0))
    router = Router(list(scripts))
    together: list[dict[str, Any]] = []
    for start in range(0, len(mixed), batch):
        together += apply(router, *mixed[start : start + batch])
    for iid, events in alone.items():
        assert [e for e in together if e["interactionId"] == iid] == events


# ---- queues ----------------------------------------------------------------------------------------


def test_parse_queue_takes_the_four_kinds_and_names_them_on_error() -> None:
    assert parse_queue("workgroup:Support") == QUEUE
    assert parse_queue("user:agent.one").body()["queueIds"] == [{"queueType": 1, "queueName": "agent.one"}]
    for bad in ("Support", "team:Support", "workgroup:", "workgroup: "):
        try:
            parse_queue(bad)
        except ValueError as problem:
            assert "workgroup:NAME" in str(problem)
        else:
            raise AssertionError(bad)


def test_the_first_queue_snapshot_adds_its_chats_as_history_and_skips_other_interactions() -> None:
    router = Router(queue=QUEUE)
    events = apply(
        router,
        queue_msg(delta=False, added=[queued("1001", Eic_State="C"), queued("7001", "Call")]),
    )
    assert events == [
        {
            "event": "chat_added",
            "interactionId": "1001",
            "at": "2026-11-29T12:00:00Z",
            "history": True,
            "queue": "workgroup:Support",
            "attributes": {"Eic_State": "C", "Eic_ObjectType": "Chat"},
        }
    ]
    assert router.wanted() == {"1001"}  # a call says what it is: no chat subscription is tried
    assert set(router.queued) == {"1001", "7001"}


def test_queue_deltas_before_its_snapshot_are_stale() -> None:
    router = Router(queue=QUEUE)
    assert apply(router, queue_msg(added=[queued("1001")])) == []
    assert kinds(apply(router, queue_msg(delta=False, added=[queued("1002")]))) == ["chat_added"]
    assert set(router.chats) == {"1002"}


def test_a_chat_arrives_is_picked_up_ends_and_leaves() -> None:
    router = Router(queue=QUEUE)
    apply(router, queue_msg(delta=False, added=[]))
    arrived = apply(router, queue_msg(added=[queued("1001", Eic_State="A")]))
    assert kinds(arrived) == ["chat_added"] and arrived[0]["history"] is False
    apply(router, *snapshot("1001", "hello"))
    picked = apply(
        router,
        queue_msg(
            changed=[{"interactionId": "1001", "attributes": {"Eic_UserName": "agent.one", "Eic_State": "A"}}]
        ),
    )
    assert picked[0]["event"] == "chat_changed" and picked[0]["attributes"] == {"Eic_UserName": "agent.one"}
    ended = apply(router, queue_msg(changed=[{"interactionId": "1001", "attributes": {"Eic_State": "E"}}]))
    assert kinds(ended) == ["chat_changed", "chat_ended"]
    assert router.wanted() == frozenset()  # ended: its subscription goes, the chat stays on the board
    left = apply(router, queue_msg(removed=["1001"]))
    assert left == [
        {
            "event": "chat_removed",
            "interactionId": "1001",
            "at": "2026-11-29T12:00:00Z",
            "queue": "workgroup:Support",
        }
    ]
    assert router.chats == {} and not router.ended  # a queue is followed until interrupted


def test_a_chat_that_leaves_and_comes_back_is_not_shown_twice() -> None:
    router = Router(queue=QUEUE)
    apply(router, queue_msg(delta=False, added=[queued("1001")]))
    assert texts(apply(router, *snapshot("1001", "one", "two"))) == ["one", "two"]
    apply(router, queue_msg(removed=["1001"]))
    assert texts(apply(router, contents_msg(line("jane", "while away", iid="1001"), iid="1001"))) == []
    back = apply(router, queue_msg(added=[queued("1001")]))
    assert kinds(back) == ["chat_added"]
    # Subscribed again for a snapshot, even if the old subscription was never removed in between.
    assert router.take_resubscribes() == ({"1001"}, False)
    assert texts(apply(router, *snapshot("1001", "one", "two", "three"))) == ["three"]


def test_departed_chats_kept_for_a_return_are_bounded() -> None:
    router = Router(queue=QUEUE)
    apply(router, queue_msg(delta=False, added=[]))
    for number in range(DEPARTED_KEPT + 5):
        iid = str(5000 + number)
        apply(router, queue_msg(added=[queued(iid)]), queue_msg(removed=[iid]))
    assert len(router._departed) == DEPARTED_KEPT


def test_an_interaction_of_unsaid_kind_is_tried_and_announced_by_its_first_message() -> None:
    router = Router(queue=QUEUE)
    assert apply(router, queue_msg(delta=False, added=[queued("1001", None), queued("7001", None)])) == []
    assert router.wanted() == {"1001", "7001"}  # both tried as chats
    assert router.refused("7001", 400, AT) == []
    assert router.wanted() == {"1001"}
    events = apply(router, *snapshot("1001", "hi"))
    assert kinds(events) == ["chat_added", "member_joined", "message"]
    assert events[0]["history"] is True


def test_a_later_queue_snapshot_is_reconciled_not_replayed() -> None:
    router = Router(queue=QUEUE)
    apply(router, queue_msg(delta=False, added=[queued("1001"), queued("1002")]))
    router.expect_resync()  # a new login: the queue is subscribed again
    assert apply(router, queue_msg(added=[queued("1003")])) == []  # stale: queued before the new snapshot
    events = apply(router, queue_msg(delta=False, added=[queued("1002", Eic_State="C"), queued("1003")]))
    assert [(e["event"], e["interactionId"]) for e in events] == [
        ("chat_removed", "1001"),
        ("chat_changed", "1002"),
        ("chat_added", "1003"),
    ]
    assert events[2]["history"] is False


def test_the_queue_result_limit_is_noticed_and_other_subscriptions_ignored() -> None:
    router = Router(queue=QUEUE)
    apply(router, queue_msg(delta=False, added=[queued("1001")], subscription="someone-else"))
    assert router.chats == {} and not router.limit_exceeded
    apply(router, queue_msg(delta=False, added=[queued("1001")], queueResultLimitExceeded=True))
    assert router.limit_exceeded and set(router.chats) == {"1001"}


@pytest.mark.parametrize(
    "kind", ["messaging:subscriptionStateMessage", "queues:queueSubscriptionStateMessage"]
)
def test_a_queue_fault_resubscribes_the_queue(kind: str) -> None:
    router = Router(queue=QUEUE)
    apply(router, queue_msg(delta=False, added=[]))
    state = {"__type": f"urn:inin.com:{kind}", "state": 3, "error": {"message": "gone"}}
    apply(router, {**state, "subscriptionId": QUEUE.subscription_id})
    assert router.take_resubscribes() == (set(), True)


def test_labels_are_short_and_tell_chats_apart() -> None:
    router = Router(["3001234567", "3001244567", "1001"])
    assert [chat.label for chat in router] == ["4567", "44567", "1001"]


def test_follow_chats_off_only_learns_the_queue() -> None:
    router = Router(queue=QUEUE, follow_chats=False)
    apply(router, queue_msg(delta=False, added=[queued("1001"), queued("7001", "Call")]))
    assert router.chats == {} and set(router.queued) == {"1001", "7001"} and router.has_snapshot


def test_an_announced_chat_that_cannot_be_subscribed_ends_and_is_not_waited_for() -> None:
    router = Router(queue=QUEUE)
    apply(router, queue_msg(delta=False, added=[queued("1001"), queued("1002")]))
    apply(router, *snapshot("1002", "hi"))
    assert not router.has_snapshot
    events = [event.to_json() for event in router.refused("1001", 403, AT)]
    assert [(e["event"], e["reason"]) for e in events] == [("chat_ended", "lost_rights")]
    assert router.has_snapshot and router.wanted() == {"1002"}
    assert router.refused("1001", 404, AT) == []  # told once


def test_labels_and_a_captured_queue_are_safe_and_keep_their_names() -> None:
    router = Router(adopt=True)
    apply(router, queue_msg(delta=False, added=[queued("AAAA\x1b[2J")]))
    assert all("\x1b" not in chat.label for chat in router)
    assert router.queue is not None and router.queue.label == "workgroup:Support"
    apply(router, queue_msg(removed=["AAAA\x1b[2J"]))
    assert router.chats == {}  # the capture's later queue messages are its queue's too
    other = Router(adopt=True)
    apply(other, queue_msg(delta=False, added=[queued("1001")], subscription="my-interactions-queue"))
    apply(other, queue_msg(removed=["1001"], subscription="my-interactions-queue"))
    assert other.queue is not None and other.queue.label == "my-interactions-queue" and other.chats == {}
