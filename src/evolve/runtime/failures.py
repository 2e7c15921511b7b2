"""What kind of failure a tool's exception is, named the way model errors are named.

`error_type_of` reads the exception's class hierarchy (by module and class name, so no HTTP
library is imported) and its attributes, then its causes (`__cause__`, `__context__`, and
urllib3's `reason`), and returns the first that names a kind:

- an HTTP status, from `status_code`, `status`, `code` (urllib), or `response.status_code` /
  `response.status` (requests, httpx, aiohttp): 429 `rate_limit`, 408 `timeout`, 5xx
  `server_error` (but 501 and 505, which do not pass), 401/403 `auth`, other 4xx `http_error`;
- timeouts of requests, httpx, urllib3, aiohttp and the builtin `TimeoutError`: `timeout`;
- connection failures of requests, httpx, urllib3, aiohttp, urllib, http.client and the builtin
  `ConnectionError`: `connection`;
  the most specific class decides (the class itself, then its bases in MRO order): urllib3's
  `NewConnectionError`, a subclass of its `ConnectTimeoutError`, is a `connection`;
- an `OSError` by errno: ECONNRESET, ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH and the like are
  `connection` (or `timeout`); a DNS lookup that may pass later (`socket.gaierror` EAI_AGAIN) is
  `connection`; any other errno (ENOENT, EACCES, a name that does not resolve...) is a
  `tool_error`.

`connection`, `timeout`, `rate_limit` and `server_error` are transient (a retry may pass);
`auth`, `http_error` and `tool_error` are not.
"""

from __future__ import annotations

import errno
import socket

TRANSIENT_ERRNOS = {
    errno.ECONNRESET: "connection",
    errno.ECONNREFUSED: "connection",
    errno.ECONNABORTED: "connection",
    errno.EHOSTUNREACH: "connection",
    errno.ENETUNREACH: "connection",
    errno.ENETDOWN: "connection",
    errno.EPIPE: "connection",
    errno.ETIMEDOUT: "timeout",
    errno.EAGAIN: "connection",
}

# (top-level package, class name) anywhere in the exception's MRO -> kind
TIMEOUT_CLASSES = {
    ("requests", "Timeout"),
    ("httpx", "TimeoutException"),
    ("urllib3", "TimeoutError"),
    ("aiohttp", "ServerTimeoutError"),
    ("aiohttp", "ConnectionTimeoutError"),
    ("requests", "ConnectTimeout"),
    ("socket", "timeout"),
    ("builtins", "TimeoutError"),
}
CONNECTION_CLASSES = {
    ("requests", "ConnectionError"),
    ("requests", "ChunkedEncodingError"),
    ("httpx", "NetworkError"),
    ("httpx", "RemoteProtocolError"),
    ("urllib3", "ProtocolError"),
    ("urllib3", "NewConnectionError"),
    ("urllib3", "MaxRetryError"),
    ("aiohttp", "ClientConnectionError"),
    ("aiohttp", "ClientPayloadError"),
    ("urllib", "URLError"),
    ("http", "RemoteDisconnected"),
    ("http", "IncompleteRead"),
    ("builtins", "ConnectionError"),
}
NOT_TRANSIENT_5XX = (501, 505)


def error_type_of(exc: BaseException) -> str:
    """The failure kind of `exc` (see the module docstring); `tool_error` when nothing says."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        kind = _own_kind(current)
        if kind is not None:
            return kind
        for nxt in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return "tool_error"


def _own_kind(exc: BaseException) -> str | None:
    status = http_status(exc)
    kind = _status_kind(status) if status is not None else None
    if kind is not None:
        return kind
    for klass in type(exc).__mro__:  # the most specific class that names a kind decides
        name = (klass.__module__.split(".")[0], klass.__name__)
        if name in TIMEOUT_CLASSES:
            return "timeout"
        if name in CONNECTION_CLASSES:
            return "connection"
    if isinstance(exc, socket.gaierror):
        return "connection" if exc.errno == socket.EAI_AGAIN else "tool_error"
    if isinstance(exc, OSError) and exc.errno is not None:
        return TRANSIENT_ERRNOS.get(exc.errno, "tool_error")
    return None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, on itself or on its `response`."""
    for holder in (exc, getattr(exc, "response", None)):
        if holder is None:
            continue
        for name in ("status_code", "status", "code"):
            try:
                value = getattr(holder, name, None)
            except Exception:  # a property that raises (httpx without a request)
                continue
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value < 600:
                return value
    return None


def _status_kind(status: int) -> str | None:
    if status == 429:
        return "rate_limit"
    if status == 408:
        return "timeout"
    if status in (401, 403):
        return "auth"
    if 500 <= status < 600:
        return "http_error" if status in NOT_TRANSIENT_5XX else "server_error"
    if 400 <= status < 500:
        return "http_error"
    return None
