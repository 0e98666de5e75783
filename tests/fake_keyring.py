"""Keyring backends for tests, so no test touches the machine's real keyring.

``MemoryKeyring`` is installed in-process with ``keyring.set_keyring``. ``FileKeyring`` is for the CLI run as
a subprocess: ``PYTHON_KEYRING_BACKEND=fake_keyring.FileKeyring`` with this folder on ``PYTHONPATH`` and
``ICWSCHAT_TEST_KEYRING`` naming a JSON file under the test's tmp_path. Neither is ever chosen by keyring's
own detection (their priority raises), only by those two explicit ways.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.errors import PasswordDeleteError

FILE_VARIABLE = "ICWSCHAT_TEST_KEYRING"


class MemoryKeyring(KeyringBackend):
    @properties.classproperty
    def priority(cls) -> float:
        raise RuntimeError("a test backend, installed only by keyring.set_keyring")

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


class FileKeyring(KeyringBackend):
    @properties.classproperty
    def priority(cls) -> float:
        if FILE_VARIABLE not in os.environ:
            raise RuntimeError(f"a test backend: set {FILE_VARIABLE}")
        return 1

    @staticmethod
    def _path() -> Path:
        return Path(os.environ[FILE_VARIABLE])

    def _entries(self) -> dict[str, str]:
        try:
            entries: dict[str, str] = json.loads(self._path().read_text())
        except FileNotFoundError:
            return {}
        return entries

    def get_password(self, service: str, username: str) -> str | None:
        return self._entries().get(f"{service} {username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        self._path().write_text(json.dumps({**self._entries(), f"{service} {username}": password}))

    def delete_password(self, service: str, username: str) -> None:
        entries = self._entries()
        if entries.pop(f"{service} {username}", None) is None:
            raise PasswordDeleteError("no such password")
        self._path().write_text(json.dumps(entries))


def stored(path: Path) -> dict[str, str]:
    """What a FileKeyring at ``path`` holds, keyed ``service username``."""
    return json.loads(path.read_text()) if path.exists() else {}
