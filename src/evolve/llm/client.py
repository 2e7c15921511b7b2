"""The one place that imports litellm (lazily, on the first real call): model calls, structured
output, context windows, tokens and cost.

Structured output (`evolve.llm.formats`): a call with a schema asks in the first mode that the
run has not seen refused for its model and API base; a refusal naming the response format moves
to the next mode within the same call, and the reply says which mode answered. Context windows
(`evolve.llm.context`): a request whose counted prompt cannot fit beside its reply fails with
`context_overflow` before anything is sent.

Provider failures become `ModelError`s with an `error_type` (context_overflow, rate_limit,
server_error, timeout, connection, bad_response, auth, bad_request), decided by litellm's
exception class first and by the message only for litellm's catch-all internal errors. They are
never retried here: the node's `on_error` policy is the only retry layer. litellm is imported
offline and quiet (no network price fetch, no .env reading) the first time a real call is made,
never at import of this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from evolve.llm import inflight
from evolve.llm.cassettes import request_key
from evolve.llm.context import Window, Windows, count_tokens, prompt_budget, reply_reserve
from evolve.llm.formats import FormatMemory, compatible_endpoint, names_format, response_format
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
            module.drop_params = False  # set per call instead: see LiteLLMModel._send
            module.telemetry = False
            _litellm = module
    return _litellm


def native_schema(model: str) -> bool:
    """Whether litellm says `model` supports json_schema response formats."""
    try:
        return bool(litellm().supports_response_schema(model=model))
    except Exception:  # an unknown model is not an error here, just unknown
        return False


def _chain(exc: BaseException) -> list[str]:
    """Class names along an exception's causes, to see through wrappers."""
    names, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names += [c.__name__ for c in type(current).__mro__]
        current = current.__cause__ or current.__context__
    return names


# litellm's exception classes, most specific first (Timeout is an APIConnectionError, and
# ContextWindowExceededError a BadRequestError). None: litellm's catch-all, looked at closer.
_BY_TYPE = [
    ("ContextWindowExceededError", "context_overflow"),
    ("AuthenticationError", "auth"),
    ("PermissionDeniedError", "auth"),
    ("RateLimitError", "rate_limit"),
    ("Timeout", "timeout"),
    ("APIConnectionError", "connection"),
    ("UnsupportedParamsError", "bad_request"),
    ("NotFoundError", "bad_request"),
    ("UnprocessableEntityError", "bad_request"),
    ("BadRequestError", "bad_request"),
    ("APIResponseValidationError", "bad_response"),
    ("ServiceUnavailableError", "server_error"),
    ("BadGatewayError", "server_error"),
    ("InternalServerError", None),
    ("APIError", None),
]
# How litellm reports a 200 whose body is no chat completion (an HTML page, an SSE stream): as
# an internal error with status 500, which is neither the server's status nor transient.
_NOT_A_COMPLETION = "Empty or invalid response from LLM endpoint"

# how servers that litellm does not map word an over-long prompt (llama.cpp, vLLM, Ollama, ...)
_OVERFLOW = re.compile(
    r"context window|context length|context size|maximum context|exceeds? the (?:model|context)|"
    r"too many tokens|prompt is too long|n_ctx",
    re.IGNORECASE,
)


def _error_type(exc: Exception) -> str:
    lib = litellm()
    text = f"{exc} {getattr(exc, 'body', None) or ''}"
    for name, kind in _BY_TYPE:
        cls = getattr(lib, name, None)
        if cls is None or not isinstance(exc, cls):
            continue
        if kind == "bad_request" and _OVERFLOW.search(text):
            return "context_overflow"
        if kind is not None:
            return kind
        break
    return _closer_look(exc, text)


def _closer_look(exc: Exception, text: str) -> str:
    """litellm reports a refused connection, a read timeout, a body that is not JSON and a
    missing key alike, as an internal error: tell them apart by cause, then by message."""
    causes = _chain(exc)
    if any(n in causes for n in ("ConnectError", "ConnectionRefusedError")) or (
        "Connection error" in text
    ):
        return "connection"
    if any(n in causes for n in ("ReadTimeout", "ConnectTimeout", "TimeoutException")):
        return "timeout"
    if (
        "JSONDecodeError" in causes
        or re.search(r"Expecting .*line \d+ column \d+", text)
        or _NOT_A_COMPLETION in text
    ):
        return "bad_response"  # a 200 whose body is not a completion, reported as a 500
    if "Missing credentials" in text or re.search(r"\bapi[_ ]key\b", text, re.IGNORECASE):
        return "auth"
    if _OVERFLOW.search(text):
        return "context_overflow"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return "server_error"
    if isinstance(status, int) and 400 <= status < 500:
        return "bad_request"
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


def _describe(exc: Exception) -> str:
    """The exception's first line, and the server's error body when the line does not say it
    (litellm words a 422 as "Error code: 422" and keeps the server's reason in `body`)."""
    lines = str(exc).strip().splitlines()
    first = (lines[0] if lines else type(exc).__name__)[:300]
    body = getattr(exc, "body", None)
    if body:
        detail = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        if detail[:40] not in first:
            first += f" ({detail[:300]})"
    return first


class LiteLLMModel:
    """Real calls through litellm; records each call to `cassette` when one is given.

    `context_window` (from `--context-window` or `runtime.context_window`) overrides what the
    server or litellm say; `window_source` names where it came from, for messages.
    """

    def __init__(
        self,
        api_base: str | None = None,
        cassette: Cassette | None = None,
        *,
        context_window: int | None = None,
        window_source: str = "--context-window",
    ):
        self.api_base = api_base
        self.cassette = cassette
        self.windows = Windows(context_window, window_source)
        self.formats = FormatMemory()

    def prepare(self) -> None:
        """Import litellm now (about 1.8 s), before any attempt's deadline is running."""
        litellm()

    def window(self, model: str) -> Window | None:
        """The model's context window, when anything says it."""
        return self.windows.window(litellm(), model, self.api_base)

    def count(self, model: str, messages: list[dict[str, Any]]) -> int:
        return count_tokens(litellm(), model, messages)

    def check_fits(self, request: ModelRequest) -> None:
        """Raise `context_overflow` when the prompt cannot fit its model's window."""
        window = self.window(request.model)
        if window is None:
            return
        tokens = self.count(request.model, request.messages)
        budget = prompt_budget(window, request.max_tokens)
        if tokens <= budget:
            return
        where = f"node '{request.node_id}'" + (
            f" item {request.item}" if request.item is not None else ""
        )
        reserve = reply_reserve(window.tokens, request.max_tokens)
        raise ModelError(
            f"{where}: the prompt is about {tokens:,} tokens, and {request.model}'s context "
            f"window is {window.tokens:,} (from {window.source}) with {reserve:,} kept for the "
            "reply; nothing was sent. Shorten what the prompt renders, lower max_tokens, or "
            "give the model a larger window (the server's context size, then "
            "runtime.context_window or --context-window)",
            "context_overflow",
        )

    async def complete(self, request: ModelRequest) -> ModelReply:
        lib = await _imported()
        await asyncio.to_thread(self.check_fits, request)  # a server probe may take a moment
        if request.schema is None:
            return await self._send(lib, request, None)
        modes = self.formats.modes(
            request.model, self.api_base, request.structured_output, native_schema(request.model)
        )
        refused: list[str] = []
        for i, mode in enumerate(modes):
            try:
                reply = await self._send(lib, request, mode)
            except ModelError as exc:
                last = i == len(modes) - 1
                if last or exc.error_type not in _REFUSALS or not names_format(str(exc)):
                    raise
                self.formats.refused(request.model, self.api_base, mode)
                refused.append(f"{mode}: {exc}")
                continue
            return dataclasses.replace(reply, refused_modes=tuple(refused))
        raise AssertionError("unreachable: the last mode raises or returns")

    async def _send(self, lib: Any, request: ModelRequest, mode: str | None) -> ModelReply:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "num_retries": 0,
            "max_retries": 0,
        }
        fmt = response_format(mode, request.schema) if mode and request.schema else None
        # a provider without an option ignores it rather than failing; but litellm also drops
        # whatever a server's 422 names and sends again unseen, which would hide a refused
        # response format from the fallback (and from the call's event)
        kwargs["drop_params"] = not (fmt and compatible_endpoint(request.model, self.api_base))
        if fmt:
            kwargs["response_format"] = fmt
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if request.timeout_s:  # else litellm's own limit (600 s) would cut a longer wait
            kwargs["timeout"] = request.timeout_s
        began = time.monotonic()
        token = inflight.begin(request.node_id, request.item, request.model)
        try:
            response = await lib.acompletion(**kwargs)
        except Exception as exc:
            raise ModelError(
                f"{request.model}: {_describe(exc)}", _error_type(exc), _retry_after_ms(exc)
            ) from None
        finally:
            inflight.end(token)
        text = _reply_text(response, request.model)
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        reply = ModelReply(
            text=text,
            model=request.model,
            tokens_in=getattr(usage, "prompt_tokens", None),
            tokens_out=getattr(usage, "completion_tokens", None),
            cost_usd=_cost(lib, response, request.model),
            latency_ms=round((time.monotonic() - began) * 1000),
            key=request_key(request),
            mode=mode,
            finish_reason=getattr(choice, "finish_reason", None),
        )
        if self.cassette is not None:
            self.cassette.record(request, reply)
        return reply


# the error types under which a server refuses a response format (litellm files a 422 as a 400)
_REFUSALS = frozenset({"bad_request", "server_error", "model_error"})


async def _imported() -> Any:
    """litellm, imported off the event loop the first time."""
    if _litellm is not None:
        return _litellm
    return await asyncio.to_thread(litellm)


def _cost(lib: Any, response: Any, model: str) -> float | None:
    """litellm's price for the call when it knows the model; None (never a crash) otherwise."""
    try:
        cost = lib.completion_cost(completion_response=response, model=model)
    except Exception:
        return None
    return float(cost) if cost is not None else None
