"""Error classes of tools' exceptions: by class hierarchy (module and name, most specific first)
and attributes (HTTP status on the exception or its `response`, errno), then causes.

Each HTTP library is checked twice: with stand-in classes shaped like the library's (same
module, name and MRO; the classifier never imports a library, so these must classify alike),
and with the real library, which the test environment installs (litellm brings them)."""

from __future__ import annotations

import errno
import socket
import urllib.error
from types import SimpleNamespace

import pytest

from evolve.advisor.evidence import TRANSIENT
from evolve.runtime.failures import error_type_of, http_status


def shaped(module: str, name: str, *bases: type) -> type:
    """A class that looks like `module.name` to anything reading its MRO."""
    return type(name, bases or (Exception,), {"__module__": module})


def with_response(exc: BaseException, status: int) -> BaseException:
    exc.response = SimpleNamespace(status_code=status)  # type: ignore[attr-defined]
    return exc


class StandIns:
    """The libraries' exception trees as they are shaped (checked against the real ones below)."""

    # requests: RequestException is an OSError (IOError)
    req_base = shaped("requests.exceptions", "RequestException", OSError)
    req_http = shaped("requests.exceptions", "HTTPError", req_base)
    req_conn = shaped("requests.exceptions", "ConnectionError", req_base)
    req_timeout = shaped("requests.exceptions", "Timeout", req_base)
    req_read_timeout = shaped("requests.exceptions", "ReadTimeout", req_timeout)
    req_connect_timeout = shaped("requests.exceptions", "ConnectTimeout", req_conn, req_timeout)
    req_json = shaped("requests.exceptions", "InvalidJSONError", req_base)
    # httpx
    hx_base = shaped("httpx", "HTTPError")
    hx_request = shaped("httpx", "RequestError", hx_base)
    hx_transport = shaped("httpx", "TransportError", hx_request)
    hx_network = shaped("httpx", "NetworkError", hx_transport)
    hx_connect = shaped("httpx", "ConnectError", hx_network)
    hx_timeout = shaped("httpx", "TimeoutException", hx_transport)
    hx_read_timeout = shaped("httpx", "ReadTimeout", hx_timeout)
    hx_status = shaped("httpx", "HTTPStatusError", hx_base)
    # urllib3: NewConnectionError is (for history) a ConnectTimeoutError
    u3_base = shaped("urllib3.exceptions", "HTTPError")
    u3_pool = shaped("urllib3.exceptions", "PoolError", u3_base)
    u3_request = shaped("urllib3.exceptions", "RequestError", u3_pool)
    u3_timeout = shaped("urllib3.exceptions", "TimeoutError", u3_base)
    u3_read_timeout = shaped("urllib3.exceptions", "ReadTimeoutError", u3_timeout, u3_request)
    u3_connect_timeout = shaped("urllib3.exceptions", "ConnectTimeoutError", u3_timeout)
    u3_new_conn = shaped("urllib3.exceptions", "NewConnectionError", u3_connect_timeout, u3_base)
    u3_max_retry = shaped("urllib3.exceptions", "MaxRetryError", u3_request)
    u3_protocol = shaped("urllib3.exceptions", "ProtocolError", u3_base)
    u3_ssl = shaped("urllib3.exceptions", "SSLError", u3_base)
    # aiohttp: ClientResponseError carries `status`; the OS-level ones are OSErrors
    ai_base = shaped("aiohttp.client_exceptions", "ClientError")
    ai_response = shaped("aiohttp.client_exceptions", "ClientResponseError", ai_base)
    ai_conn = shaped("aiohttp.client_exceptions", "ClientConnectionError", ai_base)
    ai_os = shaped("aiohttp.client_exceptions", "ClientOSError", ai_conn, OSError)
    ai_connector = shaped("aiohttp.client_exceptions", "ClientConnectorError", ai_os)
    ai_server_conn = shaped("aiohttp.client_exceptions", "ServerConnectionError", ai_conn)
    ai_server_timeout = shaped(
        "aiohttp.client_exceptions", "ServerTimeoutError", ai_server_conn, TimeoutError
    )
    ai_payload = shaped("aiohttp.client_exceptions", "ClientPayloadError", ai_base)


def stand_in_cases() -> list[tuple[str, BaseException, str]]:
    s = StandIns
    aio_status = s.ai_response("boom")
    aio_status.status = 429  # type: ignore[attr-defined]
    aio_missing = s.ai_response("missing")
    aio_missing.status = 404  # type: ignore[attr-defined]
    return [
        ("requests 429", with_response(s.req_http("429"), 429), "rate_limit"),
        ("requests 503", with_response(s.req_http("503"), 503), "server_error"),
        ("requests 501", with_response(s.req_http("501"), 501), "http_error"),
        ("requests 404", with_response(s.req_http("404"), 404), "http_error"),
        ("requests 401", with_response(s.req_http("401"), 401), "auth"),
        ("requests 408", with_response(s.req_http("408"), 408), "timeout"),
        ("requests connection", s.req_conn("refused"), "connection"),
        ("requests read timeout", s.req_read_timeout("slow"), "timeout"),
        ("requests connect timeout", s.req_connect_timeout("slow"), "timeout"),
        ("requests bad json", s.req_json("not json"), "tool_error"),
        ("httpx connect", s.hx_connect("refused"), "connection"),
        ("httpx read timeout", s.hx_read_timeout("slow"), "timeout"),
        ("httpx 429", with_response(s.hx_status("429"), 429), "rate_limit"),
        ("httpx 502", with_response(s.hx_status("502"), 502), "server_error"),
        ("httpx 422", with_response(s.hx_status("422"), 422), "http_error"),
        ("urllib3 read timeout", s.u3_read_timeout("slow"), "timeout"),
        ("urllib3 new connection", s.u3_new_conn("refused"), "connection"),
        ("urllib3 max retries", s.u3_max_retry("gave up"), "connection"),
        ("urllib3 protocol", s.u3_protocol("reset"), "connection"),
        ("urllib3 ssl", s.u3_ssl("bad certificate"), "tool_error"),
        ("aiohttp 429", aio_status, "rate_limit"),
        ("aiohttp 404", aio_missing, "http_error"),
        ("aiohttp connector", s.ai_connector(errno.ECONNREFUSED, "refused"), "connection"),
        ("aiohttp server timeout", s.ai_server_timeout("slow"), "timeout"),
        ("aiohttp payload", s.ai_payload("cut"), "connection"),
    ]


@pytest.mark.parametrize(
    ("exc", "kind"),
    [(exc, kind) for _, exc, kind in stand_in_cases()],
    ids=[name for name, _, _ in stand_in_cases()],
)
def test_stand_in_http_errors_are_classified_by_shape(exc, kind):
    assert error_type_of(exc) == kind


def test_transient_kinds_are_those_a_retry_may_pass():
    transient = {kind for _, exc, kind in stand_in_cases() if kind in TRANSIENT}
    assert transient == {"rate_limit", "server_error", "connection", "timeout"}
    for name in ("http_error", "auth", "tool_error"):
        assert name not in TRANSIENT


def real_cases() -> list[tuple[str, object, str]]:
    """(name, a factory building the real library's exception, expected kind)."""

    def requests_status(status: int):
        requests = pytest.importorskip("requests")
        response = requests.Response()
        response.status_code = status
        return requests.HTTPError(f"{status}", response=response)

    def httpx_status(status: int):
        httpx = pytest.importorskip("httpx")
        request = httpx.Request("GET", "http://x.test/")
        response = httpx.Response(status, request=request)
        return httpx.HTTPStatusError(f"{status}", request=request, response=response)

    def aiohttp_status(status: int):
        aiohttp = pytest.importorskip("aiohttp")
        return aiohttp.ClientResponseError(None, (), status=status, message="x")

    def lib(name: str):
        return pytest.importorskip(name)

    return [
        ("requests 429", lambda: requests_status(429), "rate_limit"),
        ("requests 500", lambda: requests_status(500), "server_error"),
        ("requests 404", lambda: requests_status(404), "http_error"),
        ("requests 403", lambda: requests_status(403), "auth"),
        ("requests connection", lambda: lib("requests").ConnectionError("x"), "connection"),
        ("requests read timeout", lambda: lib("requests").ReadTimeout("x"), "timeout"),
        ("requests connect timeout", lambda: lib("requests").ConnectTimeout("x"), "timeout"),
        (
            "requests bad json",
            lambda: lib("requests").exceptions.InvalidJSONError("x"),
            "tool_error",
        ),
        ("httpx 429", lambda: httpx_status(429), "rate_limit"),
        ("httpx 503", lambda: httpx_status(503), "server_error"),
        ("httpx 505", lambda: httpx_status(505), "http_error"),
        ("httpx 400", lambda: httpx_status(400), "http_error"),
        ("httpx connect", lambda: lib("httpx").ConnectError("x"), "connection"),
        ("httpx read timeout", lambda: lib("httpx").ReadTimeout("x"), "timeout"),
        ("httpx remote protocol", lambda: lib("httpx").RemoteProtocolError("x"), "connection"),
        (
            "urllib3 read timeout",
            lambda: lib("urllib3").exceptions.ReadTimeoutError(None, "/", "slow"),
            "timeout",
        ),
        (
            "urllib3 new connection",
            lambda: lib("urllib3").exceptions.NewConnectionError(None, "refused"),
            "connection",
        ),
        (
            "urllib3 max retries",
            lambda: lib("urllib3").exceptions.MaxRetryError(None, "/", None),
            "connection",
        ),
        ("urllib3 ssl", lambda: lib("urllib3").exceptions.SSLError("bad"), "tool_error"),
        ("aiohttp 429", lambda: aiohttp_status(429), "rate_limit"),
        ("aiohttp 502", lambda: aiohttp_status(502), "server_error"),
        ("aiohttp 404", lambda: aiohttp_status(404), "http_error"),
        (
            "aiohttp connector",
            lambda: lib("aiohttp").ClientConnectorError(
                None, OSError(errno.ECONNREFUSED, "refused")
            ),
            "connection",
        ),
        ("aiohttp server timeout", lambda: lib("aiohttp").ServerTimeoutError("x"), "timeout"),
        ("aiohttp payload", lambda: lib("aiohttp").ClientPayloadError("x"), "connection"),
    ]


@pytest.mark.parametrize(
    ("make", "kind"),
    [(make, kind) for _, make, kind in real_cases()],
    ids=[name for name, _, _ in real_cases()],
)
def test_real_http_library_errors_are_classified(make, kind):
    assert error_type_of(make()) == kind


def test_stand_ins_have_the_real_libraries_shape():
    """The stand-ins are only worth their tests while they match the libraries."""
    pairs = [
        (StandIns.req_connect_timeout, "requests", "ConnectTimeout"),
        (StandIns.hx_connect, "httpx", "ConnectError"),
        (StandIns.u3_new_conn, "urllib3.exceptions", "NewConnectionError"),
        (StandIns.ai_server_timeout, "aiohttp", "ServerTimeoutError"),
        (StandIns.ai_connector, "aiohttp", "ClientConnectorError"),
    ]
    for stand_in, module, name in pairs:
        real = getattr(pytest.importorskip(module), name)

        def names(klass: type) -> list[tuple[str, str]]:
            return [
                (k.__module__.split(".")[0], k.__name__)
                for k in klass.__mro__
                if k.__module__ != "builtins" or k.__name__ in ("OSError", "TimeoutError")
            ]

        assert names(stand_in) == names(real)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ECONNRESET, "connection"),
        (errno.ECONNREFUSED, "connection"),
        (errno.ECONNABORTED, "connection"),
        (errno.EHOSTUNREACH, "connection"),
        (errno.ENETUNREACH, "connection"),
        (errno.EPIPE, "connection"),
        (errno.ETIMEDOUT, "timeout"),
        (errno.ENOENT, "tool_error"),
        (errno.EACCES, "tool_error"),
        (errno.ENOSPC, "tool_error"),
        (errno.EISDIR, "tool_error"),
    ],
    ids=lambda v: errno.errorcode.get(v, v) if isinstance(v, int) else v,
)
def test_os_errors_are_classified_by_errno(code, kind):
    assert error_type_of(OSError(code, "x")) == kind  # Python picks the subclass by errno


def test_a_plain_os_error_with_a_network_errno_is_a_connection():
    class ToolOSError(OSError):
        pass  # not a ConnectionError subclass: only its errno tells

    assert error_type_of(ToolOSError(errno.EHOSTUNREACH, "no route")) == "connection"
    assert error_type_of(ToolOSError(errno.ENOENT, "missing")) == "tool_error"


def test_dns_failures_are_transient_only_when_they_may_pass():
    assert error_type_of(socket.gaierror(socket.EAI_AGAIN, "try again")) == "connection"
    assert error_type_of(socket.gaierror(socket.EAI_NONAME, "unknown host")) == "tool_error"


def test_causes_and_reasons_are_followed():
    wrapped = RuntimeError("fetch failed")
    wrapped.__cause__ = with_response(StandIns.hx_status("503"), 503)
    assert error_type_of(wrapped) == "server_error"
    url = urllib.error.URLError(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert error_type_of(url) == "connection"
    max_retry = StandIns.u3_max_retry("gave up")
    assert error_type_of(max_retry) == "connection"
    assert error_type_of(ValueError("bad input")) == "tool_error"


def test_http_status_is_read_from_the_exception_or_its_response():
    assert http_status(with_response(Exception(), 429)) == 429
    status = Exception()
    status.status = 503  # type: ignore[attr-defined]
    assert http_status(status) == 503
    assert http_status(urllib.error.HTTPError("http://x", 502, "bad", {}, None)) == 502
    odd = Exception()
    odd.status_code = True  # type: ignore[attr-defined]  # not a status
    assert http_status(odd) is None

    class Raises:
        @property
        def status_code(self) -> int:
            raise RuntimeError("no request")

    broken = Exception()
    broken.response = Raises()  # type: ignore[attr-defined]
    assert http_status(broken) is None
    assert error_type_of(urllib.error.HTTPError("http://x", 429, "slow", {}, None)) == (
        "rate_limit"
    )
