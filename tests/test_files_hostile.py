"""Hostile files and documents: JSON nested past any parser, a state directory others could write,
symbolic links planted where icwschat writes, and a stored session that was damaged."""

from __future__ import annotations

import json
import os
import pwd
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import icwschat

from icwschat import jsonio
from icwschat.errors import AuthenticationError, UsageError
from icwschat.session import Session, SessionStore


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b'{"a":[' * (depth // 2) + b"[" * (depth % 2) + inner + b"]" * (depth % 2) + b"]}" * (depth // 2)


DEEP = {
    "past both parsers": b"[" * 100_000 + b"]" * 100_000,
    "objects past both parsers": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "past the standard library": b'["\\ud800",' + b"[" * 3_000 + b"]" * 3_001,  # orjson refuses the surrogate
    # orjson reads up to 1024 levels, but repr() and the standard library's writer give up near 1000: a
    # message this deep crashed the line that reports it as not a chat message.
    "within orjson's limit": nested(1_020),
    "within the standard library's limit": nested(900, b'"\\ud800"'),
    "one past the limit": nested(jsonio.MAX_DEPTH + 1),
    "one past the limit, arrays only": b"[" * (jsonio.MAX_DEPTH + 1) + b"]" * (jsonio.MAX_DEPTH + 1),
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_json_nested_too_deep_is_not_json(name: str) -> None:
    document = DEEP[name]
    with pytest.raises(ValueError, match="nested too deep"):
        jsonio.loads(document)
    with pytest.raises(ValueError, match="nested too deep"):
        jsonio.loads(document.decode())
    with pytest.raises(ValueError, match="nested too deep"):
        jsonio.loads_all([b"{}", document])


@pytest.mark.parametrize("inner", [b"1", b'"\\ud800"'])
def test_json_as_deep_as_the_limit_is_read(inner: bytes) -> None:
    document = nested(jsonio.MAX_DEPTH, inner)
    value = json.loads(document)
    assert jsonio.loads(document) == value
    assert jsonio.loads_all([document, b"[]"]) == [value, []]
    assert jsonio.dumps_lines([value]) == jsonio.stdlib_line(value)
    assert jsonio.loads(b'"' + b"[{" * 1_000 + b'"') == "[{" * 1_000  # brackets in a string nest nothing


# ---- the state directory and the files in it ----------------------------------------------------------

SESSION = Session("http://127.0.0.1:1", "1", "csrf-secret", "icws_1=cookie-secret", "agent.one")
AS_ROOT = os.geteuid() == 0
OTHER_UID = 54_321


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


USES: dict[str, Callable[[SessionStore], object]] = {
    "load": SessionStore.load,
    "save": lambda store: store.save(SESSION),
    "check_writable": lambda store: store.check_writable(),
    "queue_lock": lambda store: store.queue_lock().__enter__(),
    "forget": SessionStore.forget,
}


def test_a_symlink_planted_at_the_queue_lock_is_refused_and_its_target_kept(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "home")
    store.save(SESSION)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (store.directory / "queue.lock").symlink_to(victim)
    with (
        pytest.raises(UsageError, match=r"queue\.lock: it is a symbolic link") as refused,
        store.queue_lock(),
    ):
        pass
    assert victim.read_text() == "keep me"
    assert f"rm -r {store.lock_path}" in (refused.value.hint or "")


def test_a_queue_lock_that_is_no_file_is_refused(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "home")
    store.save(SESSION)
    os.mkfifo(store.directory / "queue.lock")
    with pytest.raises(UsageError, match=r"queue\.lock: it is not a regular file"), store.queue_lock():
        pass


def test_a_symlink_planted_at_the_session_is_not_followed(tmp_path: Path) -> None:
    elsewhere = SessionStore(tmp_path / "elsewhere")
    elsewhere.save(Session(**{**SESSION.to_json(), "server": "https://attacker.example"}))
    store = SessionStore(tmp_path / "home")
    store.save(SESSION)
    store.path.unlink()
    store.path.symlink_to(elsewhere.path)
    with pytest.raises(AuthenticationError, match="is a symbolic link") as refused:
        store.load()
    assert f"rm {store.path}" in (refused.value.hint or "")
    store.save(SESSION)  # a save replaces the link itself, never writes through it
    assert not store.path.is_symlink() and store.load() == SESSION
    assert elsewhere.load() is not None and elsewhere.load() != SESSION


@pytest.mark.parametrize("use", sorted(USES))
@pytest.mark.parametrize("bits", [0o770, 0o707, 0o1777], ids=oct)
def test_a_state_directory_others_can_write_is_refused(tmp_path: Path, use: str, bits: int) -> None:
    store = SessionStore(tmp_path / "home")
    store.save(SESSION)
    os.chmod(store.directory, bits)
    with pytest.raises(UsageError, match="writable by") as refused:
        USES[use](store)
    assert f"chmod 700 {store.directory}" in (refused.value.hint or "")
    assert mode(store.directory) == bits  # refused, not quietly changed: something may already be planted


@pytest.mark.skipif(not AS_ROOT, reason="giving a directory to another user takes root")
@pytest.mark.parametrize("use", sorted(USES))
def test_a_state_directory_of_another_user_is_refused(tmp_path: Path, use: str) -> None:
    store = SessionStore(tmp_path / "home")
    store.save(SESSION)
    os.chown(store.directory, OTHER_UID, -1)
    with pytest.raises(UsageError, match=rf"belongs to uid {OTHER_UID}\b.*, not to you") as refused:
        USES[use](store)
    assert f"chown {pwd.getpwuid(os.geteuid()).pw_name} {store.directory}" in (refused.value.hint or "")


def test_a_state_directory_readable_by_others_is_tightened(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "home")
    store.directory.mkdir(mode=0o755)
    os.chmod(store.directory, 0o755)
    assert store.load() is None and mode(store.directory) == 0o755  # reading changes nothing
    store.save(SESSION)
    assert mode(store.directory) == 0o700


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o777], ids=oct)
def test_missing_parents_are_created_0700_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    os.chmod(tmp_path, 0o755)
    store = SessionStore(tmp_path / "a" / "b" / "home")
    previous = os.umask(umask)
    try:
        store.check_writable()
        store.save(SESSION)
    finally:
        os.umask(previous)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", store.directory)] == [0o700] * 3
    assert mode(tmp_path) == 0o755 and mode(store.path) == 0o600
    assert store.load() == SESSION


@pytest.mark.parametrize("use", sorted(USES))
def test_a_file_where_the_state_directory_should_be_is_a_usage_error(tmp_path: Path, use: str) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory")
    with pytest.raises(
        UsageError, match=re.escape(f"the state directory {home} is not a directory")
    ) as refused:
        USES[use](SessionStore(home))
    assert "ICWSCHAT_HOME" in (refused.value.hint or "")
    assert home.read_text() == "not a directory"


@pytest.mark.parametrize("use", ["save", "check_writable", "queue_lock"])
def test_a_state_directory_that_cannot_be_created_is_a_usage_error(tmp_path: Path, use: str) -> None:
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "home"
    with pytest.raises(UsageError, match=re.escape(f"cannot create the state directory {home}")) as refused:
        USES[use](SessionStore(home))
    assert f"mkdir -m 700 -p {home}" in (refused.value.hint or "")


def test_nothing_to_load_or_forget_creates_no_directory(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "home")
    assert store.load() is None and store.forget() is False
    assert not store.directory.exists()


def test_a_session_that_is_a_directory_cannot_be_stored(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "home")
    store.path.mkdir(parents=True)
    os.chmod(store.directory, 0o700)
    with pytest.raises(UsageError, match=re.escape(f"cannot store the session in {store.path}")):
        store.check_writable()
    with pytest.raises(AuthenticationError, match=re.escape(f"cannot read the stored session {store.path}")):
        store.load()


@pytest.mark.skipif(AS_ROOT, reason="root writes into a read-only directory; the tests above use a file")
def test_a_read_only_state_directory_is_a_usage_error(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "home")
    store.save(SESSION)
    os.chmod(store.directory, 0o500)
    try:
        with pytest.raises(
            UsageError, match=re.escape(f"cannot write in the state directory {store.directory}")
        ):
            store.check_writable()
        assert store.load() == SESSION
    finally:
        os.chmod(store.directory, 0o700)


def test_check_writable_leaves_nothing_behind(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "home")
    store.check_writable()
    assert list(store.directory.iterdir()) == []
    store.save(SESSION)
    store.check_writable()
    assert [p.name for p in store.directory.iterdir()] == ["session.json"]
    assert store.load() == SESSION


DAMAGED: dict[str, bytes] = {
    "not json": b"{not json",
    "a list": b"[]",
    "null": b"null",
    "a string": b'"session"',
    "server not a string": b'{"server": 5}',
    "nothing": b"{}",
    "not UTF-8": b'{"server": "\xff\xfe"}',
    "nested too deep": b"[" * 100_000 + b"]" * 100_000,
    "features a list": json.dumps({**SESSION.to_json(), "features": []}).encode(),
    "feature version a string": json.dumps({**SESSION.to_json(), "features": {"messaging": "2"}}).encode(),
    "insecure a string": json.dumps({**SESSION.to_json(), "insecure": "yes"}).encode(),
    "ca_bundle a number": json.dumps({**SESSION.to_json(), "ca_bundle": 1}).encode(),
    "user missing": json.dumps({k: v for k, v in SESSION.to_json().items() if k != "user"}).encode(),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_a_damaged_session_is_an_authentication_error_naming_the_file(tmp_path: Path, name: str) -> None:
    store = SessionStore(tmp_path / "home")
    store.save(SESSION)
    store.path.write_bytes(DAMAGED[name])
    with pytest.raises(
        AuthenticationError, match=re.escape(f"the stored session in {store.path} is damaged")
    ) as refused:
        store.load()
    assert f"rm {store.path}" in (refused.value.hint or "")
    assert "icwschat login" in (refused.value.hint or "")


def test_a_damaged_session_names_the_server_and_user_it_still_holds(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "home")
    store.save(SESSION)
    store.path.write_text(json.dumps({**SESSION.to_json(), "features": None}))
    with pytest.raises(AuthenticationError, match=r"features is null, not an object") as refused:
        store.load()
    assert f"icwschat login --server {SESSION.server} --user {SESSION.user}" in (refused.value.hint or "")


def test_a_session_with_fields_from_a_later_version_loads(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "home")
    store.save(SESSION)
    store.path.write_text(json.dumps({**SESSION.to_json(), "profile": "work"}))
    assert store.load() == SESSION


@pytest.mark.parametrize(
    ("setup", "code", "words"),
    [
        ("file home", 2, "is not a directory"),
        ("open home", 2, "writable by"),
        ("damaged session", 3, "is damaged"),
    ],
)
def test_status_explains_a_broken_setup(isolated: Path, setup: str, code: int, words: str) -> None:
    if setup == "file home":
        isolated.write_text("")
    else:
        store = SessionStore(isolated)
        store.save(SESSION)
        if setup == "open home":
            os.chmod(isolated, 0o777)
        else:
            store.path.write_text('{"server": 5}')
    result = icwschat("status")
    assert (result.code, result.out) == (code, "")
    assert words in result.err and "hint:" in result.err
