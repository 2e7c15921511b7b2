"""The scheduler: walks an experience's graph on asyncio, and tries each node as its policy says.

Each step (a top-level node, a pipeline or a loop) starts the moment all its predecessors have
finished, with no waves (`graphlib` keeps the order, an `asyncio.TaskGroup` the running steps). A
step runs when every predecessor succeeded and every incoming `when` holds; otherwise it is
skipped with a reason, and its dependents after it. `runtime.concurrency` caps the attempts in
flight across the run (a waiting retry or a fan-out parent holds no slot); `for_each.concurrency`
caps one node's items. Every attempt is bounded by its `timeout_ms`. `for_each` and pipeline
outputs merge into state in item order, whatever order items finish in.

What happens is recorded through the run's `Recorder`; what the model costs is metered by the
model the scheduler is given (`runtime.metering`); what a node kind does is in its own module.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import TYPE_CHECKING, Any

from evolve import jsonvalue
from evolve.events import (
    LoopIteration,
    NodeFailed,
    NodeItems,
    NodeReady,
    NodeRetry,
    NodeSkipped,
    NodeStarted,
)
from evolve.llm.model import ModelReply, ModelRequest
from evolve.runtime import policies
from evolve.runtime.attempt import Attempt, AttemptError, RunFailed
from evolve.runtime.recording import CallRecorder
from evolve.runtime.reuse import Reuse
from evolve.runtime.state import RunState
from evolve.spec.expressions import MISSING, resolve_path
from evolve.spec.model import MODEL_KINDS, Experience, Node
from evolve.store.kept import KeptResult
from evolve.store.log import utc_now
from evolve.store.recorder import NodeRun, Recorder

if TYPE_CHECKING:
    from evolve.runtime.ray_executor import RayExecutor

# a fan-out keeps this many items started per run slot (so that items waiting to retry, which
# hold no slot, do not keep the others from starting), and at least MIN_LIVE_ITEMS
LIVE_ITEMS_PER_SLOT = 4
MIN_LIVE_ITEMS = 64

ChildRunner = Callable[[Node, dict[str, Any]], Awaitable[dict[str, Any]]]
AskModel = Callable[[ModelRequest], Awaitable[ModelReply]]

__all__ = ["AttemptError", "RunFailed", "Scheduler"]


@dataclass
class Outcome:
    """How a node (or one of its items) ended."""

    status: str  # succeeded | failed (failed under `skip`; a fail_run raises RunFailed)
    delta: dict[str, Any] = field(default_factory=dict)
    edge_output: Any = None
    error: str | None = None
    items_failed: int = 0
    origin: str | None = None  # a reused result: the run that executed it


class Scheduler:
    def __init__(
        self,
        experience: Experience,
        state: RunState,
        recorder: Recorder,
        *,
        concurrency: int,
        ask: AskModel,
        model_for: Callable[[Node], str | None],
        child_runner: ChildRunner | None,
        calls: CallRecorder | None = None,
        model_ready: asyncio.Future[Any] | None = None,
        reuse: Reuse | None = None,
        executor: RayExecutor | None = None,
        remote_every_tool: bool = False,
    ):
        self.experience = experience
        self.concurrency = concurrency
        self.state = state
        self.recorder = recorder
        self.slots = asyncio.Semaphore(concurrency)
        self.ask = ask
        self.model_for = model_for
        self.child_runner = child_runner
        self.calls = calls or CallRecorder(None, replaying=False)  # cli-agent and http calls
        self.model_ready = model_ready  # the model layer's import, begun as the run started
        self.status: dict[str, str] = {}
        self.outputs: dict[str, Any] = {}
        self.partial = False  # some node or item failed under `skip`
        self.halted: RunFailed | None = None  # once set, no new attempt starts
        self.loaded: dict[Any, Any] = {}  # Python tool functions, loaded once per run
        self.reuse = reuse or Reuse(experience.name, experience.directory, model_for)
        self.step_of = {n: n for n in experience.steps}
        for pipe in experience.pipelines.values():
            self.step_of.update((stage, pipe.id) for stage in pipe.stages)
        for loop in experience.loops.values():
            self.step_of[loop.body] = loop.id
        self.forced: set[str] = set()  # steps that may not reuse the source run's results
        self.executed: set[str] = set()  # steps that executed something in this run
        self.executor = executor  # Ray: where for_each items of Python tools run (else here)
        self.remote_every_tool = remote_every_tool  # a suite's case run: every Python tool attempt
        self.workers: set[str] = set()  # the Ray nodes this run's attempts ran on

    def halt(self, failure: RunFailed) -> RunFailed:
        """Stop the run: the first failure wins, and no attempt starts after it."""
        if self.halted is None:
            self.halted = failure
        return self.halted

    # -- the graph -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every step; a fail_run failure cancels the other steps and raises RunFailed."""
        graph = TopologicalSorter(
            {s: [e.source for e in self.experience.predecessors(s)] for s in self.experience.steps}
        )
        graph.prepare()

        def start_ready(group: asyncio.TaskGroup) -> None:
            for name in graph.get_ready():
                group.create_task(step(group, name), name=name)

        async def step(group: asyncio.TaskGroup, name: str) -> None:
            await self._step(name)
            graph.done(name)
            start_ready(group)  # what it unblocked starts now, from the step that finished

        async def walk(group: asyncio.TaskGroup) -> None:
            start_ready(group)  # the group waits for every step, those started later too

        await self._together(walk)

    async def _together(
        self, body: Callable[[asyncio.TaskGroup], Coroutine[Any, Any, Any]]
    ) -> None:
        """Run `body` with a task group; the first failure (the halting one) is raised as is."""
        try:
            async with asyncio.TaskGroup() as group:
                await body(group)
        except BaseExceptionGroup as failures:
            raise self._first(failures) from None

    def _first(self, failures: BaseExceptionGroup) -> BaseException:
        leaves: list[BaseException] = []

        def flatten(group: BaseExceptionGroup) -> None:
            for exc in group.exceptions:
                flatten(exc) if isinstance(exc, BaseExceptionGroup) else leaves.append(exc)

        flatten(failures)
        if self.halted is not None and self.halted in leaves:
            return self.halted
        return leaves[0]

    async def _all(self, coroutines: Iterable[Coroutine[Any, Any, Any]]) -> list[Any]:
        """Run coroutines together and return their results in order; a failure cancels the rest."""
        tasks: list[asyncio.Task[Any]] = []

        async def body(group: asyncio.TaskGroup) -> None:
            tasks.extend(group.create_task(c) for c in coroutines)

        await self._together(body)
        return [t.result() for t in tasks]

    async def _bounded_in_order(
        self, run_one: Callable[[int], Awaitable[Any]], count: int, bound: int
    ) -> list[Any]:
        """`run_one(i)` for i in 0..count-1, started in order with at most `bound` unfinished at
        once; the results in order. A failure cancels the rest and is raised."""
        results: list[Any] = [None] * count
        room = asyncio.Semaphore(bound)

        async def one(index: int) -> None:
            try:
                results[index] = await run_one(index)
            finally:
                room.release()

        async def body(group: asyncio.TaskGroup) -> None:
            for index in range(count):
                await room.acquire()
                group.create_task(one(index))

        await self._together(body)
        return results

    async def _step(self, step: str) -> None:
        reason = self._blocked(step)
        if reason:
            self.status[step] = "skipped"
            self.recorder.node_run(NodeRun(step, 0, "skipped", error=reason))
            return
        self.recorder.emit(NodeReady(node_id=step))
        if step in self.reuse.rerun or any(
            e.source in self.executed for e in self.experience.predecessors(step)
        ):
            self.forced.add(step)
        if step in self.experience.pipelines or step in self.experience.loops:
            outcome = await self._group(step)
        else:
            outcome = await self._node(self.experience.nodes[step], self._edge_inputs(step))
        self.status[step] = outcome.status
        self.outputs[step] = outcome.edge_output

    async def _group(self, step: str) -> Outcome:
        """A pipeline or a loop, recorded as one node run."""
        started = time.monotonic()
        inside = {step}
        if step in self.experience.pipelines:
            inside.update(self.experience.pipelines[step].stages)
        try:
            if step in self.experience.pipelines:
                outcome = await self._pipeline(step)
            else:
                outcome = await self._loop(step)
        except RunFailed as exc:
            if exc.node_id in inside:
                self.recorder.node_run(
                    NodeRun(step, 0, "failed", duration_ms=_ms_since(started), error=str(exc))
                )
            raise
        self.recorder.node_run(
            NodeRun(step, 0, outcome.status, duration_ms=_ms_since(started), error=outcome.error)
        )
        return outcome

    def _blocked(self, step: str) -> str | None:
        for edge in self.experience.predecessors(step):
            status = self.status.get(edge.source)
            if status == "skipped":
                return f"predecessor '{edge.source}' was skipped"
            if status == "failed":
                return f"predecessor '{edge.source}' failed"
        for edge in self.experience.predecessors(step):
            if edge.when is not None and not edge.when.holds(self.state.values):
                return (
                    f"when '{edge.when.source}' on the edge from '{edge.source}' is false"
                    + _saw(edge.when, self.state.values)
                )
        return None

    def _edge_inputs(self, step: str) -> dict[str, Any]:
        return {e.source: self.outputs.get(e.source) for e in self.experience.predecessors(step)}

    # -- nodes -----------------------------------------------------------------------------------

    async def _node(self, node: Node, edge_inputs: dict[str, Any]) -> Outcome:
        """Run a node (every item of it, under for_each) and merge its output into state."""
        if node.for_each is None:
            return await self._attempts(node, edge_inputs, None, None, apply=True)
        return await self._fan_out(node, edge_inputs)

    async def _fan_out(self, node: Node, edge_inputs: dict[str, Any]) -> Outcome:
        """A for_each node: its items, then the node as a whole (attempt 0, no item), which has
        failed if every item failed, if its source is not a list, or if an item failed under
        fail_run (the run stops, and this node is recorded as the one that failed)."""
        started = time.monotonic()
        items = node.for_each.source.evaluate(self.state.values)
        count = len(items) if isinstance(items, list) else 0
        try:
            if not isinstance(items, list):
                found = "nothing" if items is MISSING else type(items).__name__
                outcome = self._give_up(
                    node,
                    f"for_each source {node.for_each.source.source} is not a list (found {found})",
                    "bad_source",
                )
            else:
                self.recorder.emit(NodeItems(node_id=node.id, total=count))
                limit = asyncio.Semaphore(node.for_each.concurrency or count or 1)

                def one(index: int) -> Awaitable[Outcome]:
                    return self._attempts(
                        node, edge_inputs, index, items[index], apply=False, limit=limit
                    )

                # items start in order, a bounded number at a time: a 50,000-item fan-out holds
                # a task for the items under way (or waiting to retry), not for every item
                live = max(LIVE_ITEMS_PER_SLOT * self.concurrency, MIN_LIVE_ITEMS)
                outcomes = await self._bounded_in_order(one, count, live)
                outcome = self._merge(node, outcomes)
        except RunFailed as exc:
            if exc.node_id == node.id:
                self.recorder.node_run(
                    NodeRun(
                        node.id,
                        0,
                        "failed",
                        duration_ms=_ms_since(started),
                        error=str(exc),
                        items=count,
                    )
                )
            raise
        self.recorder.node_run(
            NodeRun(
                node.id,
                0,
                outcome.status,
                duration_ms=_ms_since(started),
                error=outcome.error,
                items=count,
                items_failed=outcome.items_failed,
            )
        )
        return outcome

    def _merge(self, node: Node, outcomes: list[Outcome]) -> Outcome:
        """Apply the item deltas in item order; the node fails only if every item failed."""
        good = [(i, o) for i, o in enumerate(outcomes) if o.status == "succeeded"]
        failed = len(outcomes) - len(good)
        origins = [o.origin for _, o in good]
        if outcomes and not good:
            outcome = self._give_up(
                node, f"all {len(outcomes)} items failed", "all_failed", emit=False
            )
            outcome.items_failed = failed
            return outcome
        try:
            self.state.apply([(o.delta, i) for i, o in good], node.id, origins)
        except AttemptError as exc:
            return self._give_up(node, str(exc), exc.error_type)
        if failed:
            self.partial = True
        return Outcome(
            "succeeded", edge_output=[o.edge_output for o in outcomes], items_failed=failed
        )

    def _give_up(self, node: Node, error: str, error_type: str, *, emit: bool = True) -> Outcome:
        """A node-level failure that no retry can help: its final policy decides."""
        if emit:
            self.recorder.emit(NodeFailed(node_id=node.id, error_type=error_type, error=error))
        if policies.final_policy(node.on_error) == "fail_run":
            raise self.halt(RunFailed(node.id, f"node '{node.id}' failed: {error}"))
        self.partial = True
        self.recorder.emit(NodeSkipped(node_id=node.id, reason=f"failed (on_error skip): {error}"))
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
        reused = self._reused(node, edge_inputs, index, item, apply=apply)
        if reused is not None:
            return reused
        allowed = policies.attempts_allowed(node.on_error)
        error = AttemptError("no attempt was made", "error")
        number = 0
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
                    outcome, error = await self._attempt(attempt, apply)
            else:
                async with self.slots:
                    attempt = self._attempt_for(node, number, edge_inputs, index, item)
                    outcome, error = await self._attempt(attempt, apply)
            if outcome is not None:
                return outcome
            if not error.retryable:
                break  # the same inputs would fail the same way: do not wait to see it again
            if number < allowed:
                delay = policies.retry_delay_ms(node.on_error, number)
                if error.retry_after_ms is not None:  # the provider's wait, up to one timeout
                    longest = policies.timeout_ms(self.experience, node)
                    delay = max(delay, min(error.retry_after_ms, longest))
                attempt.emit(NodeRetry, delay_ms=delay, error=str(error))
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
        self.recorder.emit(
            NodeSkipped(node_id=node.id, item=index, reason=f"failed (on_error skip): {error}")
        )
        return Outcome("failed", error=str(error))

    def _reused(
        self, node: Node, edge_inputs: dict[str, Any], index: int | None, item: Any, *, apply: bool
    ) -> Outcome | None:
        """A kept result applied instead of executing the node (or item), when one may be."""
        if self.halted is not None:
            raise self.halted
        if not self.reuse.may_reuse(node):  # a fresh run: nothing to look up
            self.executed.add(self.step_of[node.id])
            return None
        inputs = self._inputs(node, edge_inputs, index, item)
        fingerprint = self.reuse.fingerprint(node, inputs)
        kept = self.reuse.find(node, index, fingerprint, self.step_of[node.id] in self.forced)
        if kept is None:
            self.executed.add(self.step_of[node.id])
            return None
        self.recorder.node_run(
            NodeRun(node.id, 0, "reused", item=index, reused_from=kept.origin, cached=kept.cached),
            KeptResult(
                node.id,
                index,
                fingerprint,
                kept.delta,
                kept.edge_output,
                kept.origin,
                kept.created_at,
                node.cache is not None,
            ),
        )
        if apply:
            self.state.apply([(kept.delta, None)], node.id, [kept.origin])
        return Outcome(
            "succeeded", delta=kept.delta, edge_output=kept.edge_output, origin=kept.origin
        )

    async def _attempt(self, attempt: Attempt, apply: bool) -> tuple[Outcome | None, Any]:
        """One attempt, recorded: (outcome, None) on success, (None, AttemptError) on failure."""
        if self.halted is not None:  # it stopped while this attempt waited for a slot
            raise self.halted
        node = attempt.node
        limit_ms = policies.timeout_ms(self.experience, node)
        ts = utc_now()
        begun = NodeStarted(node_id=node.id, item=attempt.item, attempt=attempt.number)
        attempt.announce = lambda: self.recorder.emit(begun, ts)
        # the inputs' fingerprint, taken as given: before the call, which may change them
        fingerprint = self.reuse.fingerprint(node, attempt.inputs)
        record = NodeRun(node.id, attempt.number, "succeeded", item=attempt.item, started_at=ts)
        started = time.monotonic()
        outcome, error = None, None
        try:
            async with asyncio.timeout(limit_ms / 1000):
                try:
                    result = await self._execute(attempt)
                finally:
                    attempt.begin()  # written by now, whatever happened
            outcome = self._outcome(node, result)
            if apply:
                self.state.apply([(outcome.delta, None)], node.id)
        except TimeoutError:
            error = AttemptError(f"timed out after {limit_ms} ms", "timeout")
            record.status, record.timeout_ms = "timeout", limit_ms
        except AttemptError as exc:
            error, record.status = exc, "failed"
            attempt.worker = attempt.worker or exc.worker
        except RunFailed as exc:
            raise self.halt(exc) from None
        kept = None
        if error is None:
            metrics = result.get("metrics") if isinstance(result, dict) else None
            record.metrics = metrics if isinstance(metrics, dict) else None
            record.cpu_ms = attempt.cpu_ms
            kept = KeptResult(
                node.id,
                attempt.item,
                fingerprint,
                outcome.delta,
                outcome.edge_output,
                self.recorder.run_id,
                cacheable=node.cache is not None,
            )
        else:
            outcome, record.error_type, record.error = None, error.error_type, str(error)
        record.duration_ms, record.worker = _ms_since(started), attempt.worker
        if attempt.worker is not None:
            self.workers.add(attempt.worker)
        self.recorder.node_run(record, kept)
        return outcome, error

    def _outcome(self, node: Node, result: Any) -> Outcome:
        if result is None:
            result = {}
        not_json = jsonvalue.problem(result, "output")
        if not_json:  # it could be neither logged nor stored: this attempt failed, not the run
            raise AttemptError(
                f"node '{node.id}' returned a value that is not JSON: {not_json}", "bad_output"
            )
        if not isinstance(result, dict):
            raise AttemptError(
                f"node '{node.id}' returned {type(result).__name__}; expected an "
                "object with state_delta, edge_output, metrics",
                "bad_output",
            )
        if not _RESULT_KEYS.issuperset(result):
            unknown = set(result) - _RESULT_KEYS
            raise AttemptError(
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
        return Attempt(node, number, inputs, index, self.recorder.emit, self.ask)

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
            remote = attempt.item is not None or self.remote_every_tool
            if node.impl.suffix == ".py" and not (self.executor and remote):
                inputs = {**attempt.inputs, "_activity": attempt.activity}
                return await tools.call_python(
                    node.impl,
                    node.function or "run",
                    inputs,
                    self.loaded,
                    attempt.set_cpu,
                    submitted=attempt.begin,
                )
            attempt.begin()
            if node.impl.suffix == ".py":
                result, attempt.worker = await self.executor.call(
                    node.impl, node.function or "run", attempt.inputs
                )
                return result
            return await tools.call_process(node.impl, attempt.inputs)
        attempt.begin()
        if node.kind in ("agent", "skill"):
            from evolve.runtime.agent import run_agent

            return await run_agent(
                node,
                attempt,
                self.model_for(node) or "",
                self.experience.runtime.structured_output,
                policies.timeout_ms(self.experience, node),
            )
        if node.kind == "cli-agent":
            from evolve.runtime.cli_agent import run_cli_agent

            return await run_cli_agent(node, attempt, self.calls, self.state.values)
        if node.kind == "dataset":
            from evolve.runtime.datasets import fetch_rows

            timeout_ms = policies.timeout_ms(self.experience, node)
            rows = await fetch_rows(node, attempt, self.calls, timeout_ms)
            return {
                "state_delta": {node.writes[0]: rows},
                "edge_output": rows,
                "metrics": {"rows": len(rows)},
            }
        if self.child_runner is None:
            raise AttemptError("nested experiences are not available here", "unsupported")
        final_state = await self.child_runner(
            node, {k: v for k, v in attempt.inputs.items() if not k.startswith(("_", "$"))}
        )
        delta = {k: v for k, v in final_state.items() if k in node.writes}
        return {"state_delta": delta, "edge_output": final_state}

    # -- pipelines and loops ---------------------------------------------------------------------

    async def _pipeline(self, step: str) -> Outcome:
        pipe = self.experience.pipelines[step]
        items = pipe.items.evaluate(self.state.values)
        if not isinstance(items, list):
            raise self.halt(
                RunFailed(step, f"pipeline '{step}': {pipe.items.source} is not a list")
            )
        for stage in pipe.stages:
            self.recorder.emit(NodeItems(node_id=stage, total=len(items)))
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

        per_item = await self._all(one(i, x) for i, x in enumerate(items))
        try:
            for index, stages in enumerate(per_item):
                for node, outcome in stages:
                    if outcome.status == "succeeded":
                        self.state.apply([(outcome.delta, index)], node.id, [outcome.origin])
                    else:
                        self.partial = True
        except AttemptError as exc:
            raise self.halt(RunFailed(step, f"pipeline '{step}': {exc}")) from exc
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
            self.recorder.emit(
                LoopIteration(node_id=step, iteration=iteration, until_met=met, body=body.id)
            )
            if outcome.status != "succeeded" or met:
                break
            edge_inputs = {body.id: outcome.edge_output}
        return outcome


_RESULT_KEYS = frozenset({"state_delta", "edge_output", "metrics"})


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _saw(when: Any, values: dict[str, Any]) -> str:
    """The state values a false `when` read, for the skip reason: ` (it saw $.n = 3)`."""
    seen = []
    for path in getattr(when, "paths", ())[:4]:
        if path.root != "$":
            continue
        value = resolve_path(values, path.parts)
        shown = "missing" if value is MISSING else jsonvalue.dumps(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        seen.append(f"$.{'.'.join(path.parts)} = {shown}")
    return f" (it saw {', '.join(seen)})" if seen else ""
