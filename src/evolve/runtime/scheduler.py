"""The scheduler: runs an experience's graph on asyncio and records every step.

Each step (a top-level node, a pipeline or a loop) starts the moment all its predecessors have
finished, with no waves. A step runs when every predecessor succeeded and every incoming `when`
holds; otherwise it is skipped with a reason, and its dependents after it. `runtime.concurrency`
caps the attempts in flight across the run (a waiting retry or a fan-out parent holds no slot);
`for_each.concurrency` caps one node's items. Every attempt is bounded by its `timeout_ms`.
`for_each` and pipeline outputs merge into state in item order, whatever order items finish in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from evolve import jsonvalue
from evolve.errors import EvolveError
from evolve.llm.model import Model, ModelReply, ModelRequest
from evolve.runtime import policies
from evolve.runtime.attempt import Attempt
from evolve.runtime.recording import CallRecorder
from evolve.runtime.state import RunState, StateWriteError
from evolve.spec.expressions import MISSING, resolve_path
from evolve.spec.model import MODEL_KINDS, Experience, Node
from evolve.store.log import EventLog, utc_now
from evolve.store.writer import StateStore

# a fan-out keeps this many items started per run slot (so that items waiting to retry, which
# hold no slot, do not keep the others from starting), and at least MIN_LIVE_ITEMS
LIVE_ITEMS_PER_SLOT = 4
MIN_LIVE_ITEMS = 64

ChildRunner = Callable[[Node, dict[str, Any]], Awaitable[dict[str, Any]]]


class RunFailed(Exception):
    """A failure under `fail_run`, or a budget reached: the run stops."""

    def __init__(self, node_id: str, message: str, stopped: str | None = None):
        super().__init__(message)
        self.node_id = node_id
        self.stopped = stopped  # "max_cost" when the budget stopped the run


class NodeError(EvolveError):
    def __init__(self, message: str, error_type: str):
        super().__init__(message)
        self.error_type = error_type


@dataclass
class Outcome:
    """How a node (or one of its items) ended."""

    status: str  # succeeded | failed (failed under `skip`; a fail_run raises RunFailed)
    delta: dict[str, Any] = field(default_factory=dict)
    edge_output: Any = None
    error: str | None = None
    items_failed: int = 0


class Scheduler:
    def __init__(
        self,
        experience: Experience,
        run_id: str,
        state: RunState,
        store: StateStore,
        events: EventLog,
        *,
        concurrency: int,
        model: Model | None,
        model_for: Callable[[Node], str | None],
        child_runner: ChildRunner | None,
        max_cost: float | None = None,
        recorder: CallRecorder | None = None,
        model_ready: asyncio.Future[Any] | None = None,
    ):
        self.experience = experience
        self.run_id = run_id
        self.state = state
        self.store = store
        self.events = events
        self.concurrency = concurrency
        self.slots = asyncio.Semaphore(concurrency)
        self.model = model
        self.model_for = model_for
        self.child_runner = child_runner
        self.max_cost = max_cost
        self.recorder = recorder or CallRecorder(None, replaying=False)
        self.model_ready = model_ready  # the model layer's import, begun as the run started
        self.status: dict[str, str] = {}
        self.outputs: dict[str, Any] = {}
        self.partial = False  # some node or item failed under `skip`
        self.halted: RunFailed | None = None  # once set, no new attempt starts
        self.loaded: dict[Any, Any] = {}  # Python tool functions, loaded once per run
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost_usd: float | None = None

    def halt(self, failure: RunFailed) -> RunFailed:
        """Stop the run: the first failure wins, and no attempt starts after it."""
        if self.halted is None:
            self.halted = failure
        return self.halted

    # -- the graph -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every step; a fail_run failure cancels the other steps and raises RunFailed."""
        steps = self.experience.steps
        waiting = {s: len(self.experience.predecessors(s)) for s in steps}
        failure: list[BaseException] = []
        done = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        finished = 0

        def launch(step: str) -> None:
            task = asyncio.create_task(self._step(step), name=step)
            tasks.add(task)
            task.add_done_callback(lambda t, s=step: settle(t, s))

        def settle(task: asyncio.Task[None], step: str) -> None:
            nonlocal finished
            tasks.discard(task)
            finished += 1
            if task.cancelled():
                return
            if task.exception() is not None:
                failure.append(task.exception())
                done.set()
                return
            for edge in self.experience.successors(step):
                waiting[edge.target] -= 1
                if waiting[edge.target] == 0 and not failure:
                    launch(edge.target)
            if finished == len(steps):
                done.set()

        for step in steps:
            if waiting[step] == 0:
                launch(step)
        if steps:
            try:
                await done.wait()
            finally:
                for task in list(tasks):
                    task.cancel()
                if tasks:
                    await asyncio.gather(*tasks, return_exceptions=True)
        if failure:
            raise failure[0]

    async def _step(self, step: str) -> None:
        reason = self._blocked(step)
        if reason:
            self.status[step] = "skipped"
            self.events.emit("node.skipped", node_id=step, reason=reason)
            self.store.record_attempt(
                {
                    "run_id": self.run_id,
                    "node_id": step,
                    "attempt": 0,
                    "status": "skipped",
                    "error": reason,
                }
            )
            return
        self.events.emit("node.ready", node_id=step)
        if step in self.experience.pipelines or step in self.experience.loops:
            started = time.monotonic()
            group = self._pipeline if step in self.experience.pipelines else self._loop
            outcome = await group(step)
            self.store.record_attempt(
                {
                    "run_id": self.run_id,
                    "node_id": step,
                    "attempt": 0,
                    "status": outcome.status,
                    "duration_ms": _ms_since(started),
                }
            )
            self.events.emit(
                "node.finished", node_id=step, status=outcome.status, duration_ms=_ms_since(started)
            )
        else:
            outcome = await self._node(self.experience.nodes[step], self._edge_inputs(step))
        self.status[step] = outcome.status
        self.outputs[step] = outcome.edge_output

    def _blocked(self, step: str) -> str | None:
        for edge in self.experience.predecessors(step):
            status = self.status.get(edge.source)
            if status == "skipped":
                return f"predecessor '{edge.source}' was skipped"
            if status == "failed":
                return f"predecessor '{edge.source}' failed"
        for edge in self.experience.predecessors(step):
            if edge.when is not None and not edge.when.holds(self.state.values):
                return f"when '{edge.when.source}' on the edge from '{edge.source}' is false"
        return None

    def _edge_inputs(self, step: str) -> dict[str, Any]:
        return {e.source: self.outputs.get(e.source) for e in self.experience.predecessors(step)}

    # -- nodes -----------------------------------------------------------------------------------

    async def _node(self, node: Node, edge_inputs: dict[str, Any]) -> Outcome:
        """Run a node (every item of it, under for_each) and merge its output into state."""
        started = time.monotonic()
        if node.for_each is None:
            outcome = await self._attempts(node, edge_inputs, None, None, apply=True)
        else:
            outcome = await self._fan_out(node, edge_inputs)
        if node.for_each is not None:
            # The node as a whole (item rows carry their own attempts): attempt 0, no item.
            items = outcome.edge_output if isinstance(outcome.edge_output, list) else []
            self.events.emit(
                "node.finished",
                node_id=node.id,
                status=outcome.status,
                duration_ms=_ms_since(started),
                items=len(items),
                items_failed=outcome.items_failed,
            )
            self.store.record_attempt(
                {
                    "run_id": self.run_id,
                    "node_id": node.id,
                    "attempt": 0,
                    "status": outcome.status,
                    "duration_ms": _ms_since(started),
                    "error": outcome.error,
                }
            )
        return outcome

    async def _fan_out(self, node: Node, edge_inputs: dict[str, Any]) -> Outcome:
        items = node.for_each.source.evaluate(self.state.values)
        if not isinstance(items, list):
            found = "nothing" if items is MISSING else type(items).__name__
            return self._give_up(
                node,
                None,
                f"for_each source {node.for_each.source.source} is not a list (found {found})",
                "bad_source",
            )
        limit = asyncio.Semaphore(node.for_each.concurrency or len(items) or 1)

        async def one(index: int) -> Outcome:
            item = items[index]
            return await self._attempts(node, edge_inputs, index, item, apply=False, limit=limit)

        # items start in order, a bounded number at a time: a 50,000-item fan-out holds a task
        # for the items under way (or waiting to retry), not for every item
        live = max(LIVE_ITEMS_PER_SLOT * self.concurrency, MIN_LIVE_ITEMS)
        outcomes = await _bounded_in_order(one, len(items), live)
        return self._merge(node, outcomes)

    def _merge(self, node: Node, outcomes: list[Outcome]) -> Outcome:
        """Apply the item deltas in item order; the node fails only if every item failed."""
        good = [(i, o) for i, o in enumerate(outcomes) if o.status == "succeeded"]
        if outcomes and not good:
            return self._give_up(
                node, None, f"all {len(outcomes)} items failed", "all_failed", emit=False
            )
        try:
            self.state.apply([(o.delta, i) for i, o in good], node.id)
        except StateWriteError as exc:
            return self._give_up(node, None, str(exc), exc.error_type)
        if len(good) < len(outcomes):
            self.partial = True
        return Outcome(
            "succeeded",
            edge_output=[o.edge_output for o in outcomes],
            items_failed=len(outcomes) - len(good),
        )

    def _give_up(
        self, node: Node, item: int | None, error: str, error_type: str, *, emit: bool = True
    ) -> Outcome:
        """A node-level failure that no retry can help: its final policy decides."""
        if emit:
            self.events.emit(
                "node.failed", node_id=node.id, item=item, error_type=error_type, error=error
            )
            if node.for_each is None:  # a fan-out records its node row itself, once
                self.store.record_attempt(
                    {
                        "run_id": self.run_id,
                        "node_id": node.id,
                        "attempt": 0,
                        "status": "failed",
                        "error_type": error_type,
                        "error": error,
                    }
                )
        if policies.final_policy(node.on_error) == "fail_run":
            raise self.halt(RunFailed(node.id, f"node '{node.id}' failed: {error}"))
        self.partial = True
        self.events.emit(
            "node.skipped", node_id=node.id, item=item, reason=f"failed (on_error skip): {error}"
        )
        return Outcome("failed", error=error)

    async def _attempts(
        self,
        node: Node,
        edge_inputs: dict[str, Any],
        index: int | None,
        item: Any,
        *,
        apply: bool,
        limit: asyncio.Semaphore | None = None,
    ) -> Outcome:
        """Try a node (or one item) as its on_error policy allows."""
        allowed = policies.attempts_allowed(node.on_error)
        error = ""
        if node.kind in MODEL_KINDS and self.model_ready is not None:
            with contextlib.suppress(Exception):  # a failed import fails the call itself
                await asyncio.shield(self.model_ready)  # before any slot or clock is taken
        for number in range(1, allowed + 1):
            if self.halted is not None:  # the run is stopping: start nothing new
                raise self.halted
            # inputs are built once the attempt holds its slot: a fan-out's waiting items
            # hold nothing yet, so memory follows the attempts in flight, not the items
            if limit is not None:
                async with limit, self.slots:
                    attempt = self._attempt_for(node, number, edge_inputs, index, item)
                    outcome, error, error_type, asked = await self._attempt(attempt, apply)
            else:
                async with self.slots:
                    attempt = self._attempt_for(node, number, edge_inputs, index, item)
                    outcome, error, error_type, asked = await self._attempt(attempt, apply)
            if outcome is not None:
                return outcome
            if error_type in policies.NEVER_RETRIED:
                break  # the same inputs would fail the same way: do not wait to see it again
            if number < allowed:
                delay = policies.retry_delay_ms(node.on_error, number)
                if asked is not None:  # the provider's Retry-After, up to one timeout's length
                    longest = policies.timeout_ms(self.experience, node)
                    delay = max(delay, min(asked, longest))
                attempt.emit("node.retry", delay_ms=delay, error=error)
                await asyncio.sleep(delay / 1000)
        if policies.final_policy(node.on_error) == "fail_run":
            raise self.halt(
                RunFailed(
                    node.id,
                    f"node '{node.id}'"
                    + (f" item {index}" if index is not None else "")
                    + f" failed after {number} attempt{'s' * (number > 1)}: {error}",
                )
            )
        self.partial = True
        self.events.emit(
            "node.skipped", node_id=node.id, item=index, reason=f"failed (on_error skip): {error}"
        )
        return Outcome("failed", error=error)

    async def _attempt(
        self, attempt: Attempt, apply: bool
    ) -> tuple[Outcome | None, str, str | None, int | None]:
        """One attempt: (outcome, "", None, None) on success, (None, error, error_type,
        retry_after_ms) on failure; retry_after_ms is the wait a provider asked for, if any."""
        if self.halted is not None:  # it stopped while this attempt waited for a slot
            raise self.halted
        node = attempt.node
        limit_ms = policies.timeout_ms(self.experience, node)
        started_at, started = utc_now(), time.monotonic()
        attempt.emit("node.started")
        row = {
            "run_id": self.run_id,
            "node_id": node.id,
            "item": attempt.item,
            "attempt": attempt.number,
            "started_at": started_at,
        }
        try:
            async with asyncio.timeout(limit_ms / 1000):
                result = await self._execute(attempt)
            outcome = self._outcome(node, result)
            if apply:
                self.state.apply([(outcome.delta, None)], node.id)
        except TimeoutError:
            error = f"timed out after {limit_ms} ms"
            attempt.emit("node.timeout", timeout_ms=limit_ms)
            attempt.emit("node.failed", error_type="timeout", error=error)
            self._record(row, started, "timeout", "timeout", error)
            return None, error, "timeout", None
        except EvolveError as exc:
            error_type = getattr(exc, "error_type", "error")
            attempt.emit("node.failed", error_type=error_type, error=str(exc))
            self._record(row, started, "failed", error_type, str(exc))
            return None, str(exc), error_type, getattr(exc, "retry_after_ms", None)
        metrics = result.get("metrics") if isinstance(result, dict) else None
        metrics = metrics if isinstance(metrics, dict) else None
        duration = _ms_since(started)
        attempt.emit("node.finished", duration_ms=duration, metrics=metrics or {})
        self._record(row, started, "succeeded", None, None, metrics)
        return outcome, "", None, None

    def _record(
        self,
        row: dict[str, Any],
        started: float,
        status: str,
        error_type: str | None,
        error: str | None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.store.record_attempt(
            {
                **row,
                "status": status,
                "finished_at": utc_now(),
                "duration_ms": _ms_since(started),
                "error_type": error_type,
                "error": error,
                "metrics": metrics,
            }
        )

    def _outcome(self, node: Node, result: Any) -> Outcome:
        if result is None:
            result = {}
        not_json = jsonvalue.problem(result, "output")
        if not_json:  # it could be neither logged nor stored: this attempt failed, not the run
            raise NodeError(
                f"node '{node.id}' returned a value that is not JSON: {not_json}", "bad_output"
            )
        if not isinstance(result, dict):
            raise NodeError(
                f"node '{node.id}' returned {type(result).__name__}; expected an "
                "object with state_delta, edge_output, metrics",
                "bad_output",
            )
        unknown = set(result) - {"state_delta", "edge_output", "metrics"}
        if unknown:
            raise NodeError(
                f"node '{node.id}' returned unknown keys {sorted(unknown)}; expected "
                "state_delta, edge_output, metrics",
                "bad_output",
            )
        delta = result.get("state_delta") or {}
        self.state.check_delta(node.writes, delta, f"node '{node.id}'")
        edge_output = result.get("edge_output", delta)
        return Outcome("succeeded", delta=delta, edge_output=edge_output)

    def _attempt_for(
        self, node: Node, number: int, edge_inputs: dict[str, Any], index: int | None, item: Any
    ) -> Attempt:
        inputs = self._inputs(node, edge_inputs, index, item)
        return Attempt(node, number, inputs, index, self.events.emit, self.call_model)

    def _inputs(
        self, node: Node, edge_inputs: dict[str, Any], index: int | None, item: Any
    ) -> dict[str, Any]:
        inputs = {key: self._arg(value) for key, value in node.args.items()}
        inputs["_state"] = self.state.read(node.reads)
        inputs["_edge_inputs"] = edge_inputs
        if index is not None:
            inputs["$item"] = item
            inputs["$index"] = index
        return inputs

    def _arg(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("$."):
            found = resolve_path(self.state.values, value[2:].split("."))
            return None if found is MISSING else found
        return value

    async def _execute(self, attempt: Attempt) -> Any:
        from evolve.runtime import tools

        node = attempt.node
        if node.kind == "tool":
            if node.impl.suffix == ".py":
                return await tools.call_python(
                    node.impl, node.function or "run", attempt.inputs, self.loaded
                )
            return await tools.call_process(node.impl, attempt.inputs)
        if node.kind in ("agent", "skill"):
            from evolve.runtime.agent import run_agent

            return await run_agent(
                node, attempt, self.model_for(node) or "", self.experience.runtime.structured_output
            )
        if node.kind == "cli-agent":
            from evolve.runtime.cli_agent import run_cli_agent

            return await run_cli_agent(node, attempt, self.recorder, self.state.values)
        if node.kind == "dataset":
            from evolve.runtime.datasets import fetch_rows

            timeout_ms = policies.timeout_ms(self.experience, node)
            rows = await fetch_rows(node, attempt, self.recorder, timeout_ms)
            return {
                "state_delta": {node.writes[0]: rows},
                "edge_output": rows,
                "metrics": {"rows": len(rows)},
            }
        if self.child_runner is None:
            raise NodeError("nested experiences are not available here", "unsupported")
        final_state = await self.child_runner(
            node, {k: v for k, v in attempt.inputs.items() if not k.startswith(("_", "$"))}
        )
        delta = {k: v for k, v in final_state.items() if k in node.writes}
        return {"state_delta": delta, "edge_output": final_state}

    async def call_model(self, request: ModelRequest, attempt: Attempt) -> ModelReply:
        if self.model is None:
            raise NodeError("no model client is configured", "no_model")
        reply = await self.model.complete(request)
        self.tokens_in += reply.tokens_in or 0
        self.tokens_out += reply.tokens_out or 0
        if reply.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + reply.cost_usd
        attempt.emit(
            "llm.call",
            model=reply.model,
            tokens_in=reply.tokens_in,
            tokens_out=reply.tokens_out,
            cost_usd=reply.cost_usd,
            duration_ms=reply.latency_ms,
            replayed=reply.replayed,
            key=reply.key,
            **({"mode": reply.mode} if reply.mode else {}),
            **({"refused_modes": list(reply.refused_modes)} if reply.refused_modes else {}),
        )
        self.store.record_llm_call(
            {
                "run_id": self.run_id,
                "node_id": attempt.node.id,
                "item": attempt.item,
                "attempt": attempt.number,
                "model": reply.model,
                "key": reply.key,
                "request": {
                    "messages": request.messages,
                    "schema": request.schema,
                    "turn": request.turn,
                    "mode": reply.mode,
                },
                "response": {"text": reply.text},
                "tokens_in": reply.tokens_in,
                "tokens_out": reply.tokens_out,
                "cost_usd": reply.cost_usd,
                "latency_ms": reply.latency_ms,
                "replayed": int(reply.replayed),
            }
        )
        if self.max_cost is not None and (self.cost_usd or 0.0) >= self.max_cost:
            raise self.halt(
                RunFailed(
                    attempt.node.id,
                    f"budget reached: spent ${self.cost_usd:.4f} of --max-cost "
                    f"${self.max_cost:.4f}",
                    stopped="max_cost",
                )
            )
        return reply

    # -- pipelines and loops ---------------------------------------------------------------------

    async def _pipeline(self, step: str) -> Outcome:
        pipe = self.experience.pipelines[step]
        items = pipe.items.evaluate(self.state.values)
        if not isinstance(items, list):
            raise RunFailed(step, f"pipeline '{step}': {pipe.items.source} is not a list")
        limit = asyncio.Semaphore(pipe.concurrency or len(items) or 1)
        edge_inputs = self._edge_inputs(step)

        async def one(index: int, item: Any) -> list[tuple[Node, Outcome]]:
            done: list[tuple[Node, Outcome]] = []
            inputs = edge_inputs
            async with limit:
                for stage in pipe.stages:
                    node = self.experience.nodes[stage]
                    outcome = await self._attempts(node, inputs, index, item, apply=False)
                    done.append((node, outcome))
                    if outcome.status != "succeeded":
                        break
                    inputs = {stage: outcome.edge_output}
            return done

        per_item = await _gather_all(one(i, x) for i, x in enumerate(items))
        try:
            for index, stages in enumerate(per_item):
                for node, outcome in stages:
                    if outcome.status == "succeeded":
                        self.state.apply([(outcome.delta, index)], node.id)
                    else:
                        self.partial = True
        except StateWriteError as exc:
            raise RunFailed(step, f"pipeline '{step}': {exc}") from exc
        return Outcome(
            "succeeded", edge_output=[s[-1][1].edge_output if s else None for s in per_item]
        )

    async def _loop(self, step: str) -> Outcome:
        loop = self.experience.loops[step]
        body = self.experience.nodes[loop.body]
        edge_inputs = self._edge_inputs(step)
        outcome = Outcome("succeeded")
        for iteration in range(1, loop.max_iters + 1):
            outcome = await self._node(body, edge_inputs)
            met = outcome.status == "succeeded" and loop.until.holds(self.state.values)
            self.events.emit(
                "loop.iteration", node_id=step, iteration=iteration, until_met=met, body=body.id
            )
            if outcome.status != "succeeded" or met:
                break
            edge_inputs = {body.id: outcome.edge_output}
        return outcome


async def _bounded_in_order(
    run_one: Callable[[int], Awaitable[Any]], count: int, bound: int
) -> list[Any]:
    """`run_one(i)` for i in 0..count-1, started in order with at most `bound` unfinished at
    once; the results in order. A failure cancels the rest and is raised (the first one)."""
    results: list[Any] = [None] * count
    room = asyncio.Semaphore(bound)

    async def one(index: int) -> None:
        try:
            results[index] = await run_one(index)
        finally:
            room.release()

    try:
        async with asyncio.TaskGroup() as group:
            for index in range(count):
                await room.acquire()
                group.create_task(one(index))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return results


async def _gather_all(coroutines: Any) -> list[Any]:
    """Like gather, but a failure cancels the siblings instead of leaving them running."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
