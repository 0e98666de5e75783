"""ICWS over HTTP: login with switchover, and the session calls a chat monitor needs.

Every request carries ``Accept-Language`` and an overall deadline, follows no redirect, and has its reply
read within a size cap; every session request carries the ``ININ-ICWS-CSRF-Token`` header and the
``icws_{sessionId}`` cookie, set by hand because a cookie jar would not match the cookie's
``Path=/icws/{sid}`` behind a proxy prefix. Failures leave here only as :mod:`icwschat.errors` classes.
"""

from __future__ import annotations

import calendar
import contextlib
import email.utils
import json
import logging
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from http.client import HTTPException, RemoteDisconnected
from typing import Any
from urllib.parse import SplitResult, quote, urljoin, urlsplit, urlunsplit

import requests
import urllib3

from . import __version__
from .errors import (
    AuthenticationError,
    ICWSError,
    InteractionUnavailable,
    ProtocolError,
    Redirected,
    ServerBusy,
    ServerUnavailable,
    SessionGone,
    UsageError,
)
from .jsonio import loads
from .session import Session

log = logging.getLogger("icwschat.http")

MEDIA_TYPE = "application/vnd.inin.icws+JSON"
CSRF_HEADER = "ININ-ICWS-CSRF-Token"
AUTH_REQUEST_TYPE = "urn:inin.com:connection:icAuthConnectionRequestSettings"
AUTH_FAILURE_ID = "error.request.connection.authenticationFailure"
AUTH_FAILURE_CODE = -2147221503
MAX_SWITCHOVER_HOSTS = 8
DEFAULT_TIMEOUT = (5.0, 30.0)
"""(connect, reply) seconds: long enough for a busy CIC, short enough that a dead one is noticed. Connecting
may take the first; the reply, headers and body, however slowly it trickles in, the second: no request
outlives their sum."""
MAX_REPLY_BYTES = 16 * 1024 * 1024
"""What one reply may inflate to, far above a chat's (a thousand lines are well under 1 MiB): a compressed
reply that inflates without end, a few MB becoming gigabytes, costs no more memory than this."""
MAX_REPLY_VALUES = 500_000
"""JSON values one reply may hold, counted before parsing as commas and opening brackets (an over-count):
dense JSON under the size cap (``[{},{},…]``) would otherwise parse into some 500 MB of objects; at this
count no shape measured took more than 80 MB."""
READ_SIZE = 64 * 1024
RETRY_AFTER_CAP = 300.0
"""Longest wait a ``Retry-After`` is taken at: a server asking for a day is asking for too much."""
ACCEPT_ENCODING = "gzip, deflate"
"""Only what :func:`_inflate` can decode within the size cap (requests would offer brotli when installed)."""
SECRET_HEADERS = {CSRF_HEADER.lower(), "cookie", "set-cookie", "authorization"}
SECRET_FIELDS = {"password", "csrfToken", "authToken", "singleSignOnToken"}
REDACTED = "<redacted>"
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+$|^\[[0-9A-Fa-f:.]+\]$")
_HEADER_TEXT = re.compile(r"[\x20-\x7e]+")


def normalize_server(url: str) -> str:
    """``scheme://host[:port][/prefix]`` without a trailing ``/icws``; rejects anything else."""
    stripped = url.strip()
    if "://" not in stripped:
        raise UsageError(
            f"server URL {url!r} has no scheme", hint="write it as https://host:8019 (or http://host:8018)"
        )
    try:
        parts = urlsplit(stripped.rstrip("/"))
    except ValueError as exc:  # a broken [IPv6] address
        raise UsageError(f"server URL {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"server URL {url!r} is not an http(s) URL")
    if not parts.hostname:
        raise UsageError(
            f"server URL {url!r} has no host", hint="write it as https://host:8019 (or http://host:8018)"
        )
    if _port(parts) == 0:
        raise UsageError(f"server URL {url!r} has a port that is not a number from 1 to 65535")
    if parts.query or parts.fragment or parts.username:
        raise UsageError(f"server URL {url!r} may not carry a query, a fragment or credentials")
    path = parts.path[: -len("/icws")] if parts.path.lower().endswith("/icws") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _port(parts: SplitResult) -> int | None:
    """A URL's port, None when it names none, 0 when it is no number from 1 to 65535."""
    try:
        return parts.port
    except ValueError:
        return 0


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


class _TooMuchJSON(ValueError):
    """JSON, perhaps, but more of it than any chat needs."""


def _parse(body: bytes) -> Any:
    """A reply's JSON; ``ValueError`` for anything else, nesting too deep for the parser included."""
    # Counted before parsing, which is where the memory goes: a value may cost a hundred bytes once parsed.
    values = body.count(b",") + body.count(b"[") + body.count(b"{")
    if values > MAX_REPLY_VALUES:
        raise _TooMuchJSON(f"holds more than {MAX_REPLY_VALUES:,} JSON values")
    try:
        return loads(body)
    except RecursionError as exc:  # the standard library's parser, which jsonio falls back to, recurses
        raise ValueError("JSON nested too deeply") from exc


def _error_fields(response: requests.Response) -> dict[str, Any]:
    try:
        body = _parse(response.content)
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


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delay-seconds or an HTTP-date), at most
    :data:`RETRY_AFTER_CAP`; None when there is none or it means nothing."""
    text = (value or "").strip()
    if re.fullmatch(r"[0-9]+", text):
        return min(RETRY_AFTER_CAP, float(text))
    parsed = email.utils.parsedate_tz(text)
    if parsed is None:
        return None
    try:
        moment = calendar.timegm(parsed[:6]) - (parsed[9] or 0)
    except (ValueError, OverflowError):  # a year the calendar does not have
        return None
    waited = moment - (time.time() if now is None else now)
    return min(RETRY_AFTER_CAP, max(0.0, waited))


def _alternate_hosts(response: requests.Response) -> list[str]:
    try:
        body = _parse(response.content)
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
        for scheme in ("http://", "https://"):
            self.requests.mount(scheme, _DeadlineAdapter())
        # Passed on every request, not set on the session: requests lets REQUESTS_CA_BUNDLE override a
        # session's own setting, which would silently drop the user's --ca-bundle or --insecure.
        self.verify: bool | str = False if insecure else (ca_bundle or True)
        if insecure:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the CLI warns once, loudly
        self.requests.headers.update(
            {
                "Accept": MEDIA_TYPE,
                "Accept-Encoding": ACCEPT_ENCODING,
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
        """Send one request and read its reply whole, bounded in size and in time (see
        :data:`DEFAULT_TIMEOUT`); no redirect is followed. With ``stream`` the deadline covers the headers
        and a 2xx reply's body is left to the caller. Network failures become :class:`ServerUnavailable`
        (:class:`ProtocolError` for a reply that is too large); the status is not checked."""
        all_headers = dict(headers or {})
        data = None
        if body is not None:
            all_headers["Content-Type"] = f"{MEDIA_TYPE};charset=utf-8"
            data = json.dumps(body).encode()
        if log.isEnabledFor(logging.DEBUG):
            shown = redact_headers({**{k: str(v) for k, v in self.requests.headers.items()}, **all_headers})
            log.debug("→ %s %s headers=%s body=%s", method, url, shown, json.dumps(redact(body)))
        started = time.monotonic()
        connect, reply = timeout or self.timeout
        target = urlsplit(url)
        netloc = target.netloc
        with _Deadline(connect + reply) as deadline:
            try:
                response = self.requests.request(
                    method,
                    url,
                    headers=all_headers,
                    data=data,
                    stream=True,
                    allow_redirects=False,  # a redirect would carry the password, token or cookie elsewhere
                    timeout=(connect, reply),
                    verify=self.verify,
                )
            except requests.exceptions.RequestException as exc:
                raise _unreachable(exc, target, deadline) from exc
            if not stream or response.status_code >= 300:
                _read_body(response, netloc, deadline)
        if deadline.expired:  # a reply cut short may still parse: what arrived before the cut is no answer
            response.close()
            raise _timed_out(netloc, deadline)
        if log.isEnabledFor(logging.DEBUG):
            elapsed = (time.monotonic() - started) * 1000
            shown_body = "<stream>" if stream and response.status_code < 300 else _debug_body(response)
            log.debug(
                "← %s %s in %.0f ms headers=%s body=%s",
                response.status_code,
                url,
                elapsed,
                redact_headers(response.headers),
                shown_body,
            )
        return response


class _Deadline:
    """Shuts a request's socket down when its time is up.

    A read timeout counts per read, so a server trickling a byte at a time never trips it; closing the
    socket ends any read, in the header phase, the body or a TLS handshake alike. The connections of
    :class:`_DeadlineAdapter` hand their sockets to the deadline active in their thread.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._outer: _Deadline | None = None
        self._started = time.monotonic()

    def __enter__(self) -> _Deadline:
        self._outer = getattr(_active, "deadline", None)
        _active.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _active.deadline = self._outer
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def waited(self) -> float:
        """Seconds the request has had: all of them once expired, else as many as a read timeout left it."""
        return self.seconds if self.expired else round(time.monotonic() - self._started, 1)

    def watch(self, sock: socket.socket) -> None:
        if sock.fileno() < 0:
            return
        # A duplicate descriptor: TLS detaches the socket object it wraps, and the duplicate stays valid
        # across that; shutting it down shuts the one connection both share.
        twin = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
        with self._lock:
            self._sockets.append(twin)
            if self.expired:
                _shut(twin)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


_active = threading.local()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by its owner: nothing left to stop
        sock.shutdown(socket.SHUT_RDWR)


def _watch(sock: socket.socket | None) -> None:
    deadline: _Deadline | None = getattr(_active, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _DeadlineHTTPConnection(urllib3.connection.HTTPConnection):
    """Hands its socket to the active :class:`_Deadline`: when made (the TLS handshake comes after) and
    before each request (a kept-alive connection serves several)."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)
        super().request(*args, **kwargs)


class _DeadlineHTTPSConnection(_DeadlineHTTPConnection, urllib3.connection.HTTPSConnection):
    pass


class _DeadlineHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_DEADLINE_POOLS = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class _DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with connections that obey :class:`_Deadline`, direct or through an HTTP proxy."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _DEADLINE_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # SOCKS proxies bring connection classes of their own; through one, only the read timeout holds.
        if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
            manager.pool_classes_by_scheme = _DEADLINE_POOLS
        return manager


def _read_body(response: requests.Response, netloc: str, deadline: _Deadline) -> None:
    """Read the body into ``response.content``, inflating it ourselves so that its size is capped."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    raw = response.raw
    chunks = iter(lambda: raw.read(READ_SIZE, decode_content=False), b"")
    try:
        if encoding in ("", "identity"):
            body = _capped(chunks, netloc)
        elif encoding in ("gzip", "x-gzip", "deflate"):
            body = _inflate(chunks, netloc)
        else:
            raise ProtocolError(
                f"{netloc} sent a reply in an encoding icwschat did not ask for: {encoding!r}",
                status=response.status_code,
            )
        response._content = body  # requests' own copy of the body, which .content and .json() return
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # raw reads raise urllib3's errors, not requests'
        response.close()
        if deadline.expired or isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            raise _timed_out(netloc, deadline) from exc
        raise ServerUnavailable(f"the reply from {netloc} broke off before its end") from exc
    except BaseException:
        response.close()
        raise


def _capped(chunks: Iterable[bytes], netloc: str) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > MAX_REPLY_BYTES:
            raise _too_large(netloc)
    return bytes(body)


def _inflate(chunks: Iterable[bytes], netloc: str) -> bytes:
    """gzip or zlib ("deflate"), member after member, never producing more than the cap plus one byte."""
    body = bytearray()
    inflater: zlib._Decompress | None = None
    try:
        for chunk in chunks:
            data = chunk
            while data:
                if inflater is None or inflater.eof:
                    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # either header, detected
                # max_length leaves the rest in unconsumed_tail: no input inflates past the cap
                body += inflater.decompress(data, MAX_REPLY_BYTES + 1 - len(body))
                if len(body) > MAX_REPLY_BYTES:
                    raise _too_large(netloc)
                data = inflater.unused_data  # the next gzip member, once this one has ended
    except zlib.error as exc:
        raise ProtocolError(f"the compressed reply from {netloc} is damaged: {exc}") from None
    if inflater is not None and not inflater.eof:
        raise ProtocolError(f"the compressed reply from {netloc} ends too soon")
    return bytes(body)


def _too_large(netloc: str) -> ProtocolError:
    return ProtocolError(f"the reply from {netloc} inflates to more than {MAX_REPLY_BYTES >> 20} MiB")


def _timed_out(netloc: str, deadline: _Deadline) -> ServerUnavailable:
    return ServerUnavailable(f"{netloc} did not answer within {deadline.waited():g} s")


_PLAIN_HTTP_REASONS = {"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE"}
"""OpenSSL's words for an answer that is no TLS record: what a plain http port sends back."""
_NAME_MISMATCH = {62, 64}
"""X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH."""
_UNTRUSTED = {18, 19, 20, 21}
"""Self-signed, self-signed in the chain, issuer unknown (twice): a CA this machine does not trust."""
_CA_HINT = (
    "pass --ca-bundle PATH with the CA that signed the server's certificate "
    "(or --insecure to skip verification, which lets anyone on the network read your session)"
)


def _unreachable(
    exc: requests.exceptions.RequestException, url: SplitResult, deadline: _Deadline
) -> ServerUnavailable:
    """One sentence and a next step for a request that got no reply, in place of the library's text."""
    netloc = url.netloc
    causes = list(_causes(exc))
    if deadline.expired:
        return _timed_out(netloc, deadline)
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return ServerUnavailable(
            f"cannot reach {netloc}: connection refused",
            hint="is the server running, is the port right? (ICWS listens on 8019 for https, 8018 for http)",
        )
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return ServerUnavailable(
            f"cannot reach {netloc}: the host name is not known", hint="check the host name in --server"
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ServerUnavailable(
            f"cannot reach {netloc}: connecting timed out",
            hint="is the host right, is a firewall in the way?",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return _timed_out(netloc, deadline)
    tls = next((cause for cause in causes if isinstance(cause, ssl.SSLError)), None)
    if tls is not None or isinstance(exc, requests.exceptions.SSLError):
        return _tls_failure(tls, url)
    if isinstance(exc, requests.exceptions.ProxyError):
        return ServerUnavailable(
            f"cannot reach {netloc} through the proxy", hint="check HTTPS_PROXY, HTTP_PROXY and NO_PROXY"
        )
    if any(isinstance(cause, RemoteDisconnected) for cause in causes):
        return ServerUnavailable(f"{netloc} closed the connection without answering")
    if any(isinstance(cause, HTTPException) for cause in causes):
        return ProtocolError(f"{netloc} answered with something that is not an HTTP reply icwschat can read")
    # The library's own text names pools and classes, and may quote what the server sent: left out.
    error = next((cause for cause in causes if isinstance(cause, OSError) and cause.strerror), None)
    reason = error.strerror[:1].lower() + error.strerror[1:] if error and error.strerror else "it failed"
    return ServerUnavailable(f"cannot reach {netloc}: {reason}")


def _tls_failure(error: ssl.SSLError | None, url: SplitResult) -> ServerUnavailable:
    netloc = url.netloc
    if error is not None and error.reason in _PLAIN_HTTP_REASONS:
        return ServerUnavailable(
            f"{netloc} does not speak https on this port",
            hint=f"if the port serves plain http, use --server http://{netloc} (the password then travels "
            "in clear); ICWS serves https on 8019",
        )
    if not isinstance(error, ssl.SSLCertVerificationError):
        reason = error.reason if error is not None and error.reason else "the handshake failed"
        return ServerUnavailable(
            f"TLS with {netloc} failed: {reason}",
            hint="is it an https port? ICWS serves https on 8019 and plain http on 8018",
        )
    if error.verify_code in _NAME_MISMATCH:
        return ServerUnavailable(
            f"the TLS certificate of {netloc} is not issued for {url.hostname}",
            hint="use the host name the certificate was issued for in --server (openssl s_client -connect "
            f"{netloc} shows it); an IP address or another alias of the host does not match",
        )
    if error.verify_code in _UNTRUSTED:
        reason = "its certificate is not signed by a CA this machine trusts"
    else:
        reason = error.verify_message or error.reason or "the certificate was refused"
    return ServerUnavailable(f"TLS verification failed for {netloc}: {reason}", hint=_CA_HINT)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests and urllib3 nest the socket or TLS error in arguments, in
    ``reason`` and as the cause."""
    seen: set[int] = set()
    pending = [exc]
    while pending and len(seen) < 50:
        error = pending.pop(0)
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        inner = (*error.args, getattr(error, "reason", None), error.__cause__, error.__context__)
        pending.extend(item for item in inner if isinstance(item, BaseException))


def _reason(exc: Exception) -> str:
    """The innermost, most specific reason in a requests/urllib3 exception chain."""
    text = str(exc)
    match = re.search(r"\((?:Caused by )?\w+\('?(.*?)'?\)\)*$", text)
    reason = match.group(1) if match else text
    return reason.split(">: ")[-1].strip("'\" ") or text


def _debug_body(response: requests.Response) -> str:
    try:
        return json.dumps(redact(_parse(response.content)))
    except (ValueError, RecursionError):  # redact recurses too, and the parser takes deeper JSON than it
        return repr(response.content[:200])


def _json(response: requests.Response, what: str) -> Any:
    try:
        return _parse(response.content)
    except _TooMuchJSON as exc:
        raise ProtocolError(f"the server's reply to {what} {exc}", status=response.status_code) from None
    except ValueError:
        raise ProtocolError(
            f"the server's reply to {what} is not JSON (HTTP {response.status_code})",
            status=response.status_code,
        ) from None


def raise_for_status(
    response: requests.Response, what: str, client_error: type[ICWSError] = ServerUnavailable
) -> None:
    """Turn a non-2xx reply into the error class a user understands; 4xx other than 401 and 429 →
    ``client_error``."""
    status = response.status_code
    if status < 300:
        return
    if status < 400:
        raise _redirected(response)
    fields = _error_fields(response)
    if status == 401:
        raise SessionGone("session expired; run icwschat login", **fields)
    if status == 429:
        busy = ServerBusy(f"the server is too busy for {what} (HTTP 429)", **fields)
        busy.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if busy.retry_after is not None:
            busy.hint = f"it asks to wait {busy.retry_after:g} s before trying again"
        raise busy
    if status == 503:
        error = ServerUnavailable(
            f"the server is unavailable for {what} (503)",
            alternate_hosts=_alternate_hosts(response),
            **fields,
        )
        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error
    if status >= 500:
        raise ServerUnavailable(f"the server failed on {what} (HTTP {status})", **fields)
    raise client_error(f"the server refused {what} (HTTP {status})", **fields)


def _redirected(response: requests.Response) -> ICWSError:
    """A 3xx names its target for the user to check; none is followed (see :class:`Redirected`)."""
    location = response.headers.get("Location")
    if not location:
        return ProtocolError(
            f"the server answered HTTP {response.status_code} without saying where to",
            status=response.status_code,
        )
    target = urljoin(response.url, location)
    base = _server_base(target)
    advice = f"; use --server {base}" if base else ""
    return Redirected(
        f"the server redirected to {target}{advice}", target=target, status=response.status_code
    )


def _server_base(target: str) -> str | None:
    """``scheme://host:port`` and any path before ``/icws`` of a redirect's target; None when it names
    no http(s) server."""
    try:
        parts = urlsplit(target)
    except ValueError:
        return None
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = _port(parts)
    if parts.scheme not in ("http", "https") or not _HOST_RE.match(host) or port == 0:
        return None
    icws = re.search(r"/icws(?:/|$)", parts.path, re.IGNORECASE)
    prefix = parts.path[: icws.start()] if icws else ""
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, prefix, "", ""))


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
    if response.status_code == 404:
        raise UsageError(
            f"there is no ICWS login at {server}/icws/connection (HTTP 404)",
            hint="is the URL right? behind a proxy, include its prefix (https://host/…/api/IC-SERVER)",
            **_error_fields(response),
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
    if not _HEADER_TEXT.fullmatch(csrf) or not _HEADER_TEXT.fullmatch(cookie):
        # Sent back as headers on every call: a line break would add headers, and requests would refuse
        # it with an error quoting the secret.
        raise ProtocolError("the server's login reply has a csrfToken or cookie that cannot go in a header")
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


def server_version(http: HTTP, server: str) -> str:
    """``GET /icws/connection/version`` (no session needed): the release the server names, e.g.
    ``2015 R1``; from ``productReleaseDisplayString``, else the major and minor version."""
    url = f"{server}/icws/connection/version"
    response = http.send("GET", url, timeout=(3.0, 5.0))
    raise_for_status(response, "the version check")
    data = _json(response, "the version check")
    if not isinstance(data, dict):
        raise ProtocolError("the version check did not answer a JSON object")
    release = data.get("productReleaseDisplayString")
    if isinstance(release, str) and release:
        return release
    parts = [
        str(data.get(k)) for k in ("majorVersion", "minorVersion") if isinstance(data.get(k), (str, int))
    ]
    if not parts:
        raise ProtocolError("the version check named no version")
    return ".".join(parts)


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
        client_error: type[ICWSError] = ServerUnavailable,
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

    def logout(self, *, timeout: tuple[float, float] = (5.0, 10.0)) -> None:
        self.call("DELETE", "/connection", "logout", timeout=timeout)

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
        self._remove(
            f"/messaging/subscriptions/interactions/{segment(interaction_id)}",
            f"removing the watch on interaction {interaction_id}",
            timeout,
        )

    def _remove(self, path: str, what: str, timeout: tuple[float, float] | None) -> None:
        """DELETE what may already be gone (a 4xx says so): then there is nothing left to remove."""
        with contextlib.suppress(InteractionUnavailable):
            self.call("DELETE", path, what, client_error=InteractionUnavailable, timeout=timeout)

    def subscribe_queue(self, subscription_id: str, body: dict[str, Any], queue: str) -> None:
        """Subscribe to a queue's interactions; the server then queues a snapshot of them. An unknown queue,
        or one the user may not see, is a 400 (icws-protocol.md 6a lists no 403 or 404): exit 4."""
        self.call(
            "PUT",
            f"/messaging/subscriptions/queues/{segment(subscription_id)}",
            f"the subscription to queue {queue}",
            body=body,
            client_error=InteractionUnavailable,
        )

    def unsubscribe_queue(
        self, subscription_id: str, queue: str, *, timeout: tuple[float, float] | None = None
    ) -> None:
        self._remove(
            f"/messaging/subscriptions/queues/{segment(subscription_id)}",
            f"removing the subscription to queue {queue}",
            timeout,
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
