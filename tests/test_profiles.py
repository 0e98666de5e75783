"""Profiles, saved passwords and second readers, end to end through the real CLI and the simulator."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import keyring
import pytest
from conftest import (
    PASSWORD,
    ROOT,
    USER,
    Result,
    cli_env,
    icwschat,
    logged_in_sim,
    login,
    spawn,
    start_sim,
    wait_for_subscriber,
)
from fake_keyring import FILE_VARIABLE, MemoryKeyring, stored
from test_cli import run

from icwschat.credentials import SERVICE
from icwschat.profiles import LoginOptions, resolve
from icwschat.session import LoginRequest
from icwschat.simulator import SimulatorServer


@pytest.fixture(autouse=True)
def no_profile_or_keyring_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ICWSCHAT_PROFILE", "PYTHON_KEYRING_BACKEND", FILE_VARIABLE):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def file_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every CLI run in this test keeps passwords in a JSON file under tmp_path."""
    path = tmp_path / "keyring.json"
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "fake_keyring.FileKeyring")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    monkeypatch.setenv(FILE_VARIABLE, str(path))
    return path


@pytest.fixture
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> MemoryKeyring:
    """The keyring of in-process commands, restored afterwards."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.core._keyring_backend)
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


@pytest.fixture
def second_sim() -> Iterator[SimulatorServer]:
    server = start_sim()
    yield server
    server.stop()


def log_in(profile: str, sim: SimulatorServer, *extra: str) -> Result:
    result = icwschat(
        "login", "--profile", profile, "--server", sim.url, "--user", USER, *extra,
        env=cli_env(ICWS_PASSWORD=PASSWORD),
    )  # fmt: skip
    assert result.code == 0, result.err
    return result


def listing(*args: str) -> dict[str, dict[str, Any]]:
    result = icwschat("profiles", "--json", *args)
    assert result.code == 0, result.err
    return {item["name"]: item for item in result.events()}


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---- profiles ----------------------------------------------------------------------------------------


def test_two_profiles_follow_two_servers(
    sim: SimulatorServer, second_sim: SimulatorServer, isolated: Path
) -> None:
    log_in("one", sim)
    assert icwschat("login", env=cli_env(ICWSCHAT_PROFILE="two", ICWS_SERVER=second_sim.url, ICWS_USER=USER,
                                         ICWS_PASSWORD=PASSWORD)).code == 0  # fmt: skip
    assert (len(sim.simulator.sessions), len(second_sim.simulator.sessions)) == (1, 1)
    for name, server in (("one", sim), ("two", second_sim)):
        directory = isolated / "profiles" / name
        assert mode(directory) == 0o700 and mode(directory / "session.json") == 0o600
        status = icwschat("status", "--json", "--profile", name)
        assert status.events()[0]["server"] == server.url
    assert mode(isolated / "profiles") == 0o700
    transcript = icwschat("--profile", "two", "transcript", "1001", "--json")
    assert transcript.code == 0, transcript.err
    assert second_sim.simulator.logins == 1 and not second_sim.simulator.subscribers("1001")

    profiles = listing("--profile", "two")
    assert list(profiles) == ["one", "two"]
    assert profiles["one"] == {
        "name": "one", "current": False, "server": sim.url, "user": USER, "session": "alive",
        "passwordSaved": False,
    }  # fmt: skip
    assert profiles["two"]["current"] and profiles["two"]["server"] == second_sim.url

    second_sim.stop()
    sim.simulator.expire_sessions()
    states = {name: item["session"] for name, item in listing().items()}
    assert states == {"default": "logged out", "one": "expired", "two": "unreachable"}


def test_the_listing_marks_the_current_profile(sim: SimulatorServer) -> None:
    log_in("work", sim)
    lines = icwschat("profiles", env=cli_env(ICWSCHAT_PROFILE="work")).out.splitlines()
    assert lines[0].split() == ["NAME", "SERVER", "USER", "SESSION"]
    assert lines[1].split() == ["*", "work", sim.url, USER, "alive"]
    assert icwschat("profiles").out.splitlines()[1:] == [
        "* default  -                       -          logged out",
        f"  work     {sim.url}  {USER}  alive",
    ]


def test_login_reuses_the_profiles_server_and_user_until_told_otherwise(
    sim: SimulatorServer, second_sim: SimulatorServer, isolated: Path
) -> None:
    log_in("work", sim, "--app-name", "night shift")
    assert icwschat("logout", "--profile", "work").code == 0
    again = icwschat("login", "--profile", "work", env=cli_env(ICWS_PASSWORD=PASSWORD))
    assert again.code == 0, again.err
    assert f"Logged in to {sim.url} as {USER}" in again.out
    session = json.loads((isolated / "profiles" / "work" / "session.json").read_text())
    assert session["app_name"] == "night shift"
    moved = icwschat(
        "login", "--profile", "work", env=cli_env(ICWS_PASSWORD=PASSWORD, ICWS_SERVER=second_sim.url)
    )
    assert moved.code == 0, moved.err
    assert listing()["work"]["server"] == second_sim.url
    assert len(sim.simulator.sessions) == 0  # the old server's session was ended on the way


PROD = LoginRequest("https://cic.example.com:8019", USER, "night shift", "de-de", "/etc/ssl/cic.pem", True)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (LoginOptions(), PROD),
        (LoginOptions(server="https://cic.example.com:8019/icws/"), PROD),
        (LoginOptions(insecure=False, language="fr-fr"), replace(PROD, insecure=False, language="fr-fr")),
        (  # a certificate authority and --insecure belong to the server, not to the profile
            LoginOptions(server="https://other.example.com"),
            replace(PROD, server="https://other.example.com", ca_bundle=None, insecure=False),
        ),
    ],
)
def test_options_not_given_are_the_profiles(given: LoginOptions, expected: LoginRequest) -> None:
    assert resolve(given, PROD, "work") == expected


def test_login_advice_names_the_profile(sim: SimulatorServer) -> None:
    log_in("work", sim)
    sim.simulator.expire_sessions()
    result = icwschat("status", "--profile", "work")
    assert result.code == 3
    assert f"run icwschat login --profile work --server {sim.url} --user {USER}" in result.err


def test_login_on_a_new_profile_needs_a_server_and_user(sim: SimulatorServer) -> None:
    result = icwschat("login", "--profile", "new", env=cli_env(ICWS_PASSWORD=PASSWORD))
    assert result.code == 2
    assert "login needs --server URL and --user USER: the profile 'new' does not remember one" in result.err
    only_user = icwschat(
        "login", "--profile", "new", "--server", sim.url, env=cli_env(ICWS_PASSWORD=PASSWORD)
    )
    assert only_user.code == 2 and "login needs --user USER" in only_user.err
    assert sim.simulator.logins == 0


def test_a_session_stored_before_profiles_is_the_default_profile(
    sim: SimulatorServer, isolated: Path
) -> None:
    login(sim)
    (isolated / "profile.json").unlink()  # what an earlier icwschat left: session.json alone
    assert listing()["default"]["server"] == sim.url
    again = icwschat("login", env=cli_env(ICWS_PASSWORD=PASSWORD))
    assert again.code == 0, again.err
    assert "ended the profile's previous session" in again.err
    assert len(sim.simulator.sessions) == 1


def test_a_damaged_profile_is_listed_as_unusable_and_replaced_by_a_login(
    sim: SimulatorServer, isolated: Path
) -> None:
    log_in("work", sim)
    damaged = isolated / "profiles" / "work" / "session.json"
    damaged.write_text("{not json")
    result = icwschat("profiles", "--json")
    assert result.code == 0 and result.events()[1]["session"] == "unusable"
    assert f"profile work: the stored session in {damaged} is damaged (not JSON)" in result.err
    again = log_in("work", sim)
    assert "is damaged (not JSON); this login replaces it" in again.err
    assert listing()["work"]["session"] == "alive"


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b", "con", "x" * 65, "trailing-", "sp ace", ""])
def test_a_bad_profile_name_is_a_usage_error(
    name: str, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for args in (("--profile", name, "status"), ("logout", "--profile", name)):
        result = run(*args)
        assert result.code == 2 and "is not a profile name" in result.err, (args, result)
    monkeypatch.setenv("ICWSCHAT_PROFILE", name)
    if name:  # an empty ICWSCHAT_PROFILE is as good as none
        assert "is not a profile name" in run("profiles").err
    assert not isolated.exists()


# ---- sessions: one per profile -------------------------------------------------------------------------


def test_a_new_login_ends_the_profiles_old_session(sim: SimulatorServer) -> None:
    for _ in range(3):
        login(sim)
        assert len(sim.simulator.sessions) == 1
    assert icwschat("logout").code == 0
    assert len(sim.simulator.sessions) == 0 and sim.simulator.logins == 3


def test_logout_local_forgets_the_session_without_the_server(sim: SimulatorServer, isolated: Path) -> None:
    login(sim)
    result = icwschat("logout", "--local")
    assert result.code == 0 and "without telling" in result.out
    assert not (isolated / "session.json").exists()
    assert len(sim.simulator.sessions) == 1  # the server was not asked
    assert icwschat("status").code == 3


def test_watchers_on_two_profiles_do_not_exclude_each_other(sim: SimulatorServer) -> None:
    log_in("a", sim)
    log_in("b", sim)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    watchers = [spawn("watch", "1001", "--json", "--profile", name, **quiet) for name in "ab"]
    try:
        deadline = time.monotonic() + 20
        while len(sim.simulator.subscribers("1001")) < 2:
            assert all(w.poll() is None for w in watchers), "a watcher exited before subscribing"
            assert time.monotonic() < deadline, "both watchers never subscribed"
            time.sleep(0.05)
    finally:
        for watcher in watchers:
            watcher.terminate()
            watcher.wait(timeout=20)


# ---- a second reader on a busy session ---------------------------------------------------------------


@pytest.fixture
def busy(slow_sim: SimulatorServer) -> Iterator[SimulatorServer]:
    """A watch without a password holds the default profile's session."""
    first = spawn("watch", "1001", "--json", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_subscriber(slow_sim, "1001", first)
        yield slow_sim
        assert first.poll() is None, "the first watcher was disturbed"
    finally:
        first.terminate()
        first.wait(timeout=20)


def test_a_second_reader_with_a_password_uses_a_session_of_its_own(busy: SimulatorServer) -> None:
    before = set(busy.simulator.sessions)
    result = icwschat("transcript", "1002", "--json", env=cli_env(ICWS_PASSWORD=PASSWORD))
    assert result.code == 0, result.err
    assert "short-lived session of its own" in result.err
    assert any(event["event"] == "member_joined" for event in result.events())
    assert set(busy.simulator.sessions) == before and busy.simulator.logins == 2


def test_a_second_reader_ends_its_session_on_sigterm(busy: SimulatorServer) -> None:
    second = spawn("watch", "1002", "--json", env=cli_env(ICWS_PASSWORD=PASSWORD), stdout=subprocess.DEVNULL)
    try:
        wait_for_subscriber(busy, "1002", second)
        assert len(busy.simulator.sessions) == 2
        second.send_signal(signal.SIGTERM)
    finally:
        _, err = second.communicate(timeout=20)
    assert second.returncode == 143, err
    assert len(busy.simulator.sessions) == 1


def test_a_second_reader_without_a_password_is_refused(busy: SimulatorServer) -> None:
    result = icwschat("transcript", "1002", "--json")
    assert result.code == 2
    assert "already reading this session's messages" in result.err and "ICWS_PASSWORD" in result.err
    assert busy.simulator.logins == 1


def test_login_is_refused_while_a_watch_reads_the_profiles_session(busy: SimulatorServer) -> None:
    result = icwschat("login", env=cli_env(ICWS_PASSWORD=PASSWORD))
    assert result.code == 2 and "a new login would end it under it" in result.err
    assert len(busy.simulator.sessions) == 1


# ---- saved passwords -------------------------------------------------------------------------------------


def test_a_saved_password_logs_in_and_is_forgotten(
    sim: SimulatorServer, file_keyring: Path, isolated: Path
) -> None:
    saved = log_in("work", sim, "--save-password")
    assert "Saved the password in the keyring for profile work." in saved.out
    assert stored(file_keyring) == {f"{SERVICE} work:{sim.url}:{USER}": PASSWORD}
    assert listing()["work"]["passwordSaved"] is True
    for path in isolated.rglob("*"):
        assert path.is_dir() or PASSWORD not in path.read_text()

    again = icwschat("login", "--profile", "work")  # no ICWS_PASSWORD, and stdin is no terminal
    assert again.code == 0, again.err

    forgot = icwschat("logout", "--profile", "work", "--forget-password")
    assert forgot.code == 0 and "Removed the saved password." in forgot.out
    assert stored(file_keyring) == {} and listing()["work"]["passwordSaved"] is False
    refused = icwschat("login", "--profile", "work")
    assert refused.code == 2 and "no password" in refused.err


def test_a_saved_password_renews_a_long_watch(file_keyring: Path) -> None:
    with logged_in_sim(speed=5.0) as paced:
        login(paced, "--save-password")
        logins = paced.simulator.logins
        proc = spawn("watch", "1001", "--json", "--interval", "0.1")  # no ICWS_PASSWORD
        wait_for_subscriber(paced, "1001", proc)
        time.sleep(1.0)  # a few script steps in
        paced.simulator.expire_sessions()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events].count("resynced") == 1 and events[-1]["event"] == "chat_ended"
    assert paced.simulator.logins == logins + 1


def test_no_usable_keyring_is_an_error_naming_what_to_install(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    result = icwschat("login", "--server", sim.url, "--user", USER, "--save-password",
                      env=cli_env(ICWS_PASSWORD=PASSWORD))  # fmt: skip
    assert result.code == 2
    assert "no keyring is available" in result.err
    assert "gnome-keyring" in result.err and "keyrings.alt" in result.err
    assert sim.simulator.logins == 0  # refused before a session was made


def test_in_process_keyring_save_and_forget(sim: SimulatorServer, memory_keyring: MemoryKeyring) -> None:
    saved = run("login", "--server", sim.url, "--user", USER, "--save-password", password=PASSWORD)
    assert saved.code == 0, saved.err
    assert memory_keyring.entries == {(SERVICE, f"default:{sim.url}:{USER}"): PASSWORD}
    assert run("login").code == 0  # from the keyring
    forgot = run("logout", "--forget-password")
    assert forgot.code == 0 and memory_keyring.entries == {}
    assert len(sim.simulator.sessions) == 0


def test_a_profile_that_moves_to_another_server_drops_the_old_password(
    sim: SimulatorServer, second_sim: SimulatorServer, memory_keyring: MemoryKeyring
) -> None:
    assert run("login", "--server", sim.url, "--user", USER, "--save-password", password=PASSWORD).code == 0
    moved = run("login", "--server", second_sim.url, password=PASSWORD)
    assert moved.code == 0, moved.err
    assert memory_keyring.entries == {}
