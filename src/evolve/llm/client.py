"""The one place that imports litellm (lazily, on the first real call): model calls, structured
output, tokens and cost.

Provider failures become `ModelError`s with an `error_type` (rate_limit, server_error, timeout,
connection, bad_response, auth, bad_request) and are never retried here: the node's `on_error`
policy is the only retry layer. litellm is imported offline and quiet (no network price fetch,
no .env reading) the first time a real call is made, never at import of this module.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from evolve.llm.cassettes import request_key
from evolve.llm.model import ModelError, ModelReply, ModelRequest

if TYPE_CHECKING:
    from evolve.llm.cassettes import Cassette

_litellm: Any = None
_import_lock = threading.Lock()


def litellm() -> Any:
    """Import litellm once, offline and quiet (no network price fetch, no .env reading)."""
    global _litellm
    with _import_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
            import litellm as module

            module.suppress_debug_info = True
            logging.getLogger("LiteLLM").setLevel(logging.ERROR)
            module.drop_params = True  # a provider without an option ignores it, not fails
            module.telemetry = False
            _litellm = module
    return _litellm


def response_format(model: str, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """json_schema where litellm says the provider supports it, else JSON mode."""
    if schema is None:
        return None
    try:
        strict_ok = litellm().supports_response_schema(model=model)
    except Exception:  # an unknown model is not an error here, just unknown
        strict_ok = False
    if strict_ok:
        return {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": False},
        }
    return {"type": "json_object"}


# How litellm reports a 200 whose body is no chat completion (an HTML page, an SSE stream): as
# an internal error with status 500, which is neither the server's status nor transient.
_NOT_A_COMPLETION = "Empty or invalid response from LLM endpoint"


def _chain(exc: BaseException) -> list[str]:
    """Class names along an exception's causes, to see through wrappers."""
    names, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names += [c.__name__ for c in type(current).__mro__]
        current = current.__cause__ or current.__context__
    return names


def _error_type(exc: Exception) -> str:
    lib = litellm()
    # litellm reports a refused connection, a read timeout or a missing key as a 500
    causes = _chain(exc)
    if (
        "AuthenticationError" in causes
        or "api_key" in str(exc).lower()
        or "api key" in str(exc).lower()
    ):
        return "auth"
    if any(
        n in causes for n in ("ConnectError", "ConnectionRefusedError", "APIConnectionError")
    ) or "Connection error" in str(exc):
        return "connection"
    if any(
        n in causes
        for n in ("ReadTimeout", "ConnectTimeout", "TimeoutException", "APITimeoutError")
    ):
        return "timeout"
    if (
        "JSONDecodeError" in causes
        or re.search(r"Expecting .*line \d+ column \d+", str(exc))
        or _NOT_A_COMPLETION in str(exc)
    ):
        return "bad_response"  # a 200 whose body is not a completion, reported as a 500
    checks = [
        ("RateLimitError", "rate_limit"),
        ("Timeout", "timeout"),
        ("APIConnectionError", "connection"),
        ("AuthenticationError", "auth"),
        ("InternalServerError", "server_error"),
        ("ServiceUnavailableError", "server_error"),
        ("BadGatewayError", "server_error"),
        ("ContextWindowExceededError", "bad_request"),
        ("BadRequestError", "bad_request"),
        ("NotFoundError", "bad_request"),
        ("APIResponseValidationError", "bad_response"),
    ]
    for name, kind in checks:
        cls = getattr(lib, name, None)
        if cls is not None and isinstance(exc, cls):
            return kind
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return "server_error"
    if isinstance(exc, ValueError | json.JSONDecodeError):
        return "bad_response"
    return "model_error"


def _reply_text(response: Any, model: str) -> str:
    """The text of a completion; a reply without any (a tool call, null content) is unusable.

    evolve offers the model no tools, so a tool call means the server or model misbehaved;
    writing "" for it would record a success that never happened.
    """
    choices = getattr(response, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    if message is None:
        raise ModelError(f"{model}: the reply has no message", "bad_response")
    calls = getattr(message, "tool_calls", None) or []
    if calls or getattr(message, "function_call", None):
        names = [getattr(getattr(c, "function", None), "name", "?") for c in calls]
        raise ModelError(
            f"{model}: the reply is a tool call ({', '.join(names) or 'function_call'}), not "
            "text; evolve offers no tools",
            "bad_response",
        )
    if message.content is None:
        raise ModelError(f"{model}: the reply has no content (null)", "bad_response")
    return message.content


def _retry_after_ms(exc: Exception) -> int | None:
    """The wait a 429/503 asked for in `Retry-After` (seconds or an HTTP date), if any."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0, round(seconds * 1000)) if seconds == seconds else None  # NaN: ignored


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class LiteLLMModel:
    """Real calls through litellm; records each call to `cassette` when one is given."""

    def __init__(self, api_base: str | None = None, cassette: Cassette | None = None):
        self.api_base = api_base
        self.cassette = cassette

    def prepare(self) -> None:
        """Import litellm now (about 1.8 s), before any attempt's deadline is running."""
        litellm()

    async def complete(self, request: ModelRequest) -> ModelReply:
        lib = litellm()
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "num_retries": 0,
            "max_retries": 0,
        }
        fmt = response_format(request.model, request.schema)
        if fmt:
            kwargs["response_format"] = fmt
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if self.api_base:
            kwargs["api_base"] = self.api_base
        began = time.monotonic()
        try:
            response = await lib.acompletion(**kwargs)
        except Exception as exc:
            raise ModelError(
                f"{request.model}: {_first_line(exc)}", _error_type(exc), _retry_after_ms(exc)
            ) from None
        text = _reply_text(response, request.model)
        usage = getattr(response, "usage", None)
        reply = ModelReply(
            text=text,
            model=request.model,
            tokens_in=getattr(usage, "prompt_tokens", None),
            tokens_out=getattr(usage, "completion_tokens", None),
            cost_usd=_cost(lib, response, request.model),
            latency_ms=round((time.monotonic() - began) * 1000),
            key=request_key(request),
        )
        if self.cassette is not None:
            self.cassette.record(request, reply)
        return reply


def _cost(lib: Any, response: Any, model: str) -> float | None:
    """litellm's price for the call when it knows the model; None (never a crash) otherwise."""
    try:
        cost = lib.completion_cost(completion_response=response, model=model)
    except Exception:
        return None
    return float(cost) if cost is not None else None
