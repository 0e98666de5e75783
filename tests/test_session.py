"""The session store: modes, atomic writes, no password, one reader per queue."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from icwschat.errors import AnotherWatcher, AuthenticationError
from icwschat.session import Session, SessionStore

SESSION = Session("http://127.0.0.1:1", "1", "csrf-secret", "icws_1=cookie-secret", "agent.one")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_saved_file_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "state")
    store.save(SESSION)
    assert mode(store.path) == 0o600
    assert mode(store.directory) == 0o700
    assert store.load() == SESSION
    assert [p.name for p in store.directory.iterdir()] == ["session.json"]


def test_save_replaces_atomically_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.save(SESSION)
    inode = os.stat(store.path).st_ino
    store.save(Session(**{**SESSION.to_json(), "session_id": "2"}))
    assert os.stat(store.path).st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.json"]


def test_secrets_are_not_in_the_repr() -> None:
    assert "secret" not in repr(SESSION)


def test_a_session_that_is_not_json_is_an_authentication_error(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(AuthenticationError, match=r"is damaged \(not JSON\)"):
        store.load()


def test_missing_session_says_how_to_log_in(tmp_path: Path) -> None:
    with pytest.raises(AuthenticationError, match="run icwschat login"):
        SessionStore(tmp_path).require()


def test_second_reader_of_one_session_is_refused(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    with store.queue_lock():
        other = SessionStore(tmp_path)
        with pytest.raises(AnotherWatcher, match=f"pid {os.getpid()}"), other.queue_lock():
            pass
    with store.queue_lock():
        pass
