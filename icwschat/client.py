"""ICWS over HTTP: login with switchover, and the session calls a chat monitor needs.

Every request carries a timeout and ``Accept-Language``; every session request carries the
``ININ-ICWS-CSRF-Token`` header and the ``icws_{sessionId}`` cookie, set by hand because a cookie jar
would not match the cookie's ``Path=/icws/{sid}`` behind a proxy prefix. Failures leave here only as
:mod:`icwschat.errors` classes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3

from . import __version__
from .errors import (
    AuthenticationError,
    ICWSError,
    InteractionUnavailable,
    ProtocolError,
    ServerUnavailable,
    SessionGone,
    UsageError,
)
from .session import Session

log = logging.getLogger("icwschat.http")

MEDIA_TYPE = "application/vnd.inin.icws+JSON"
CSRF_HEADER = "ININ-ICWS-CSRF-Token"
AUTH_REQUEST_TYPE = "urn:inin.com:connection:icAuthConnectionRequestSettings"
AUTH_FAILURE_ID = "error.request.connection.authenticationFailure"
AUTH_FAILURE_CODE = -2147221503
MAX_SWITCHOVER_HOSTS = 8
DEFAULT_TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds: long enough for a busy CIC, short enough that a dead one is noticed."""
SECRET_HEADERS = {CSRF_HEADER.lower(), "cookie", "set-cookie", "authorization"}
SECRET_FIELDS = {"password", "csrfToken", "authToken", "singleSignOnToken"}
REDACTED = "<redacted>"
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+$|^\[[0-9A-Fa-f:.]+\]$")


def normalize_server(url: str) -> str:
    """``scheme://host[:port][/prefix]`` without a trailing ``/icws``; rejects anything else."""
    text = url.strip().rstrip("/")
    if "://" not in text:
        raise UsageError(
            f"server URL {url!r} has no scheme", hint="write it as https://host:8019 (or http://host:8018)"
        )
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"server URL {url!r} is not an http(s) URL with a host")
    if parts.query or parts.fragment or parts.username:
        raise UsageError(f"server URL {url!r} may not carry a query, a fragment or credentials")
    path = parts.path[: -len("/icws")] if parts.path.lower().endswith("/icws") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def alternate_server(server: str, host: str) -> str:
    """The base URL for an alternate host: same scheme, port and path prefix.

    Behind a web proxy (``…/api/{icServer}``) the IC server's name lives in the path, so it is substituted
    there; otherwise the host name is.
    """
    if not _HOST_RE.match(host):
        raise ProtocolError(f"the server named an alternate host that is not a host name: {host!r}")
    parts = urlsplit(server)
    proxy = re.match(r"^(.*/api/)[^/]+$", parts.path)
    if proxy:
        return str(urlunsplit((parts.scheme, parts.netloc, proxy.group(1) + host, "", "")))
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return str(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def segment(value: str) -> str:
    """Percent-encode one path segment so ids from users or servers cannot add path or header parts."""
    return quote(value, safe="")


def redact(value: Any) -> Any:
    """A copy of a JSON value with passwords and tokens replaced, for debug logs."""
    if isinstance(value, dict):
        return {k: REDACTED if k in SECRET_FIELDS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: REDACTED if k.lower() in SECRET_HEADERS else v for k, v in headers.items()}


def _error_fields(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"status": response.status_code}
    if not isinstance(body, dict):
        return {"status": response.status_code}
    code = body.get("errorCode")
    message = body.get("message")
    error_id = body.get("errorId")
    return {
        "status": response.status_code,
        "error_id": error_id if isinstance(error_id, str) else None,
        "error_code": code if isinstance(code, int) else None,
        "server_message": message if isinstance(message, str) else None,
    }


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _alternate_hosts(response: requests.Response) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        return []
    hosts = body.get("alternateHostList") if isinstance(body, dict) else None
    if not isinstance(hosts, list):
        return []
    return [h for h in hosts if isinstance(h, str) and h]


class HTTP:
    """One ``requests.Session`` with ICWS defaults, debug logging and error translation."""

    def __init__(
        self,
        *,
        language: str = "en-us",
        ca_bundle: str | None = None,
        insecure: bool = False,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.requests = requests.Session()
        self.requests.trust_env = True
        # Passed on every request, not set on the session: requests lets REQUESTS_CA_BUNDLE override a
        # session's own setting, which would silently drop the user's --ca-bundle or --insecure.
        self.verify: bool | str = False if insecure else (ca_bundle or True)
        if insecure:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the CLI warns once, loudly
        self.requests.headers.update(
            {
                "Accept": MEDIA_TYPE,
                "Accept-Language": language,
                "User-Agent": f"icwschat/{__version__}",
            }
        )
        self.timeout = timeout

    def close(self) -> None:
        self.requests.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        stream: bool = False,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send one request; network failures become :class:`ServerUnavailable`. Status is not checked."""
        all_headers = dict(headers or {})
        data = None
        if body is not None:
            all_headers["Content-Type"] = f"{MEDIA_TYPE};charset=utf-8"
            data = json.dumps(body).encode()
        if log.isEnabledFor(logging.DEBUG):
            shown = redact_headers({**{k: str(v) for k, v in self.requests.headers.items()}, **all_headers})
            log.debug("→ %s %s headers=%s body=%s", method, url, shown, json.dumps(redact(body)))
        started = time.monotonic()
        try:
            response = self.requests.request(
                method,
                url,
                headers=all_headers,
                data=data,
                stream=stream,
                timeout=timeout or self.timeout,
                verify=self.verify,
            )
        except requests.exceptions.SSLError as exc:
            raise ServerUnavailable(
                f"TLS verification failed for {urlsplit(url).netloc}: {_reason(exc)}",
                hint="pass --ca-bundle PATH with the CA that signed the server's certificate "
                "(or --insecure to skip verification, which lets anyone on the network read your session)",
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise ServerUnavailable(f"{urlsplit(url).netloc} did not answer in time") from exc
        except requests.exceptions.RequestException as exc:
            raise ServerUnavailable(f"cannot reach {urlsplit(url).netloc}: {_reason(exc)}") from exc
        if log.isEnabledFor(logging.DEBUG):
            elapsed = (time.monotonic() - started) * 1000
            shown_body = "<stream>" if stream else _debug_body(response)
            log.debug(
                "← %s %s in %.0f ms headers=%s body=%s",
                response.status_code,
                url,
                elapsed,
                redact_headers(response.headers),
                shown_body,
            )
        return response


def _reason(exc: Exception) -> str:
    """The innermost, most specific reason in a requests/urllib3 exception chain."""
    text = str(exc)
    match = re.search(r"\((?:Caused by )?\w+\('?(.*?)'?\)\)*$", text)
    reason = match.group(1) if match else text
    return reason.split(">: ")[-1].strip("'\" ") or text


def _debug_body(response: requests.Response) -> str:
    try:
        return json.dumps(redact(response.json()))
    except ValueError:
        return repr(response.content[:200])


def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(
            f"the server's reply to {what} is not JSON (HTTP {response.status_code})",
            status=response.status_code,
        ) from None


def raise_for_status(
    response: requests.Response, what: str, client_error: type[ICWSError] = ICWSError
) -> None:
    """Turn a non-2xx reply into the error class a user understands; 4xx other than 401 → ``client_error``."""
    status = response.status_code
    if status < 300:
        return
    fields = _error_fields(response)
    if status == 401:
        raise SessionGone("session expired; run icwschat login", **fields)
    if status == 503:
        error = ServerUnavailable(
            f"the server is unavailable for {what} (503)",
            alternate_hosts=_alternate_hosts(response),
            **fields,
        )
        error.retry_after = _retry_after(response)
        raise error
    if status >= 500:
        raise ServerUnavailable(f"the server failed on {what} (HTTP {status})", **fields)
    raise client_error(f"the server refused {what} (HTTP {status})", **fields)


def login(
    http: HTTP,
    server: str,
    user: str,
    password: str,
    *,
    app_name: str = "icwschat",
    language: str = "en-us",
    ca_bundle: str | None = None,
    insecure: bool = False,
    on_switchover: Callable[[str, ServerUnavailable], None] | None = None,
) -> Session:
    """``POST /icws/connection``, following ``alternateHostList`` on 503, each host once, in order."""
    body = {
        "__type": AUTH_REQUEST_TYPE,
        "applicationName": app_name,
        "userID": user,
        "password": password,
    }
    tried: list[str] = []
    queue = [server]
    last_error: ServerUnavailable | None = None
    while queue and len(tried) < MAX_SWITCHOVER_HOSTS:
        candidate = queue.pop(0)
        if candidate in tried:
            continue
        tried.append(candidate)
        try:
            return _login_once(http, candidate, body, user, language, ca_bundle, insecure)
        except ServerUnavailable as error:
            last_error = error
            alternates = [alternate_server(candidate, h) for h in error.alternate_hosts]
            fresh = [a for a in alternates if a not in tried and a not in queue]
            if fresh and on_switchover:
                on_switchover(fresh[0], error)
            queue.extend(fresh)
    assert last_error is not None
    if len(tried) > 1:
        last_error.message = (
            f"{last_error.message}; tried {len(tried)} hosts: {', '.join(urlsplit(t).netloc for t in tried)}"
        )
        last_error.args = (last_error.message,)
    raise last_error


def _login_once(
    http: HTTP,
    server: str,
    body: dict[str, Any],
    user: str,
    language: str,
    ca_bundle: str | None,
    insecure: bool,
) -> Session:
    url = f"{server}/icws/connection?include=features"
    response = http.send("POST", url, headers={"Accept-Language": language}, body=body)
    if response.status_code == 400:
        fields = _error_fields(response)
        if fields.get("error_id") == AUTH_FAILURE_ID or fields.get("error_code") == AUTH_FAILURE_CODE:
            raise AuthenticationError(
                f"login failed for {user!r}: wrong user name or password",
                hint="check the user and password; ICWS_PASSWORD may hold an old one",
                **fields,
            )
    raise_for_status(response, "login", client_error=AuthenticationError)
    data = _json(response, "login")
    if not isinstance(data, dict):
        raise ProtocolError("the server's login reply is not a JSON object", status=response.status_code)
    session_id = data.get("sessionId") or response.headers.get("ININ-ICWS-Session-ID")
    csrf = data.get("csrfToken") or response.headers.get(CSRF_HEADER)
    if not isinstance(session_id, str) or not isinstance(csrf, str) or not session_id or not csrf:
        raise ProtocolError("the server's login reply has no sessionId or csrfToken")
    cookie = _session_cookie(response, session_id)
    return Session(
        server=server,
        session_id=session_id,
        csrf_token=csrf,
        cookie=cookie,
        user=str(data.get("userID") or user),
        language=language,
        app_name=str(body["applicationName"]),
        user_display_name=str(data.get("userDisplayName") or ""),
        features=_features(data.get("features")),
        ca_bundle=ca_bundle,
        insecure=insecure,
    )


def _session_cookie(response: requests.Response, session_id: str) -> str:
    """``icws_{sid}=value`` from Set-Cookie; any ``icws_*`` cookie if the name differs."""
    raw_headers = response.raw.headers.getlist("Set-Cookie") if response.raw is not None else []
    candidates = [h.split(";", 1)[0].strip() for h in raw_headers]
    for wanted in (f"icws_{session_id}=", "icws_"):
        for cookie in candidates:
            if cookie.startswith(wanted):
                return cookie
    raise ProtocolError("the server's login reply set no icws_ session cookie")


def _features(value: Any) -> dict[str, int]:
    features: dict[str, int] = {}
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                name, version = item.get("featureId"), item.get("version")
                if isinstance(name, str) and isinstance(version, int):
                    features[name] = version
    return features


class Connection:
    """Calls made within one ICWS session."""

    def __init__(self, http: HTTP, session: Session) -> None:
        self.http = http
        self.session = session

    @property
    def base(self) -> str:
        return f"{self.session.server}/icws/{segment(self.session.session_id)}"

    def _headers(self, *, csrf: bool = True) -> dict[str, str]:
        headers = {"Cookie": self.session.cookie}
        if csrf:
            headers[CSRF_HEADER] = self.session.csrf_token
        return headers

    def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: Any = None,
        client_error: type[ICWSError] = ICWSError,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        response = self.http.send(
            method, f"{self.base}{path}", headers=self._headers(), body=body, timeout=timeout
        )
        raise_for_status(response, what, client_error)
        return response

    def connection_state(self) -> dict[str, Any]:
        """``GET /icws/{sid}/connection``: ``connectionState`` 0 none, 1 up, 2 down."""
        data = _json(self.call("GET", "/connection", "the connection check"), "the connection check")
        if not isinstance(data, dict):
            raise ProtocolError("the connection check did not answer a JSON object")
        return data

    def logout(self) -> None:
        self.call("DELETE", "/connection", "logout", timeout=(5.0, 10.0))

    def subscribe_chat(self, interaction_id: str) -> None:
        self.call(
            "PUT",
            f"/messaging/subscriptions/interactions/{segment(interaction_id)}/chat",
            f"the chat subscription for interaction {interaction_id}",
            body={},
            client_error=InteractionUnavailable,
        )

    def unsubscribe_chat(self, interaction_id: str, *, timeout: tuple[float, float] | None = None) -> bool:
        """Remove the chat subscription; False when the server says there was none to remove."""
        try:
            self.call(
                "DELETE",
                f"/messaging/subscriptions/interactions/{segment(interaction_id)}/chat",
                f"removing the chat subscription for interaction {interaction_id}",
                client_error=InteractionUnavailable,
                timeout=timeout,
            )
        except InteractionUnavailable as error:
            if error.status in (400, 404):
                return False
            raise
        return True

    def watch_interaction(self, interaction_id: str, attributes: list[str]) -> None:
        self.call(
            "PUT",
            f"/messaging/subscriptions/interactions/{segment(interaction_id)}",
            f"watching interaction {interaction_id}",
            body={"attributeNames": attributes},
            client_error=InteractionUnavailable,
        )

    def unwatch_interaction(self, interaction_id: str, *, timeout: tuple[float, float] | None = None) -> None:
        # A watch that is already gone with its interaction leaves nothing to clean up.
        with contextlib.suppress(InteractionUnavailable):
            self.call(
                "DELETE",
                f"/messaging/subscriptions/interactions/{segment(interaction_id)}",
                f"removing the watch on interaction {interaction_id}",
                client_error=InteractionUnavailable,
                timeout=timeout,
            )

    def poll_messages(self) -> list[Any]:
        """One short poll; the queued messages in server order."""
        response = self.http.send("GET", f"{self.base}/messaging/messages", headers=self._headers())
        raise_for_status(response, "reading messages")
        data = _json(response, "reading messages")
        if not isinstance(data, list):
            raise ProtocolError("the message queue did not answer a JSON array")
        return data

    def open_event_stream(self, read_timeout: float) -> Generator[bytes, None, None]:
        """Open server-sent events on the message queue URL; raw byte chunks as they arrive."""
        response = self.http.send(
            "GET",
            f"{self.base}/messaging/messages",
            # Uncompressed: a stream cannot be read a bounded piece at a time through a decompressor that
            # may inflate each piece a thousandfold.
            headers={**self._headers(), "Accept": "text/event-stream", "Accept-Encoding": "identity"},
            stream=True,
            timeout=(self.http.timeout[0], read_timeout),
        )
        try:
            raise_for_status(response, "opening the event stream")
            media = response.headers.get("Content-Type", "")
            if not media.startswith("text/event-stream"):
                raise ProtocolError(
                    f"the server answered the event stream request with {media or 'no media type'}",
                    hint="use --transport poll",
                )
            if response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
                raise ProtocolError(
                    "the server compressed the event stream although it was asked not to",
                    hint="use --transport poll",
                )
        except BaseException:
            response.close()
            raise
        return _chunks(response, read_timeout)


STREAM_READ_SIZE = 8192


def _chunks(response: requests.Response, read_timeout: float) -> Generator[bytes, None, None]:
    """The body as it arrives, whatever its framing.

    ``read1`` returns as soon as some bytes are there, from a chunked body and from one that ends when the
    connection closes alike; ``iter_content`` would read a close-delimited body to its end first.
    """
    try:
        while chunk := response.raw.read1(STREAM_READ_SIZE):
            yield chunk
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise ServerUnavailable(
            f"the event stream sent nothing, not even a keep-alive, for {read_timeout:g} s"
        ) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise ServerUnavailable(f"the event stream broke: {_reason(exc)}") from exc
    finally:
        response.close()
