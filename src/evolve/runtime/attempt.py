"""One try of one node (and item): what it is given, how it reports, and how it fails.

Node kinds (tools, agents, datasets, nested experiences) receive an `Attempt`; they never see
the scheduler. `emit` writes a log-only event tagged with the node, item and attempt number;
`call_model` asks the run's metered model; `activity` is what a Python tool gets as
`inputs["_activity"]` to say what it is doing (a `node.activity` event; safe from a worker
thread).

An attempt fails with one exception, `AttemptError`: its `error_type` names the failure
(tool_error, timeout, rate_limit, schema_invalid, ...) and `retryable` says whether another try
could help (a call missing from a cassette, a prompt that cannot be rendered, a runtime that is
not installed, a missing key or model: no). `RunFailed` is not an attempt's failure: it stops the
run (a failure under `fail_run`, or the budget reached).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from evolve.events import Event, NodeActivity
from evolve.llm.model import ModelReply, ModelRequest
from evolve.spec.model import Node

ACTIVITY_CHARS = 200


class AttemptError(Exception):
    """An attempt failed; whether the node's `on_error` policy tries again depends on
    `retryable`. Internal: the user reads it in the log, never as an exit message."""

    def __init__(
        self,
        message: str,
        error_type: str,
        *,
        retryable: bool = True,
        retry_after_ms: int | None = None,
    ):
        super().__init__(message)
        self.error_type = error_type
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms  # the wait a provider asked for, if any
        self.worker: str | None = None  # the Ray node the attempt ran on (the Ray executor)

    def on_worker(self, worker: str | None) -> AttemptError:
        self.worker = worker
        return self


class RunFailed(Exception):
    """A failure under `fail_run`, or a budget reached: the run stops."""

    def __init__(self, node_id: str, message: str, stopped: str | None = None):
        super().__init__(message)
        self.node_id = node_id
        self.stopped = stopped  # "max_cost" when the budget stopped the run


@dataclass
class Attempt:
    node: Node
    number: int
    inputs: dict[str, Any]
    item: int | None
    emitter: Callable[[Event], Any]
    call_model: Callable[[ModelRequest], Awaitable[ModelReply]]
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    worker: str | None = None  # the Ray node it ran on (the Ray executor), once known
    cpu_ms: int | None = None  # CPU time a Python tool's call used (None: not measured)
    announce: Callable[[], Any] | None = None  # writes its `node.started` line (see `begin`)

    def begin(self) -> None:
        """Write the attempt's `node.started` line, once. A Python tool's call writes it right
        after handing the call to a worker thread, so the write overlaps the worker's wake-up
        (the line keeps the time taken before); every other kind, before it starts."""
        if self.announce is not None:
            announce, self.announce = self.announce, None
            announce()

    def set_cpu(self, ms: int) -> None:
        self.cpu_ms = ms

    def emit(self, kind: type[Event], **fields: Any) -> None:
        """A log-only event about this attempt: `emit(SchemaInvalid, errors=[...], final=True)`."""
        self.emitter(kind(node_id=self.node.id, item=self.item, attempt=self.number, **fields))

    def activity(self, text: object) -> None:
        """Report what the attempt is doing now (shown by live progress, kept in the log)."""
        event = NodeActivity(
            node_id=self.node.id,
            item=self.item,
            attempt=self.number,
            activity=str(text)[:ACTIVITY_CHARS],
        )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.emitter(event)
            return
        try:  # a sync tool runs in a worker thread: the log is written on the run's loop
            self.loop.call_soon_threadsafe(self.emitter, event)
        except RuntimeError:
            pass  # the run is over while the tool still runs past its deadline
