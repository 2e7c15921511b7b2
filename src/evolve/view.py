"""A run as its readers look at it, folded from its event log in one streaming pass.

`fold(events)` turns the events of a run (finished, still going, or killed) into a `RunView`:
phases, nodes, items and attempts with status, timing, tokens, cost and errors, plus the summary
figures (slowest nodes, failures, retries, timeouts) and every event `seq` a finding can cite.
`Folder` is the same fold fed one event at a time, for a run still being written (live
progress). `inspect`, the HTML report, live progress and the advisor's evidence all read this
one view. It never holds the raw events, so a run of 100,000 events costs only its nodes and
attempts in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from evolve.events import EventType

ENDED = ("failed", "timeout")  # how an attempt can end without success


def _ms(ts: str, origin: datetime | None) -> int:
    if origin is None:
        return 0
    return round((datetime.fromisoformat(ts) - origin).total_seconds() * 1000)


@dataclass(slots=True)
class AttemptView:
    number: int
    item: int | None
    start_ms: int
    status: str = "running"  # running | succeeded | failed | timeout
    end_ms: int | None = None
    duration_ms: int | None = None
    error_type: str | None = None
    error: str | None = None
    seq: int = 0  # of the event that ended it (or started it, while running)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    timeout_ms: int | None = None  # the limit it ran into
    timeout_seq: int | None = None
    cpu_ms: int | None = None  # a Python tool's CPU time, when measured

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "item": self.item,
            "start_ms": self.start_ms,
            "status": self.status,
            "end_ms": self.end_ms,
            "duration_ms": self.duration_ms,
            "error_type": self.error_type,
            "error": self.error,
            "seq": self.seq,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": self.cost_usd,
        }


@dataclass(slots=True)
class ItemView:
    index: int
    attempts: list[AttemptView] = field(default_factory=list)
    skipped: str | None = None
    reused_from: str | None = None  # not executed: a kept result of this run was applied
    cached: bool = False  # ... found through the node's `cache:`

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "failed"
        if self.reused_from is not None and not self.attempts:
            return "succeeded"
        return self.attempts[-1].status if self.attempts else "waiting"

    @property
    def start_ms(self) -> int | None:
        return self.attempts[0].start_ms if self.attempts else None

    @property
    def end_ms(self) -> int | None:
        return self.attempts[-1].end_ms if self.attempts else None


@dataclass(slots=True)
class NodeView:
    id: str
    kind: str = "tool"
    phase: str | None = None
    for_each: bool = False
    status: str = "waiting"  # waiting | running | succeeded | failed | skipped
    reason: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    attempts: list[AttemptView] = field(default_factory=list)  # those without an item
    items: dict[int, ItemView] = field(default_factory=dict)
    retries: int = 0
    timeouts: int = 0
    schema_invalid: int = 0
    llm_calls: int = 0
    cut_seqs: list[int] = field(default_factory=list)  # llm.call cut at max_tokens
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    iterations: int = 0  # loops
    items_total: int | None = None  # for_each nodes and pipeline stages, once known
    activity: str | None = None  # the latest node.activity
    first_seq: int | None = None  # the first event about the node (None: it never ran)
    retry_seqs: list[int] = field(default_factory=list)
    schema_errors: list[tuple[int, list[str]]] = field(default_factory=list)  # (seq, errors)
    finishes: list[tuple[int, int]] = field(default_factory=list)  # whole node: (wall_ms, items)
    reused_from: str | None = None  # not executed: a kept result of this run was applied
    cached: bool = False  # ... found through the node's `cache:`

    @property
    def items_reused(self) -> int:
        return sum(1 for i in self.items.values() if i.reused_from is not None)

    @property
    def reused(self) -> bool:
        """Succeeded without executing: its result (or every item's) was a kept one."""
        whole = self.reused_from is not None and not self.attempts
        every = bool(self.items) and self.items_reused == len(self.items)
        return self.status == "succeeded" and (whole or every)

    @property
    def all_attempts(self) -> list[AttemptView]:
        return [*self.attempts, *(a for i in self.items.values() for a in i.attempts)]

    @property
    def duration_ms(self) -> int | None:
        if self.start_ms is None or self.end_ms is None:
            return None
        return self.end_ms - self.start_ms

    @property
    def items_failed(self) -> int:
        return sum(1 for i in self.items.values() if i.status in ENDED)

    @property
    def items_done(self) -> int:
        return sum(1 for i in self.items.values() if i.status not in ("running", "waiting"))

    def to_json(self) -> dict[str, Any]:
        return {**self.head_json(), "items": list(self.items_json())}

    def head_json(self) -> dict[str, Any]:
        """The node as JSON without its items (which `items_json` gives one at a time)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "phase": self.phase,
            "status": self.status,
            "reason": self.reason,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "duration_ms": self.duration_ms,
            "retries": self.retries,
            "timeouts": self.timeouts,
            "schema_invalid": self.schema_invalid,
            "llm_calls": self.llm_calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": self.cost_usd,
            "iterations": self.iterations or None,
            "reused_from": self.reused_from,
            "items_reused": self.items_reused or None,
            "reused": self.reused,
            "attempts": [a.to_json() for a in self.attempts],
        }

    def items_json(self) -> Iterator[dict[str, Any]]:
        """The node's items as JSON values, one at a time, in item order."""
        for index in sorted(self.items):
            item = self.items[index]
            yield {
                "index": item.index,
                "status": item.status,
                "skipped": item.skipped,
                "reused_from": item.reused_from,
                "attempts": [a.to_json() for a in item.attempts],
            }


@dataclass
class Failure:
    seq: int
    node: str
    item: int | None
    attempt: int | None
    error_type: str
    error: str


@dataclass
class RunView:
    run_id: str = ""
    experience: str = ""
    status: str = "running"
    reason: str | None = None
    started: str | None = None
    duration_ms: int | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    phases: list[str] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    nodes: dict[str, NodeView] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    events: int = 0
    last_ms: int = 0  # time of the newest event, from the start
    finished: bool = False  # the log has run.finished
    evals: list[dict[str, Any]] = field(default_factory=list)  # eval.result, in order
    score: float | None = None
    evals_passed: bool | None = None
    parent_node: str | None = None  # a nested run: the node of its parent that started it
    resumed_from: str | None = None  # the earlier run whose results this one reuses

    def slowest(self, n: int = 5) -> list[NodeView]:
        timed = [v for v in self.nodes.values() if v.duration_ms is not None]
        return sorted(timed, key=lambda v: -(v.duration_ms or 0))[:n]

    @property
    def retries(self) -> int:
        return sum(v.retries for v in self.nodes.values())

    @property
    def timeouts(self) -> int:
        return sum(v.timeouts for v in self.nodes.values())

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "wall_ms": self.duration_ms,
            "events": self.events,
            "retries": self.retries,
            "timeouts": self.timeouts,
            "failures": len(self.failures),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": self.cost_usd,
            "slowest": [{"node": v.id, "duration_ms": v.duration_ms} for v in self.slowest()],
            "score": self.score,
            "evals_passed": self.evals_passed,
        }


class Folder:
    """The fold, one event at a time: `feed` each event, read `view` whenever."""

    def __init__(self) -> None:
        self.view = RunView()
        self.origin: datetime | None = None
        self.open: dict[tuple[str, int | None], AttemptView] = {}

    def node(self, node_id: str) -> NodeView:
        found = self.view.nodes.get(node_id)
        if found is None:
            found = self.view.nodes[node_id] = NodeView(node_id)
        return found

    def feed(self, e: dict[str, Any]) -> None:
        view = self.view
        view.events += 1
        kind = e["type"]
        if kind == EventType.RUN_STARTED:
            self._started(e)
            return
        at = _ms(e["ts"], self.origin)
        view.last_ms = max(view.last_ms, at)
        if kind == EventType.RUN_FINISHED:
            view.status, view.reason = e.get("status", "success"), e.get("reason")
            view.duration_ms = e.get("duration_ms")
            view.score, view.evals_passed = e.get("score"), e.get("evals_passed")
            view.finished = True
            return
        if kind == EventType.EVAL_RESULT:
            view.evals.append(
                {k: e.get(k) for k in ("eval", "kind", "score", "passed", "required", "reason")}
            )
            return
        node_id = e.get("node_id")
        if not node_id:
            return
        if node_id.startswith("eval:"):  # a judge's model call: the run's cost, not a node
            self._judge_call(e)
            return
        node = self.node(node_id)
        if node.first_seq is None:
            node.first_seq = e["seq"]
        item = e.get("item")
        key = (node_id, item)
        if kind == EventType.NODE_READY:
            node.status, node.start_ms = "running", at
        elif kind == EventType.NODE_ITEMS:
            node.items_total = e.get("total")
        elif kind == EventType.NODE_STARTED:
            self._attempt_started(node, e, item, at)
        elif kind == EventType.NODE_REUSED:
            self._reused(node, e, item, at)
        elif kind == EventType.NODE_ACTIVITY:
            node.activity = e.get("activity")
        elif kind in (EventType.NODE_FINISHED, EventType.NODE_FAILED) and "attempt" in e:
            self._attempt_ended(node, e, item, at)
        elif kind == EventType.NODE_FINISHED:  # a whole for_each node, pipeline or loop
            node.status = "succeeded" if e.get("status", "succeeded") == "succeeded" else "failed"
            node.reason = node.reason if node.status == "succeeded" else e.get("error")
            node.end_ms = at
            if "items" in e:
                node.finishes.append((e.get("duration_ms", 0), e["items"]))
                node.items_total = e["items"]
        elif kind == EventType.NODE_FAILED:  # a node-level failure, with no attempt
            view.failures.append(
                Failure(
                    e["seq"], node_id, item, None, e.get("error_type", "error"), e.get("error", "")
                )
            )
            node.status, node.end_ms = "failed", at
        elif kind == EventType.NODE_TIMEOUT:
            attempt = self.open.get(key)
            if attempt is not None:
                attempt.status = "timeout"
                attempt.timeout_ms, attempt.timeout_seq = e.get("timeout_ms"), e["seq"]
            node.timeouts += 1
        elif kind == EventType.NODE_RETRY:
            node.retries += 1
            node.retry_seqs.append(e["seq"])
        elif kind == EventType.NODE_SKIPPED:
            self._skipped(node, e, item, at)
        elif kind == EventType.SCHEMA_INVALID:
            node.schema_invalid += 1
            node.schema_errors.append((e["seq"], list(e.get("errors", []))))
        elif kind == EventType.LLM_CALL:
            self._llm_call(node, e, key)
        elif kind == EventType.LOOP_ITERATION:
            node.iterations = max(node.iterations, e.get("iteration", 0))
            node.end_ms = at
            node.status = "succeeded"

    def _started(self, e: dict[str, Any]) -> None:
        view = self.view
        self.origin = datetime.fromisoformat(e["ts"])
        view.run_id, view.experience, view.started = e["run_id"], e.get("experience", ""), e["ts"]
        view.parent_node = e.get("parent_node")
        view.resumed_from = e.get("resumed_from")
        graph = e.get("graph") or {}
        view.phases = list(graph.get("phases", []))
        view.edges = list(graph.get("edges", []))
        nested = [n for n in graph.get("nodes", {}) if n not in graph.get("steps", [])]
        for node_id in [*graph.get("steps", []), *nested]:  # steps first, in graph order
            info = graph["nodes"].get(node_id, {})
            node = self.node(node_id)
            node.kind, node.phase = info.get("kind", "tool"), info.get("phase")
            node.for_each = bool(info.get("for_each"))

    def _attempt_started(self, node: NodeView, e: dict[str, Any], item: int | None, at: int):
        if node.start_ms is None:
            node.start_ms = at
        node.status = "running"
        attempt = AttemptView(e.get("attempt", 1), item, at, seq=e["seq"])
        self.open[(node.id, item)] = attempt
        target = (
            node.attempts if item is None else node.items.setdefault(item, ItemView(item)).attempts
        )
        target.append(attempt)

    def _attempt_ended(self, node: NodeView, e: dict[str, Any], item: int | None, at: int):
        succeeded = e["type"] == EventType.NODE_FINISHED
        attempt = self.open.pop((node.id, item), None)
        if attempt is not None:
            if attempt.status != "timeout":
                attempt.status = "succeeded" if succeeded else "failed"
            attempt.end_ms, attempt.seq = at, e["seq"]
            attempt.duration_ms = e.get("duration_ms", at - attempt.start_ms)
            attempt.error_type, attempt.error = e.get("error_type"), e.get("error")
            attempt.cpu_ms = e.get("cpu_ms")
        if not succeeded:
            self.view.failures.append(
                Failure(
                    e["seq"],
                    node.id,
                    item,
                    e.get("attempt"),
                    e.get("error_type", "error"),
                    e.get("error", ""),
                )
            )
        elif item is None and node.kind != "loop":
            node.status, node.end_ms = "succeeded", at

    def _reused(self, node: NodeView, e: dict[str, Any], item: int | None, at: int) -> None:
        if item is not None:
            found = node.items.setdefault(item, ItemView(item))
            found.reused_from, found.cached = e.get("from_run"), bool(e.get("cached"))
            return
        if node.start_ms is None:
            node.start_ms = at
        node.reused_from, node.cached = e.get("from_run"), bool(e.get("cached"))
        if node.kind != "loop":
            node.status, node.end_ms = "succeeded", at

    def _skipped(self, node: NodeView, e: dict[str, Any], item: int | None, at: int) -> None:
        if item is not None:
            node.items.setdefault(item, ItemView(item)).skipped = e.get("reason", "")
            return
        failed = str(e.get("reason", "")).startswith("failed")
        node.status, node.reason = ("failed" if failed else "skipped"), e.get("reason")
        node.end_ms = at
        if node.start_ms is None:
            node.start_ms = at

    def _llm_call(self, node: NodeView, e: dict[str, Any], key: tuple[str, int | None]) -> None:
        view = self.view
        node.llm_calls += 1
        if e.get("finish_reason") == "length":
            node.cut_seqs.append(e.get("seq", 0))
        tin, tout, cost = e.get("tokens_in") or 0, e.get("tokens_out") or 0, e.get("cost_usd")
        node.tokens_in += tin
        node.tokens_out += tout
        view.tokens_in += tin
        view.tokens_out += tout
        attempt = self.open.get(key)
        if attempt is not None:
            attempt.tokens_in += tin
            attempt.tokens_out += tout
        if cost is not None:
            node.cost_usd = (node.cost_usd or 0.0) + cost
            view.cost_usd = (view.cost_usd or 0.0) + cost
            if attempt is not None:
                attempt.cost_usd = (attempt.cost_usd or 0.0) + cost

    def _judge_call(self, e: dict[str, Any]) -> None:
        if e["type"] != EventType.LLM_CALL:
            return
        view = self.view
        view.tokens_in += e.get("tokens_in") or 0
        view.tokens_out += e.get("tokens_out") or 0
        if e.get("cost_usd") is not None:
            view.cost_usd = (view.cost_usd or 0.0) + e["cost_usd"]

    def settled(self, stored_status: str | None = None) -> RunView:
        """The view as it stands; a run that has ended (by its log, or by `stored_status` from
        the state store when the log has no `run.finished`) leaves nothing running."""
        view = self.view
        if not view.finished:  # no run.finished: running, or killed
            ended = stored_status not in (None, "running")
            view.status = stored_status if ended else "running"
            view.duration_ms = view.last_ms
        if view.status != "running":
            _settle(view, self)
        return view


def fold(events: Iterable[dict[str, Any]], stored_status: str | None = None) -> RunView:
    """The view of a run from its events. `stored_status` (from the state store) settles the
    status of a run whose log has no `run.finished` (still going, or killed)."""
    folder = Folder()
    for event in events:
        folder.feed(event)
    return folder.settled(stored_status)


def _settle(view: RunView, folder: Folder) -> None:
    """A run that has ended leaves nothing running: unfinished attempts were interrupted, and
    a node whose last attempt failed has failed (under fail_run the run stopped right there)."""
    for attempt in folder.open.values():
        attempt.status = "interrupted"
        attempt.end_ms = view.duration_ms
    for node in view.nodes.values():
        if node.status != "running":
            continue
        last = node.attempts[-1] if node.attempts else None
        items = [i.status for i in node.items.values()]
        if view.status == "failed" and any(
            i.skipped is None and i.attempts and i.attempts[-1].status in ENDED
            for i in node.items.values()
        ):
            # an item failed and was neither retried nor skipped: under fail_run it stopped
            # the run, so its node failed
            node.status = "failed"
            node.end_ms = max((i.end_ms or 0) for i in node.items.values())
            continue
        if items and "running" not in items and "interrupted" not in items:
            # a pipeline stage: its items ended, and the pipeline reports for it
            node.status = "succeeded" if "succeeded" in items else "failed"
            node.end_ms = max((i.end_ms or 0) for i in node.items.values())
            continue
        node.status = (
            "failed" if last is not None and last.status in ("failed", "timeout") else "interrupted"
        )
        node.end_ms = node.end_ms or (last.end_ms if last else None) or view.duration_ms
