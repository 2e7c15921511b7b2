"""The recorder: each outcome of a run written once, to the event log and the state store.

An outcome that belongs in both places (a node run, a model call, a state write, the run's
start and end) is handed over as one typed record; the recorder derives the event and the row
from it, so the two cannot disagree. Facts that only the log keeps (ready, retry, loop
iterations, schema errors, activity) go through `emit`.

Order is part of the contract:
- `run_started` inserts the `runs` row before the log's first line;
- rows of a running run are batched (see `store.writer`), so a kill loses at most the last
  batch of rows, and the log still has every line; a succeeded attempt's line carries its kept
  result (see `store.kept`), so that batch never takes a result the log reports with it;
- `run_finished` makes the run's final state durable in the store (every queued row, then the
  `runs` row, committed with a full sync; a suite's case runs commit without the full sync, and
  the suite's own end has it) *before* it writes `run.finished`. A log that says how a run ended
  is therefore never ahead of a store that lost a write.

`replay` goes the other way: it reads a log's events back into the same records and writes
their rows, which is how a store that lost rows is rebuilt from the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from evolve.errors import StoreError
from evolve.events import (
    EvalResult,
    EventType,
    LlmCall,
    NodeFailed,
    NodeFinished,
    NodeReused,
    NodeSkipped,
    NodeTimeout,
    RunFinished,
    RunStarted,
    StateInit,
    StateWrite,
)
from evolve.events import Event as _Event
from evolve.store.kept import KeptResult, keep
from evolve.store.log import EventLog, utc_now
from evolve.store.writer import StateStore


@dataclass(slots=True)
class RunStart:
    """A run beginning: its `runs` row and its `run.started` event."""

    event: RunStarted
    log_path: str
    started_at: str = field(default_factory=utc_now)
    spec_files: dict[str, str] | None = None  # {path: sha256}: in the row only

    def row(self, run_id: str) -> dict[str, Any]:
        e = self.event
        row = {
            "id": run_id,
            "experience": e.experience,
            "experience_dir": e.experience_dir,
            "spec_hash": e.spec_hash,
            "started_at": self.started_at,
            "args": e.args or {},
            "model": e.model,
            "log_path": self.log_path,
            "parent_run_id": e.parent_run_id,
            "parent_node": e.parent_node,
            "resumed_from": e.resumed_from,
            "options": e.options,
        }
        extra = {
            "kind": e.kind,
            "case_id": e.case_id,
            "repeat": e.repeat,
            # a suite's row counts its case runs: every case, `repeat` times
            "cases": len(e.cases) * (e.repeat or 1) if e.cases is not None else None,
            "spec_files": self.spec_files,
        }
        return {**row, **{k: v for k, v in extra.items() if v is not None}}


@dataclass(slots=True)
class RunEnd:
    """A run ending: the update of its `runs` row and its `run.finished` event."""

    event: RunFinished
    finished_at: str = field(default_factory=utc_now)

    def fields(self) -> dict[str, Any]:
        e = self.event
        return {
            "status": e.status,
            "reason": e.reason,
            "finished_at": self.finished_at,
            "duration_ms": e.duration_ms,
            "tokens_in": e.tokens.get("in", 0),
            "tokens_out": e.tokens.get("out", 0),
            "cost_usd": e.cost_usd,
            "score": e.score,
            "pass_rate": e.pass_rate,
            "evals_passed": None if e.evals_passed is None else int(e.evals_passed),
        }


@dataclass(slots=True)
class NodeRun:
    """One `node_runs` row: an attempt (`attempt` >= 1) or a node as a whole (`attempt` 0).

    status: succeeded | failed | timeout (attempts), succeeded | failed | skipped (whole nodes),
    reused (attempt 0: a node or item whose kept result was applied instead of executing it).
    """

    node_id: str
    attempt: int
    status: str
    item: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    error_type: str | None = None
    error: str | None = None
    metrics: dict[str, Any] | None = None
    timeout_ms: int | None = None  # the limit a timed-out attempt hit
    cpu_ms: int | None = None  # a succeeded Python tool attempt: the CPU time it used
    items: int | None = None  # a whole for_each node: how many items
    items_failed: int | None = None
    reused_from: str | None = None  # status reused: the run that executed it
    fingerprint: str | None = None  # the fingerprint a result is kept under (or that matched)
    result: dict[str, Any] | None = None  # a succeeded attempt's result, as its line carries it
    cached: bool | None = None  # status reused: found through `cache:`
    worker: str | None = None  # the Ray node an attempt ran on (--executor ray); log only

    def row(self, run_id: str) -> dict[str, Any]:
        return {
            "reused_from": self.reused_from,
            "run_id": run_id,
            "node_id": self.node_id,
            "item": self.item,
            "attempt": self.attempt,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_ms": self.duration_ms,
            "error_type": self.error_type,
            "error": self.error,
            "metrics": self.metrics,
        }

    def events(self) -> list[_Event]:
        """The events that report this row, in the order they are written."""
        node, item = self.node_id, self.item
        if self.status == "reused":
            return [
                NodeReused(
                    node_id=node,
                    item=item,
                    from_run=self.reused_from or "",
                    fingerprint=self.fingerprint or "",
                    cached=self.cached or None,
                )
            ]
        if self.attempt == 0 and self.status == "skipped":
            return [NodeSkipped(node_id=node, reason=self.error or "")]
        if self.attempt == 0:
            return [
                NodeFinished(
                    node_id=node,
                    status=self.status,
                    duration_ms=self.duration_ms or 0,
                    items=self.items,
                    items_failed=self.items_failed,
                    error=self.error if self.status != "succeeded" else None,
                )
            ]
        if self.status == "succeeded":
            return [
                NodeFinished(
                    node_id=node,
                    item=item,
                    attempt=self.attempt,
                    duration_ms=self.duration_ms or 0,
                    metrics=self.metrics or {},
                    worker=self.worker,
                    cpu_ms=self.cpu_ms,
                    fingerprint=self.fingerprint,
                    result=self.result,
                )
            ]
        failed = NodeFailed(
            node_id=node,
            item=item,
            attempt=self.attempt,
            error_type=self.error_type or "error",
            error=self.error or "",
            duration_ms=self.duration_ms,
            worker=self.worker,
        )
        if self.status == "timeout":
            return [
                NodeTimeout(
                    node_id=node, item=item, attempt=self.attempt, timeout_ms=self.timeout_ms
                ),
                failed,
            ]
        return [failed]


@dataclass(slots=True)
class ModelCall:
    """One `llm_calls` row and its `llm.call` event."""

    event: LlmCall
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    ts: str = field(default_factory=utc_now)

    def row(self, run_id: str) -> dict[str, Any]:
        e = self.event
        return {
            "run_id": run_id,
            "node_id": e.node_id,
            "item": e.item,
            "attempt": e.attempt,
            "model": e.model,
            "key": e.key,
            "request": self.request,
            "response": self.response,
            "tokens_in": e.tokens_in,
            "tokens_out": e.tokens_out,
            "cost_usd": e.cost_usd,
            "latency_ms": e.duration_ms,
            "replayed": int(e.replayed),
            "ts": self.ts,
        }


def _appended(old: Any, new: Any) -> list[Any] | None:
    """The items `new` adds at the end of the array `old`, or None when it is not that."""
    if not isinstance(old, list) or not isinstance(new, list) or len(new) < len(old):
        return None
    return new[len(old) :] if new[: len(old)] == old else None


@dataclass(slots=True)
class StateChange:
    """One merge into one state field: a `state_history` row, the snapshot, a `state.write`."""

    field: str
    old: Any
    new: Any
    node_id: str
    item: int | None = None
    writes: int = 1  # how many deltas (items) the merge took
    reused_from: list[str] = field(default_factory=list)  # runs whose kept results it applied

    @property
    def origin(self) -> str | None:
        return ", ".join(self.reused_from) or None

    def event(self, preview: str) -> StateWrite:
        appended = _appended(self.old, self.new)
        return StateWrite(
            node_id=self.node_id,
            item=self.item,
            field=self.field,
            writes=self.writes if self.writes > 1 else None,
            reused_from=self.origin,
            value_preview=preview,
            value=self.new if appended is None else None,
            appended=appended,
        )


class Recorder:
    """Writes one run's records: every event through `log`, every row through `store`. A record
    and its events share one timestamp (the row's `started_at`/`finished_at`/`ts` is the `ts` of
    the event that reports it), so a row rebuilt from the log by `replay` is the row written."""

    def __init__(self, run_id: str, log: EventLog, store: StateStore, *, durable: bool = True):
        self.run_id = run_id
        self.log = log
        self.store = store
        # a suite's case runs end without a full sync (one per case would be most of a suite's
        # time); the suite's own end is durable, and a case lost to a power cut reads interrupted
        self.durable = durable

    def emit(self, event: _Event, ts: str | None = None) -> dict[str, Any]:
        """A fact only the log keeps (at `ts`, default now); returns the event as written (with
        its `seq` and `ts`)."""
        return self.log.write(event, ts)

    def run_started(self, start: RunStart) -> None:
        self.store.begin_run(start.row(self.run_id))
        self.log.write(start.event, start.started_at)

    def run_finished(self, end: RunEnd) -> None:
        """Store first, durably; then the log's last line; then the log is closed."""
        try:
            self.store.finish_run(self.run_id, durable=self.durable, **end.fields())
        except BaseException as exc:
            note = (
                str(exc)
                if isinstance(exc, StoreError)  # already says which store and why
                else f"the state store could not record the end of the run: {exc}"
            )
            self.log.write(
                RunFinished(
                    status="failed",
                    reason=note,
                    duration_ms=end.event.duration_ms,
                    tokens=end.event.tokens,
                    cost_usd=end.event.cost_usd,
                )
            )
            self.log.close()
            raise
        self.log.write(end.event, end.finished_at)
        self.log.close()

    def node_run(self, record: NodeRun, kept: KeptResult | None = None) -> None:
        """A node run's row and events; with `kept`, the result a success keeps (a succeeded
        attempt's line carries it, or it is committed before the line: see `store.kept`)."""
        record.finished_at = ts = utc_now()
        if kept is not None:
            kept.created_at = kept.created_at or ts
            record.fingerprint = kept.fingerprint
            record.result = keep(self.store, self.run_id, kept)
        self.store.record_attempt(record.row(self.run_id))
        for event in record.events():
            self.log.write(event, ts)

    def prints_taken(self, prints: list[dict[str, Any]]) -> None:
        """Each node's definition, file and model digests as this run sees them."""
        self.store.record_prints([{**p, "run_id": self.run_id} for p in prints])

    def model_call(self, call: ModelCall) -> None:
        self.store.record_llm_call(call.row(self.run_id))
        self.log.write(call.event, call.ts)

    def evals_scored(self, results: list[EvalResult]) -> None:
        """Each eval's `eval.result` event and its `evals` row."""
        if results:
            self.store.record_evals(self.run_id, results[0].case_id, eval_rows(results))
        for result in results:
            self.log.write(result)

    def state_initialized(self, values: dict[str, Any]) -> None:
        self.store.init_state(self.run_id, values)
        self.log.write(StateInit(values=values))

    def state_changed(self, changes: list[StateChange], previews: list[str]) -> None:
        self.store.write_state(
            self.run_id,
            [
                {
                    "field": c.field,
                    "old": c.old,
                    "new": c.new,
                    "node_id": c.node_id,
                    "item": c.item,
                    "reused_from": c.origin,
                }
                for c in changes
            ],
        )
        for change, preview in zip(changes, previews, strict=True):
            self.log.write(change.event(preview))


def eval_rows(results: list[EvalResult]) -> list[dict[str, Any]]:
    """The `evals` rows of eval results (as `StateStore.record_evals` takes them)."""
    return [
        {
            "name": r.eval,
            "kind": r.kind,
            "score": r.score,
            "passed": r.passed,
            "required": r.required,
            "weight": r.weight,
            "reason": r.reason,
            "error": bool(r.error),
        }
        for r in results
    ]


@dataclass
class Replayed:
    """What `replay` wrote for one log."""

    run_id: str | None = None
    run_row: bool = False
    finished: bool = False
    node_runs: int = 0
    llm_calls: int = 0
    state: bool = False  # the log has `state.init`, so its state rows were rebuilt too


def replay(
    events: Iterable[dict[str, Any]],
    store: StateStore,
    *,
    run_row: bool = True,
    log_path: str | None = None,
) -> Replayed:
    """Write the rows a log's events stand for: the `runs` row (begun, and finished when the log
    has `run.finished`; only when `run_row`; without `spec_files`, which the log does not keep),
    every `node_runs`, `llm_calls` (without the request and response texts, which the log does
    not keep) and `evals` row, and the state rows (`state_snapshot`, `state_history`) from
    `state.init` and the values of `state.write` (a log written before they were recorded has
    none: its state rows are not rebuilt). The caller decides which rows are missing (e.g.
    deletes a run's rows first); this adds rows, it does not compare."""
    done = Replayed()
    started: dict[tuple[str, int | None, int], str] = {}  # (node, item, attempt) -> ts
    timed_out: dict[tuple[str, int | None, int], int] = {}
    begun: set[str] = set()  # nodes that reached node.ready or node.started
    state: dict[str, Any] | None = None  # the run's state, once the log says where it started
    for e in events:
        kind, node_id, item = e.get("type"), e.get("node_id"), e.get("item")
        done.run_id = done.run_id or e.get("run_id")
        record: NodeRun | None = None
        if kind == EventType.RUN_STARTED and run_row:
            fields = {k: v for k, v in e.items() if k in RunStarted.__dataclass_fields__}
            start = RunStart(RunStarted(**fields), log_path=log_path or "", started_at=e["ts"])
            store.begin_run({**start.row(e["run_id"]), "log_path": log_path}, owned=False)
            done.run_row = True
        elif kind == EventType.RUN_FINISHED and run_row:
            fields = {k: v for k, v in e.items() if k in RunFinished.__dataclass_fields__}
            end = RunEnd(RunFinished(**fields), finished_at=e["ts"])
            store.finish_run(e["run_id"], durable=False, **end.fields())
            done.finished = True
        elif kind in (EventType.NODE_READY, EventType.NODE_STARTED):
            begun.add(node_id)
            if kind == EventType.NODE_STARTED:
                started[(node_id, item, e["attempt"])] = e["ts"]
        elif kind == EventType.NODE_TIMEOUT:
            timed_out[(node_id, item, e["attempt"])] = e["timeout_ms"]
        elif kind in (EventType.NODE_FINISHED, EventType.NODE_FAILED) and "attempt" in e:
            key = (node_id, item, e["attempt"])
            record = NodeRun(
                node_id,
                e["attempt"],
                "succeeded" if kind == EventType.NODE_FINISHED else "failed",
                item=item,
                started_at=started.pop(key, None),
                finished_at=e["ts"],
                duration_ms=e.get("duration_ms"),
                error_type=e.get("error_type"),
                error=e.get("error"),
                metrics=e.get("metrics") or None,
            )
            if key in timed_out:
                record.status, record.timeout_ms = "timeout", timed_out.pop(key)
        elif kind == EventType.NODE_FINISHED:
            record = NodeRun(
                node_id,
                0,
                e.get("status", "succeeded"),
                duration_ms=e.get("duration_ms"),
                finished_at=e["ts"],
                error=e.get("error"),
                items=e.get("items"),
                items_failed=e.get("items_failed"),
            )
        elif kind == EventType.NODE_SKIPPED and item is None and node_id not in begun:
            record = NodeRun(node_id, 0, "skipped", finished_at=e["ts"], error=e.get("reason"))
        elif kind == EventType.STATE_INIT:
            state = dict(e.get("values") or {})
            store.init_state(e["run_id"], state)
            done.state = True
        elif kind == EventType.STATE_WRITE and state is not None:
            old = state.get(e["field"])
            if "appended" in e:
                new = [*(old if isinstance(old, list) else []), *e["appended"]]
            else:
                new = e.get("value")
            state[e["field"]] = new
            change = {
                "field": e["field"],
                "old": old,
                "new": new,
                "node_id": node_id,
                "item": item,
                "reused_from": e.get("reused_from"),
            }
            store.write_state(e["run_id"], [change])
        elif kind == EventType.EVAL_RESULT:
            fields = {k: v for k, v in e.items() if k in EvalResult.__dataclass_fields__}
            result = EvalResult(**fields)
            store.record_evals(e["run_id"], result.case_id, eval_rows([result]))
        elif kind == EventType.NODE_REUSED:
            record = NodeRun(
                node_id,
                0,
                "reused",
                item=item,
                finished_at=e["ts"],
                reused_from=e.get("from_run"),
                fingerprint=e.get("fingerprint"),
                cached=e.get("cached"),
            )
        elif kind == EventType.LLM_CALL:
            fields = {k: v for k, v in e.items() if k in LlmCall.__dataclass_fields__}
            store.record_llm_call(ModelCall(LlmCall(**fields), ts=e["ts"]).row(e["run_id"]))
            done.llm_calls += 1
        if record is not None:
            store.record_attempt(record.row(e["run_id"]))
            done.node_runs += 1
    store.flush()
    return done
