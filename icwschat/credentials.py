"""A profile's password in the operating system's keyring, kept there by ``login --save-password``.

Service ``icwschat``, user name ``PROFILE:SERVER:USER`` (the server as the profile remembers it, so a
profile that moves to another server or user never sends it an old password). The ``keyring`` package is
imported inside these functions only: it costs a tenth of a second, and most commands never need it.

There is no fallback: when no backend can keep the password safe, the error says what to install, and the
password stays where it came from (``ICWS_PASSWORD``, standard input, a prompt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

    from .session import LoginRequest

SERVICE = "icwschat"
INSTALL_HINT = (
    "install a keyring service: on a Linux desktop GNOME Keyring or KWallet (a Secret Service provider, "
    "e.g. apt-get install gnome-keyring, in a D-Bus session); on a machine without one, pip install "
    "keyrings.alt and choose its encrypted file, PYTHON_KEYRING_BACKEND=keyrings.alt.file.EncryptedKeyring "
    "(it asks for a keyring password of its own; its plain-text file is refused); macOS and Windows have "
    "one built in. Or keep using ICWS_PASSWORD or --password-stdin"
)


def key(profile: str, login: LoginRequest) -> str:
    return f"{profile}:{login.server}:{login.user}"


def check_usable() -> None:
    """``UsageError`` naming what to install when no backend can keep a password safely."""
    _backend()


def saved(entry: str) -> str | None:
    """The password kept under ``entry``, None when there is none."""
    backend = _backend()
    try:
        return backend.get_password(SERVICE, entry)
    except Exception as exc:  # a backend's failures (D-Bus, Keychain, a locked store) share no class
        raise _failed("read the saved password from", backend, exc) from exc


def save(entry: str, password: str) -> None:
    backend = _backend()
    try:
        backend.set_password(SERVICE, entry, password)
    except Exception as exc:
        raise _failed("save the password in", backend, exc) from exc


def forget(entry: str) -> bool:
    """Remove the password kept under ``entry``; False when there was none."""
    from keyring.errors import PasswordDeleteError

    backend = _backend()
    try:
        if backend.get_password(SERVICE, entry) is None:
            return False
        backend.delete_password(SERVICE, entry)
    except PasswordDeleteError:  # what every backend raises for an entry that is not there
        return False
    except Exception as exc:
        raise _failed("remove the password from", backend, exc) from exc
    return True


def _backend() -> KeyringBackend:
    import keyring
    from keyring.backends import fail, null

    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # e.g. PYTHON_KEYRING_BACKEND naming a class that cannot load
        raise UsageError(f"the keyring cannot be used: {exc}", hint=INSTALL_HINT) from exc
    if isinstance(backend, null.Keyring):
        raise UsageError("keyring is disabled here (its null backend is configured)", hint=INSTALL_HINT)
    if isinstance(backend, fail.Keyring):
        raise UsageError("no keyring is available to keep the password", hint=INSTALL_HINT)
    if type(backend).__name__ == "PlaintextKeyring":
        raise UsageError(
            f"the keyring backend {type(backend).__module__}.PlaintextKeyring keeps passwords in a file that "
            "anyone who can read it can use; icwschat does not store the password there",
            hint=INSTALL_HINT,
        )
    return backend


def _failed(action: str, backend: KeyringBackend, error: Exception) -> UsageError:
    return UsageError(
        f"cannot {action} the keyring ({type(backend).__name__}): {str(error) or type(error).__name__}",
        hint="unlock the keyring (or start its service) and try again; or " + INSTALL_HINT,
    )
