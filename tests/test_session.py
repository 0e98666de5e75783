"""The session store: modes, atomic writes, no password, one reader per queue, profiles and their names."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from icwschat import session
from icwschat.errors import AnotherWatcher, AuthenticationError, UsageError
from icwschat.session import (
    DEFAULT_PROFILE,
    LoginRequest,
    Profile,
    Session,
    SessionStore,
    profile_name,
    profile_names,
    profile_store,
)

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


# ---- profiles ----------------------------------------------------------------------------------------

PROD = LoginRequest("https://cic.example.com:8019", "agent.one", ca_bundle="/etc/ssl/cic.pem")


def test_default_profile_is_the_state_directory_and_others_live_below_it(tmp_path: Path) -> None:
    default, prod = profile_store(tmp_path, DEFAULT_PROFILE), profile_store(tmp_path, "prod")
    assert default.path == tmp_path / "session.json"  # where icwschat kept its one session before profiles
    assert prod.path == tmp_path / "profiles" / "prod" / "session.json"
    prod.save(SESSION)
    prod.save_profile(Profile(PROD, password_saved=True))
    assert [mode(path) for path in (tmp_path, tmp_path / "profiles", prod.directory)] == [0o700] * 3
    assert mode(prod.path) == mode(prod.profile_path) == 0o600
    assert prod.load() == SESSION and prod.load_profile() == Profile(PROD, password_saved=True)
    assert default.load() is None and default.remembered() is None


def test_a_session_without_a_profile_file_tells_what_to_log_in_to(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.save(SESSION)
    assert store.remembered() == Profile(LoginRequest(SESSION.server, SESSION.user))


def test_profiles_are_listed_default_first_and_only_when_they_remember_something(tmp_path: Path) -> None:
    for name in ("zulu", "alpha", DEFAULT_PROFILE):
        profile_store(tmp_path, name).save_profile(Profile(PROD))
    (tmp_path / "profiles" / "empty").mkdir()
    (tmp_path / "profiles" / ".hidden").mkdir()
    (tmp_path / "profiles" / "linked").symlink_to(tmp_path / "profiles" / "alpha")
    assert profile_names(tmp_path) == [DEFAULT_PROFILE, "alpha", "zulu"]


@pytest.mark.parametrize("directory", ["home", "profiles"])
def test_a_profile_below_a_directory_others_can_write_is_refused(tmp_path: Path, directory: str) -> None:
    store = profile_store(tmp_path / "home", "prod")
    store.save(SESSION)
    os.chmod(tmp_path / "home" / ("profiles" if directory == "profiles" else ""), 0o777)
    with pytest.raises(UsageError, match="writable by its group and others"):
        store.load()


def test_a_damaged_profile_file_names_itself_and_the_profile(tmp_path: Path) -> None:
    store = profile_store(tmp_path, "prod")
    store.save_profile(Profile(PROD))
    store.profile_path.write_text('{"login": {"server": "https://cic", "user": 5}}')
    with pytest.raises(
        AuthenticationError, match=r"stored profile .* is damaged \(login: user is a number"
    ) as e:
        store.remembered()
    assert "icwschat login --profile prod --server https://cic --user USER" in (e.value.hint or "")


def test_each_profile_has_its_own_queue_lock(tmp_path: Path) -> None:
    with (
        profile_store(tmp_path, "a").queue_lock(),
        profile_store(tmp_path, DEFAULT_PROFILE).queue_lock(),
        pytest.raises(AnotherWatcher),
        profile_store(tmp_path, "a").queue_lock(),
    ):
        pass


@pytest.mark.parametrize("name", ["prod", "cic-2", "a", "eu.west_1", "A1"])
def test_good_profile_names(name: str) -> None:
    assert profile_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "..", "../x", "a/b", "a\\b", ".a", "a.", "-a", "nul", "COM1.txt", "é", "x" * 65]
)
def test_bad_profile_names(name: str) -> None:
    with pytest.raises(UsageError, match="is not a profile name"):
        profile_name(name)


def test_the_store_loads_where_pwd_does_not_exist() -> None:
    """No import-time dependency on POSIX-only modules beyond the lock's: Windows has no pwd."""
    code = "import sys; sys.modules['pwd'] = None; import icwschat.session, icwschat.cli; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_without_posix_modes_a_directory_is_only_checked_to_be_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "POSIX", False)
    store = SessionStore(tmp_path / "home")
    store.save(SESSION)
    os.chmod(store.directory, 0o777)  # what a Windows directory's mode bits look like
    assert store.load() == SESSION
