"""The model protocol: the one small interface between its callers and whatever answers them.

An agent node (or the advisor) builds a `ModelRequest` and awaits `Model.complete`; a
`ModelReply` comes back with the text and what the call cost. The real implementations
(litellm, record/replay) live beside this module; tests use a scripted fake. A provider failure
is raised as `ModelError` with an `error_type` (rate_limit, server_error, timeout, connection,
bad_response, ...) so the node's `on_error` policy can decide what follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from evolve.errors import EvolveError

# Model failures that the same call would meet again: a wrong or missing key, a call that the
# cassette does not hold, a prompt longer than the model's context window.
PERMANENT = frozenset({"auth", "cassette_miss", "context_overflow"})


class ModelError(EvolveError):
    """A model call failed; `error_type` names how, `retryable` whether trying again may help.
    `retry_after_ms` is the wait the provider asked for (a 429 or 503 with `Retry-After`), which
    a retry honours."""

    def __init__(
        self,
        message: str,
        error_type: str = "model_error",
        retry_after_ms: int | None = None,
        *,
        retryable: bool | None = None,
    ):
        super().__init__(message)
        self.error_type = error_type
        self.retry_after_ms = retry_after_ms
        self.retryable = error_type not in PERMANENT if retryable is None else retryable


@dataclass(frozen=True)
class ModelRequest:
    node_id: str
    model: str
    messages: list[dict[str, str]]
    schema: dict[str, Any] | None = None  # ask for a JSON object meeting this schema
    temperature: float | None = None
    max_tokens: int | None = None
    item: int | None = None
    attempt: int = 1
    turn: int = 1  # 2 for the repair turn after a schema failure
    structured_output: str = "auto"  # auto, json_schema, json_object, prompt: llm/formats.py
    timeout_s: float | None = None  # how long the client waits for the reply (None: litellm's)


@dataclass(frozen=True)
class ModelReply:
    text: str
    model: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    latency_ms: int = 0
    replayed: bool = False
    key: str | None = None
    mode: str | None = None  # the structured output mode that answered (None: no schema)
    refused_modes: tuple[str, ...] = ()  # "mode: reason" for each mode the server refused first
    finish_reason: str | None = None  # "length" when the reply was cut at max_tokens


class Model(Protocol):
    """Answers agent nodes. A model may also have `prepare()`, which a run calls (in a thread)
    before its first attempt starts, so slow imports are not charged to any node's timeout."""

    async def complete(self, request: ModelRequest) -> ModelReply: ...
