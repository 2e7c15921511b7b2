"""The one place that imports litellm (lazily, on the first real call): model calls, structured
output, tokens and cost, and offline record/replay with cassettes.

`build_model` picks the client for a run: `LiteLLMModel` for real calls (optionally recording
every call to a cassette), or `ReplayModel`, which serves every call from a cassette and never
touches litellm or the network. Provider failures become `ModelError`s with an `error_type`
(rate_limit, server_error, timeout, connection, bad_response, auth, bad_request) and are never
retried here: the node's `on_error` policy is the only retry layer.

Cassettes are JSONL, one call per line::

    {"key": "3f2a...", "node": "review", "item": 0, "turn": 1, "model": "openai/gpt-4o-mini",
     "request": {...}, "response": {"text": "...", "tokens_in": 812, "tokens_out": 95,
     "cost_usd": 0.00018}}

A recorded line carries `key` (a hash of model, messages and response format) and is served only
to the very same request. A hand-written line leaves `key` out: it is served to the next call of
its `node` (and `item` and `turn`, where given), in file order, so a prompt edit never forces
editing opaque hashes by hand. `response.json` may stand in for `response.text` (an object
written as JSON).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from evolve.errors import UsageError
from evolve.runtime.models import ModelError, ModelReply, ModelRequest
from evolve.secrets import Redactor

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


def request_key(request: ModelRequest) -> str:
    """The cassette key: a hash of what decides the answer (model, messages, response format)."""
    payload = {
        "model": request.model,
        "messages": request.messages,
        "schema": request.schema,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


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
    if "JSONDecodeError" in causes or re.search(r"Expecting .*line \d+ column \d+", str(exc)):
        return "bad_response"  # a body that is not JSON, which litellm reports as a 500
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


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class LiteLLMModel:
    """Real calls through litellm; records each call to `cassette` when one is given."""

    def __init__(self, api_base: str | None = None, cassette: Cassette | None = None):
        self.api_base = api_base
        self.cassette = cassette

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
            text = response.choices[0].message.content or ""
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{request.model}: {_first_line(exc)}", _error_type(exc)) from None
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


class Cassette:
    """A JSONL file of calls: appended to when recording, indexed when replaying."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.redactor = Redactor()
        self.by_key: dict[str, list[dict[str, Any]]] = {}
        self.by_node: list[dict[str, Any]] = []  # hand-written entries, in file order
        self._lock = threading.Lock()
        for path in paths:
            self._index(path)

    def _index(self, path: Path) -> None:
        if not path.exists():
            return
        for number, raw in enumerate(path.read_text("utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError as exc:
                raise UsageError(f"{path}:{number}: not a JSON line ({exc})") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("response"), dict):
                raise UsageError(f"{path}:{number}: a cassette line needs a 'response' object")
            if entry.get("key"):
                self.by_key.setdefault(entry["key"], []).append(entry)
            elif entry.get("node"):
                self.by_node.append(entry)
            else:
                raise UsageError(f"{path}:{number}: a cassette line needs a 'key' or a 'node'")

    def record(self, request: ModelRequest, reply: ModelReply) -> None:
        entry = {
            "key": reply.key,
            "node": request.node_id,
            "item": request.item,
            "turn": request.turn,
            "model": request.model,
            "request": {"messages": request.messages, "schema": request.schema},
            "response": {
                "text": reply.text,
                "tokens_in": reply.tokens_in,
                "tokens_out": reply.tokens_out,
                "cost_usd": reply.cost_usd,
            },
        }
        line = json.dumps(self.redactor.value(entry), ensure_ascii=False) + "\n"
        with self._lock:
            self.paths[0].parent.mkdir(parents=True, exist_ok=True)
            with self.paths[0].open("a", encoding="utf-8") as f:
                f.write(line)

    def knows(self, node_id: str) -> bool:
        """Whether any line answers calls of `node_id`."""
        return any(e.get("node") == node_id for e in self.by_node) or any(
            e.get("node") == node_id for entries in self.by_key.values() for e in entries
        )

    def take(self, request: ModelRequest, key: str) -> dict[str, Any] | None:
        with self._lock:
            recorded = self.by_key.get(key)
            if recorded:
                return recorded.pop(0) if len(recorded) > 1 else recorded[0]
            for i, entry in enumerate(self.by_node):
                if entry["node"] != request.node_id:
                    continue
                if "item" in entry and entry["item"] != request.item:
                    continue
                if "turn" in entry and entry["turn"] != request.turn:
                    continue
                return self.by_node.pop(i)
        return None


class ReplayModel:
    """Serves every call from a cassette; never imports litellm, never opens a socket."""

    def __init__(self, cassette: Cassette):
        self.cassette = cassette

    async def complete(self, request: ModelRequest) -> ModelReply:
        key = request_key(request)
        entry = self.cassette.take(request, key)
        if entry is None:
            where = f"node '{request.node_id}'" + (
                f" item {request.item}" if request.item is not None else ""
            )
            files = ", ".join(str(p) for p in self.cassette.paths) or "no cassette files"
            raise ModelError(
                f"no cassette entry for {where} (turn {request.turn}, key {key}) in {files}; "
                "re-record with --record FILE and a real model, or add a line "
                + json.dumps(
                    {
                        "node": request.node_id,
                        **({"item": request.item} if request.item is not None else {}),
                        "response": {"text": "..."},
                    }
                ),
                "cassette_miss",
            )
        response = entry["response"]
        text = response.get("text")
        if text is None and "json" in response:
            text = json.dumps(response["json"], ensure_ascii=False)
        return ModelReply(
            text=text or "",
            model=entry.get("model") or request.model,
            tokens_in=response.get("tokens_in"),
            tokens_out=response.get("tokens_out"),
            cost_usd=response.get("cost_usd"),
            latency_ms=0,
            replayed=True,
            key=key,
        )


def offline_cassettes(experience_dir: Path) -> list[Path]:
    """The cassettes `--offline` replays: every *.jsonl in the experience's cassettes/ folder."""
    return sorted((experience_dir / "cassettes").glob("*.jsonl"))


def build_model(
    experience_dir: Path,
    *,
    api_base: str | None = None,
    record: Path | None = None,
    replay: Path | None = None,
    offline: bool = False,
) -> LiteLLMModel | ReplayModel:
    if sum(bool(x) for x in (record, replay, offline)) > 1:
        raise UsageError("use only one of --record, --replay and --offline")
    if offline:
        return ReplayModel(Cassette(offline_cassettes(experience_dir)))
    if replay is not None:
        if not replay.is_file():
            raise UsageError(f"--replay: no such cassette {replay}")
        return ReplayModel(Cassette([replay]))
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("", encoding="utf-8")  # a recording starts a fresh cassette
    return LiteLLMModel(api_base, Cassette([record]) if record else None)
