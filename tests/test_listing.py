"""The rows of `icwschat chats`: states in words, ages, and a table that stays aligned for any name."""

from __future__ import annotations

from datetime import datetime, timezone

from icwschat.listing import Queued, age, aligned, chat_table, listed

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def test_the_table_aligns_wide_characters_and_makes_server_text_inert() -> None:
    rows = aligned(("ID", "NAME", "X"), [("1", "李小龙", "a"), ("2", "Bob\x1b[2J", "b"), ("3", None, "c")])
    assert rows == ["ID  NAME     X", "1   李小龙   a", "2   Bob\u241b[2J  b", "3   -        c"]


def test_chats_lists_chats_and_unknown_kinds_but_not_other_interactions_unless_asked() -> None:
    queued = {"1": {"Eic_ObjectType": "Chat"}, "2": {"Eic_ObjectType": "Call"}, "3": {}}
    assert [row.interaction_id for row in listed(queued, "user:x", everything=False)] == ["1", "3"]
    assert [row.interaction_id for row in listed(queued, "user:x", everything=True)] == ["1", "2", "3"]


def test_ages_and_states_read_as_words() -> None:
    assert age({"Eic_InitiationTime": "20261129T114500Z"}, NOW) == "15m"
    assert age({"Eic_InitiationTime": "not a time"}, NOW) == "-"
    row = Queued("1001", "workgroup:Support", {"Eic_State": "A", "Eic_RemoteName": "Jane"})
    assert row.to_json()["state"] == "alerting"
    assert chat_table([row], NOW)[1].split() == ["1001", "alerting", "Jane", "-", "-", "-"]
