"""The simulator's queues speak icws-protocol.md 6a: queue subscriptions, snapshots, deltas, limits, rights;
the Support workgroup's life; the load generator."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from conftest import PASSWORD, USER, start_sim
from test_simulator import Icws, connect, injected, set_faults

from icwschat.simulator import QueueId, Simulator, SimulatorServer, load_scenarios

QUEUE_TYPE = "urn:inin.com:queues:queueContentsMessage"
NAMES = ["Eic_ObjectType", "Eic_State", "Eic_RemoteName", "Eic_UserName", "Eic_WorkgroupName"]
MINE = {"queueType": 1, "queueName": USER}
SUPPORT = {"queueType": 2, "queueName": "Support"}
SUPPORT_ID = QueueId(2, "Support")


@pytest.fixture
def quiet() -> Iterator[SimulatorServer]:
    """No Support cycle and scripts that do not advance: every queue message is one the test caused."""
    server = SimulatorServer(Simulator(load_scenarios(), speed=1e-6, support_every=None)).start()
    yield server
    server.stop()


def subscribe(
    icws: Icws, *queues: dict[str, Any], sub: str = "q1", names: list[str] = NAMES, **extra: Any
) -> int:
    body = {"queueIds": list(queues), "attributeNames": names, **extra}
    status: int = icws.call("PUT", f"messaging/subscriptions/queues/{sub}", json=body).status_code
    return status


def queue_messages(icws: Icws) -> list[dict[str, Any]]:
    return [m for m in icws.poll() if m["__type"] == QUEUE_TYPE]


def added(message: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {entry["interactionId"]: entry["attributes"] for entry in message.get("interactionsAdded", [])}


def test_the_snapshot_holds_the_bundled_interactions_with_the_attributes_asked_for(
    quiet: SimulatorServer,
) -> None:
    icws = connect(quiet)
    assert subscribe(icws, MINE, names=["Eic_ObjectType", "Eic_State", "Eic_NoSuchThing"]) == 200
    (snapshot,) = queue_messages(icws)
    assert snapshot["isDelta"] is False and snapshot["subscriptionId"] == "q1"
    assert "queueResultLimitExceeded" not in snapshot
    assert added(snapshot) == {
        "1001": {"Eic_ObjectType": "Chat", "Eic_State": "C"},
        "1002": {"Eic_ObjectType": "Chat", "Eic_State": "C"},
        "1003": {"Eic_ObjectType": "Call", "Eic_State": "C"},
    }


def test_the_system_queue_of_the_user_holds_the_same(quiet: SimulatorServer) -> None:
    icws = connect(quiet)
    subscribe(icws, {"queueType": 0, "queueName": USER}, MINE)
    (snapshot,) = queue_messages(icws)
    assert list(added(snapshot)) == ["1001", "1002", "1003"]


def test_attributes_read_as_a_real_queue_reports_them(quiet: SimulatorServer) -> None:
    icws = connect(quiet)
    subscribe(icws, MINE, names=[*NAMES, "Eic_InitiationTime", "Eic_ConnectTime", "Eic_InteractionId"])
    attributes = added(queue_messages(icws)[0])["1001"]
    assert attributes["Eic_RemoteName"] == "Jane"
    assert (attributes["Eic_UserName"], attributes["Eic_WorkgroupName"]) == ("", "")
    assert attributes["Eic_InteractionId"] == "1001"
    assert re.fullmatch(r"\d{8}T\d{6}Z", attributes["Eic_InitiationTime"])
    assert re.fullmatch(r"\d{8}T\d{6}Z", attributes["Eic_ConnectTime"])


def test_deltas_follow_interactions_entering_changing_and_leaving(quiet: SimulatorServer) -> None:
    sim = quiet.simulator
    icws = connect(quiet)
    subscribe(icws, SUPPORT, names=["Eic_State", "Eic_UserName", "Eic_RemoteName"])
    (snapshot,) = queue_messages(icws)
    assert added(snapshot) == {}
    iid = sim.add_interaction(SUPPORT_ID, remote_name="Casey")
    assert iid.isdigit() and iid not in sim.scenarios
    (entered,) = queue_messages(icws)
    assert entered["isDelta"] is True
    assert added(entered) == {iid: {"Eic_State": "O", "Eic_UserName": "", "Eic_RemoteName": "Casey"}}
    sim.pick_up(iid)
    (changed,) = queue_messages(icws)
    assert changed["interactionsChanged"] == [
        {"interactionId": iid, "attributes": {"Eic_State": "C", "Eic_UserName": "agent.two"}}
    ]
    sim.set_attributes(iid, {"Eic_RemoteName": "Casey Jones", "Eic_Unknown": "x"})
    (renamed,) = queue_messages(icws)
    assert renamed["interactionsChanged"] == [
        {"interactionId": iid, "attributes": {"Eic_RemoteName": "Casey Jones"}}
    ]
    sim.dequeue(iid, SUPPORT_ID)
    (left,) = queue_messages(icws)
    assert left["interactionsRemoved"] == [iid] and "interactionsAdded" not in left
    sim.enqueue(iid, SUPPORT_ID)
    (back,) = queue_messages(icws)
    assert list(added(back)) == [iid]


def test_a_change_nobody_asked_for_sends_nothing(quiet: SimulatorServer) -> None:
    sim = quiet.simulator
    icws = connect(quiet)
    iid = sim.add_interaction(SUPPORT_ID)
    subscribe(icws, SUPPORT, names=["Eic_RemoteName"])
    queue_messages(icws)
    sim.pick_up(iid)
    assert queue_messages(icws) == []


def test_a_chat_in_a_queue_is_a_chat_to_subscribe_to(quiet: SimulatorServer) -> None:
    sim = quiet.simulator
    icws = connect(quiet)
    iid = sim.add_interaction(SUPPORT_ID, remote_name="Casey")
    assert icws.put(f"messaging/subscriptions/interactions/{iid}/chat").status_code == 200
    members, contents = icws.poll()
    assert {m["displayName"] for m in members["membersAdded"]} == {"IC System", "Casey"}
    assert [line["text"] for line in contents["messagesAdded"]] == ["Casey has joined the conversation."]
    sim.pick_up(iid)
    sim.say(iid, "agent", "Hello Casey")
    sim.end_chat(iid, "I")
    texts = [line["text"] for m in icws.poll() for line in m.get("messagesAdded", [])]
    assert texts == [
        "Agent Two has joined the conversation.",
        "Hello Casey",
        "Casey has left the conversation.",
    ]
    call = sim.add_interaction(SUPPORT_ID, kind="call")
    assert icws.put(f"messaging/subscriptions/interactions/{call}/chat").status_code == 400


def test_an_interaction_in_two_subscribed_queues_comes_once_and_goes_when_it_left_both(
    quiet: SimulatorServer,
) -> None:
    sim = quiet.simulator
    icws = connect(quiet)
    subscribe(icws, MINE, SUPPORT)
    assert list(added(queue_messages(icws)[0])) == ["1001", "1002", "1003"]
    sim.enqueue("1001", SUPPORT_ID)
    assert queue_messages(icws) == []
    sim.dequeue("1001", QueueId(1, USER))
    assert queue_messages(icws) == []
    sim.dequeue("1001", SUPPORT_ID)
    assert queue_messages(icws)[0]["interactionsRemoved"] == ["1001"]


def test_a_put_with_the_same_id_replaces_the_subscription(quiet: SimulatorServer) -> None:
    sim = quiet.simulator
    icws = connect(quiet)
    subscribe(icws, SUPPORT)
    queue_messages(icws)
    assert subscribe(icws, MINE, names=["Eic_State"]) == 200
    (snapshot,) = queue_messages(icws)
    assert snapshot["isDelta"] is False and list(added(snapshot)) == ["1001", "1002", "1003"]
    sim.add_interaction(SUPPORT_ID)
    assert queue_messages(icws) == []
    assert sim.queue_subscribers(SUPPORT_ID) == []
    assert sim.queue_subscribers(QueueId(1, USER)) == [icws.sid]


def test_delete_ends_the_subscription(quiet: SimulatorServer) -> None:
    sim = quiet.simulator
    icws = connect(quiet)
    subscribe(icws, SUPPORT)
    queue_messages(icws)
    assert icws.delete("messaging/subscriptions/queues/q1").status_code == 204
    sim.add_interaction(SUPPORT_ID)
    assert queue_messages(icws) == []
    again = icws.delete("messaging/subscriptions/queues/q1")
    assert again.status_code == 404 and again.json()["message"]


def test_the_end_of_a_session_ends_its_queue_subscriptions(quiet: SimulatorServer) -> None:
    sim = quiet.simulator
    icws = connect(quiet)
    subscribe(icws, SUPPORT)
    assert sim.queue_subscribers(SUPPORT_ID) == [icws.sid]
    icws.call("DELETE", "connection")
    assert sim.queue_subscribers(SUPPORT_ID) == []


@pytest.mark.parametrize(
    ("queue", "error_id"),
    [
        ({"queueType": 2, "queueName": "NoSuchGroup"}, "error.request.invalidRepresentation.invalidProperty"),
        ({"queueType": 3, "queueName": "7001"}, "error.request.invalidRepresentation.invalidProperty"),
        ({"queueType": 1, "queueName": "nobody"}, "error.request.invalidRepresentation.invalidProperty"),
        ({"queueType": 2, "queueName": "Billing"}, "error.request.accessDenied"),
    ],
)
def test_a_queue_that_is_unknown_or_not_the_users_is_400(
    quiet: SimulatorServer, queue: dict[str, Any], error_id: str
) -> None:
    icws = connect(quiet)
    reply = icws.call(
        "PUT", "messaging/subscriptions/queues/q1", json={"queueIds": [MINE, queue], "attributeNames": NAMES}
    )
    assert reply.status_code == 400
    assert reply.json()["errorId"] == error_id and reply.json()["message"]
    assert quiet.simulator.queue_subscribers(QueueId(1, USER)) == []


def test_another_users_queue_is_not_yours() -> None:
    sim = Simulator(load_scenarios(), users={USER: PASSWORD, "sue.supervisor": "pw"}, support_every=None)
    server = SimulatorServer(sim).start()
    try:
        theirs = {"queueType": 1, "queueName": "sue.supervisor"}
        assert subscribe(connect(server), theirs) == 400
        sue = connect(server, "sue.supervisor", "pw")
        assert subscribe(sue, theirs) == 200
        assert added(queue_messages(sue)[0]) == {}
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("body", "error_type", "name"),
    [
        ({"attributeNames": NAMES}, "missingPropertyError", "queueIds"),
        ({"queueIds": [], "attributeNames": NAMES}, "missingPropertyError", "queueIds"),
        ({"queueIds": [MINE]}, "missingPropertyError", "attributeNames"),
        ({"queueIds": [MINE], "attributeNames": []}, "missingPropertyError", "attributeNames"),
        ({"queueIds": [MINE], "attributeNames": "Eic_State"}, "invalidPropertyError", "attributeNames"),
        (
            {"queueIds": [{"queueType": 9, "queueName": "x"}], "attributeNames": NAMES},
            "invalidPropertyError",
            "queueIds",
        ),
        (
            {"queueIds": [{"queueType": "2", "queueName": "x"}], "attributeNames": NAMES},
            "invalidPropertyError",
            "queueIds",
        ),
        ({"queueIds": [{"queueType": 2}], "attributeNames": NAMES}, "missingPropertyError", "queueName"),
        ({"queueIds": MINE, "attributeNames": NAMES}, "invalidPropertyError", "queueIds"),
        (
            {"queueIds": [MINE], "attributeNames": NAMES, "queueResultLimit": {"limitCount": "5"}},
            "invalidPropertyError",
            "limitCount",
        ),
        (
            {"queueIds": [MINE], "attributeNames": NAMES, "queueResultLimit": {}},
            "missingPropertyError",
            "limitCount",
        ),
        ([MINE], "missingPropertyError", "queueIds"),
    ],
)
def test_a_bad_body_is_400_naming_the_property(
    quiet: SimulatorServer, body: Any, error_type: str, name: str
) -> None:
    icws = connect(quiet)
    reply = icws.call("PUT", "messaging/subscriptions/queues/q1", json=body)
    assert reply.status_code == 400
    error = reply.json()
    assert error["__type"] == f"urn:inin.com:common:{error_type}"
    assert (error["propertyName"], bool(error["message"])) == (name, True)
    assert quiet.simulator.queue_subscribers(QueueId(1, USER)) == []


def test_a_result_limit_caps_the_snapshot_and_says_so(quiet: SimulatorServer) -> None:
    sim = quiet.simulator
    icws = connect(quiet)
    subscribe(icws, MINE, queueResultLimit={"limitCount": 2})
    (snapshot,) = queue_messages(icws)
    assert list(added(snapshot)) == ["1001", "1002"]
    assert snapshot["queueResultLimitExceeded"] is True
    sim.dequeue("1001", QueueId(1, USER))
    sim.dequeue("1001", QueueId(0, USER))
    (moved_up,) = queue_messages(icws)
    assert moved_up["interactionsRemoved"] == ["1001"] and list(added(moved_up)) == ["1003"]
    subscribe(icws, MINE, sub="q2", queueResultLimit={"limitCount": 5})
    (roomy,) = queue_messages(icws)
    assert roomy["queueResultLimitExceeded"] is False and len(added(roomy)) == 2


def test_the_result_limit_knob_caps_every_subscription(quiet: SimulatorServer) -> None:
    icws = connect(quiet)
    assert set_faults(quiet, queueResultLimit=1).status_code == 200
    subscribe(icws, MINE)
    subscribe(icws, MINE, sub="q2", queueResultLimit={"limitCount": 2})
    snapshots = queue_messages(icws)
    assert [len(added(s)) for s in snapshots] == [1, 1]
    assert all(s["queueResultLimitExceeded"] is True for s in snapshots)
    assert injected(quiet) == {"queueResultLimit": 2}


def test_the_object_type_knob_leaves_it_out_of_queue_messages(quiet: SimulatorServer) -> None:
    sim = quiet.simulator
    icws = connect(quiet)
    assert set_faults(quiet, omitObjectType=True).status_code == 200
    subscribe(icws, SUPPORT, names=["Eic_ObjectType", "Eic_State"])
    sim.add_interaction(SUPPORT_ID, kind="call", state="C")
    snapshot, entered = queue_messages(icws)
    assert [list(a.values()) for a in added(entered).values()] == [["C"]]
    assert added(snapshot) == {}
    assert injected(quiet) == {"omitObjectType": 1}
    set_faults(quiet, omitObjectType=False)
    subscribe(icws, MINE, sub="q2", names=["Eic_ObjectType"])
    assert added(queue_messages(icws)[0])["1003"] == {"Eic_ObjectType": "Call"}


def test_queue_messages_come_by_event_stream_too(quiet: SimulatorServer) -> None:
    import json

    icws = connect(quiet)
    subscribe(icws, MINE)
    events = [json.loads(e) for e in icws.stream_events(most=1)]
    assert events[0]["__type"] == QUEUE_TYPE and len(events[0]["interactionsAdded"]) == 3


# ---- the Support workgroup -----------------------------------------------------------------------------


def entries(messages: list[dict[str, Any]], iid: str) -> list[dict[str, str]]:
    """The attributes the queue messages gave for one interaction, added or changed, in order."""
    return [
        entry["attributes"]
        for m in messages
        for entry in m.get("interactionsAdded", []) + m.get("interactionsChanged", [])
        if entry["interactionId"] == iid
    ]


def test_support_chats_arrive_are_picked_up_talk_end_and_leave() -> None:
    server = start_sim(speed=20.0)
    try:
        icws = connect(server)
        subscribe(icws, SUPPORT)
        snapshot, *deltas = queue_messages(icws)
        call = next(iid for iid, a in added(snapshot).items() if a["Eic_ObjectType"] == "Call")
        assert added(snapshot)[call] == {
            "Eic_ObjectType": "Call",
            "Eic_State": "C",
            "Eic_RemoteName": "Morgan",
            "Eic_UserName": "agent.three",
            "Eic_WorkgroupName": "Support",
        }
        assert icws.put(f"messaging/subscriptions/interactions/{call}/chat").status_code == 400
        followed: str | None = None
        everything: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while followed is None or followed not in [
            i for m in deltas for i in m.get("interactionsRemoved", [])
        ]:
            assert time.monotonic() < deadline, deltas
            batch = icws.poll()
            everything += batch
            deltas += [m for m in batch if m["__type"] == QUEUE_TYPE]
            if followed is None:
                arrived = [iid for m in deltas for iid in added(m)]
                if arrived:
                    followed = arrived[0]
                    assert (
                        icws.put(f"messaging/subscriptions/interactions/{followed}/chat").status_code == 200
                    )
            time.sleep(0.05)
        states = [a["Eic_State"] for a in entries(deltas, followed) if "Eic_State" in a]
        assert states[0] == "O" and states[1] == "C" and states[-1] in ("E", "I"), states
        assert entries(deltas, followed)[0]["Eic_WorkgroupName"] == "Support"
        picked = next(a for a in entries(deltas, followed) if a.get("Eic_State") == "C")
        assert picked["Eic_UserName"] in ("agent.two", "agent.three")
        lines = [
            line["text"]
            for m in everything
            if m.get("interactionId") == followed
            for line in m.get("messagesAdded", [])
        ]
        assert lines[0].endswith("has joined the conversation.") and lines[-1].endswith(
            "has left the conversation."
        )
        assert len(lines) >= 6
        arrived = [iid for m in deltas for iid in added(m)]
        assert len(set(arrived)) == len(arrived) and all(iid.isdigit() for iid in arrived)
    finally:
        server.stop()


def test_a_made_up_chat_that_ended_leaves_its_queue_then_is_gone(
    quiet: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from icwschat.simulator import state
    from icwschat.simulator.scenarios import chat_scenario

    monkeypatch.setattr(state, "RETAIN_SECONDS", 0.2)
    sim = quiet.simulator
    iid = sim.admit(chat_scenario(sim.new_interaction_id(), "Kim"), SUPPORT_ID, linger=0.0)
    icws = connect(quiet)
    icws.put(f"messaging/subscriptions/interactions/{iid}/chat")
    subscribe(icws, SUPPORT)
    icws.poll()
    sim.end_chat(iid)
    deadline = time.monotonic() + 10
    seen: list[dict[str, Any]] = []
    while not any(m["__type"].endswith("interactionDeallocatedMessage") for m in seen):
        assert time.monotonic() < deadline, seen
        seen += icws.poll()
        time.sleep(0.05)
    removed = [i for m in seen for i in m.get("interactionsRemoved", [])]
    assert removed == [iid] and sim.queue_contents(SUPPORT_ID) == []
    assert sim.subscribers(iid) == []
    assert icws.put(f"messaging/subscriptions/interactions/{iid}/chat").status_code == 404


# ---- the load generator --------------------------------------------------------------------------------

LOAD = {"queueType": 2, "queueName": "Load"}
STAMP = re.compile(r"^(customer|agent) line #(\d+) of (\d+) @(\d+\.\d{6})$")


def live(snapshot: dict[str, Any]) -> list[str]:
    return [iid for iid, a in added(snapshot).items() if a["Eic_State"] not in ("E", "I")]


def test_the_load_generator_keeps_n_chats_live_as_they_end_and_arrive() -> None:
    server = SimulatorServer(Simulator(load_scenarios(), speed=50.0, support_every=None)).start()
    try:
        load = server.simulator.start_load(6, line_every=1.0, lines=(2, 3), seed=7)
        icws = connect(server)
        subscribe(icws, LOAD, sub="first")
        assert len(live(queue_messages(icws)[0])) == 6
        deadline = time.monotonic() + 30
        while load.arrived < 20:
            assert time.monotonic() < deadline, load.arrived
            assert len(load.live_chats()) == 6
            time.sleep(0.05)
        messages = queue_messages(icws)
        assert any(m.get("interactionsRemoved") for m in messages)
        subscribe(icws, LOAD, sub="later")
        snapshot = next(m for m in queue_messages(icws) if m["subscriptionId"] == "later")
        assert snapshot["isDelta"] is False and len(live(snapshot)) == 6
    finally:
        server.stop()


def test_every_load_line_says_when_it_was_queued() -> None:
    server = SimulatorServer(Simulator(load_scenarios(), speed=20.0, support_every=None)).start()
    try:
        before = time.time()
        load = server.simulator.start_load(3, line_every=1.0, lines=(6, 6), seed=1)
        icws = connect(server)
        chat = load.live_chats()[0]
        assert icws.put(f"messaging/subscriptions/interactions/{chat}/chat").status_code == 200
        lines: list[str] = []
        typing: list[bool] = []
        deadline = time.monotonic() + 30
        while len([t for t in lines if STAMP.match(t)]) < 6:
            assert time.monotonic() < deadline, lines
            for message in icws.poll():
                lines += [line["text"] for line in message.get("messagesAdded", [])]
                typing += [m["isTyping"] for m in message.get("membersChanged", [])]
            time.sleep(0.05)
        stamped = [STAMP.match(text) for text in lines if STAMP.match(text)]
        assert [(m[1], int(m[2]), m[3]) for m in stamped if m] == [
            (("customer", "agent")[n % 2], n + 1, chat) for n in range(6)
        ]
        stamps = [float(m[4]) for m in stamped if m]
        assert before <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= time.time()
        assert typing.count(True) == 3 and typing.count(False) == 3
    finally:
        server.stop()


def test_the_load_generator_adds_no_thread_per_chat() -> None:
    import threading

    sim = Simulator(load_scenarios(), support_every=None)
    try:
        before = threading.active_count()
        sim.start_load(300)
        assert threading.active_count() == before
        assert len(sim.queue_contents(QueueId(2, "Load"))) == 300
    finally:
        sim.close()


def test_simulate_load_serves_a_load_queue() -> None:
    import signal

    from conftest import spawn

    proc = spawn("simulate", "--port", "0", "--load", "4")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        header = [proc.stdout.readline() for _ in range(7)]
        assert any("workgroup Load" in line and "4" in line for line in header), header
        icws = connect(cast(SimulatorServer, SimpleNamespace(url=url)))
        subscribe(icws, LOAD)
        assert len(live(queue_messages(icws)[0])) == 4
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    assert "Traceback" not in err


def test_a_morph_moves_the_interaction_in_its_queues(quiet: SimulatorServer) -> None:
    icws = connect(quiet)
    subscribe(icws, MINE, names=["Eic_State"])
    queue_messages(icws)
    assert set_faults(quiet, morph={"from": "1002", "to": "2001002"}).status_code == 200
    gone, back = queue_messages(icws)
    assert gone["interactionsRemoved"] == ["1002"] and added(back) == {"2001002": {"Eic_State": "C"}}
    assert quiet.simulator.queue_contents(QueueId(1, USER)) == ["1001", "1003", "2001002"]


def test_a_load_chat_morphed_away_is_replaced() -> None:
    server = SimulatorServer(Simulator(load_scenarios(), speed=50.0, support_every=None)).start()
    try:
        load = server.simulator.start_load(3, line_every=1.0, lines=(50, 50), seed=3)
        first = load.live_chats()[0]
        server.simulator.morph(first, "2999999")
        deadline = time.monotonic() + 30
        while first in load.live_chats():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert len(load.live_chats()) == 3 and load.arrived == 4
    finally:
        server.stop()
