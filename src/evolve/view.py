"""A run as its readers look at it, folded from its event log in one streaming pass.

`fold(events)` turns the events of a run (finished, still going, or killed) into a `RunView`:
phases, nodes, items and attempts with status, timing, tokens, cost and errors, plus the summary
figures (slowest nodes, failures, retries, timeouts) and every event `seq` a finding can cite.
`Folder` is the same fold fed one event at a time, for a run still being written (live
progress). `inspect`, the HTML report, live progress and the advisor's evidence all read this
one view. It never holds the raw events, and an item that ran once and succeeded with nothing
else to say is a row of integers (`Items`), so a run of a million events folds in about 60 bytes
an item; readers walk items one at a time (`Items.values()`, `Items.json()`) or look only at the
notable ones (`Items.views()`).
"""

from __future__ import annotations

import heapq
import itertools
import operator
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from evolve.events import EventType

ENDED = ("failed", "timeout")  # how an attempt can end without success
_STARTED = EventType.NODE_STARTED
_ENDED = (EventType.NODE_FINISHED, EventType.NODE_FAILED)
DENSE_GAP = 1 << 16  # an item index this far past the last one is kept apart (indexes are dense)
INT64 = 1 << 62  # what a plain row's columns hold, with room to spare


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

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "status": self.status,
            "skipped": self.skipped,
            "reused_from": self.reused_from,
            "attempts": [a.to_json() for a in self.attempts],
        }

    @property
    def end_ms(self) -> int | None:
        return self.attempts[-1].end_ms if self.attempts else None


class Items:
    """A node's items by index, read as `ItemView`s in index order.

    Nearly every item of a large fan-out ran once and succeeded with nothing more to say (no
    error, tokens, cost, skip or reuse). Such a *plain* item is kept as one row of integer
    columns (about 56 bytes), not as objects (about 550); `ItemView`s of plain items are made
    when read, so a reader that walks a million items holds one at a time. Every other item
    (running, failed, retried, skipped, reused, with tokens or cost) stays an `ItemView` that
    the fold updates in place.
    """

    __slots__ = ("_cols", "_far", "_gone", "_pos", "_views", "last_end_ms")

    def __init__(self) -> None:
        self._views: dict[int, ItemView] = {}  # the items that are not plain, first seen first
        # plain rows: index, start_ms, end_ms, duration_ms, seq, cpu_ms (-1: not measured)
        self._cols = tuple(array("q") for _ in range(6))
        self._pos = array("q")  # item index -> its plain row, -1 for none (indexes are dense)
        self._far: dict[int, int] = {}  # ... for an index outside `_pos`'s reach
        self._gone = 0  # plain rows made views again (their seq is set to -1)
        self.last_end_ms: int | None = None  # the latest end of a plain item

    def __len__(self) -> int:
        return len(self._views) + len(self._cols[0]) - self._gone

    def __bool__(self) -> bool:
        return len(self) > 0

    def __contains__(self, index: object) -> bool:
        return index in self._views or self._row(index) is not None  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> ItemView:
        found = self._views.get(index)
        if found is not None:
            return found
        row = self._row(index)
        if row is None:
            raise KeyError(index)
        return self._plain_view(row)

    def __iter__(self) -> Iterator[int]:
        """The item indexes, in order."""
        return (item.index for item in self.values())

    def values(self) -> Iterator[ItemView]:
        """Every item, in index order (plain ones made on the way)."""
        views = sorted(self._views.values(), key=_index_of)
        return heapq.merge(map(self._plain_view, self._plain_rows()), views, key=_index_of)

    def json(self) -> Iterator[dict[str, Any]]:
        """Every item's `ItemView.to_json()`, in index order (plain ones made without views)."""
        plain = map(self._plain_json, self._plain_rows())
        if not self._views:
            return plain
        views = (i.to_json() for i in sorted(self._views.values(), key=_index_of))
        return heapq.merge(plain, views, key=_json_index)

    def notable_then_lowest(self, n: int) -> list[ItemView]:
        """At most `n` items to show, in index order: those that failed or were retried (the
        lowest indexes first), then the lowest indexes of the rest."""
        notable = sorted(
            (i for i in self.views() if i.status != "succeeded" or len(i.attempts) > 1),
            key=_index_of,
        )[:n]
        picked = {i.index: i for i in notable}
        for item in self.values():
            if len(picked) >= n:
                break
            picked.setdefault(item.index, item)
        return [picked[k] for k in sorted(picked)]

    def views(self) -> Iterable[ItemView]:
        """The items that are not plain (every one that failed, was retried, skipped, reused,
        is still running or spent tokens), first seen first."""
        return self._views.values()

    @property
    def plain(self) -> int:
        """How many items are plain: one attempt, succeeded."""
        return len(self._cols[0]) - self._gone

    def plain_attempts(self) -> Iterator[tuple[int, int | None]]:
        """(duration_ms, cpu_ms or None) of each plain item's one attempt."""
        _, _, _, durations, seqs, cpus = self._cols
        for duration, seq, cpu in zip(durations, seqs, cpus, strict=True):
            if seq >= 0:
                yield duration, (cpu if cpu >= 0 else None)

    def view(self, index: int) -> ItemView:
        """The item's view, for the fold to update (made now, or taken back from its row)."""
        found = self._views.get(index)
        if found is None:
            row = self._row(index)
            found = ItemView(index) if row is None else self._unplain(row)
            self._views[index] = found
        return found

    def settle(self, index: int) -> None:
        """An attempt of item `index` ended: keep the item as a row if it is plain now."""
        item = self._views.get(index)
        attempt = item.attempts[0] if item is not None and len(item.attempts) == 1 else None
        if (
            item is None
            or attempt is None
            or item.skipped is not None
            or item.reused_from is not None
            or item.cached
            or not _plain_attempt(attempt)
        ):
            return
        del self._views[item.index]
        cols = self._cols
        row = len(cols[0])
        cols[0].append(item.index)
        cols[1].append(attempt.start_ms)
        cols[2].append(attempt.end_ms)  # type: ignore[arg-type]  # _plain_attempt: an int
        cols[3].append(attempt.duration_ms)  # type: ignore[arg-type]
        cols[4].append(attempt.seq)
        cols[5].append(-1 if attempt.cpu_ms is None else attempt.cpu_ms)
        self._place(item.index, row)
        if self.last_end_ms is None or attempt.end_ms > self.last_end_ms:  # type: ignore[operator]
            self.last_end_ms = attempt.end_ms

    def _place(self, index: int, row: int) -> None:
        pos = self._pos
        if index == len(pos):
            pos.append(row)
        elif 0 <= index < len(pos) + DENSE_GAP:
            if index >= len(pos):
                pos.extend(itertools.repeat(-1, index + 1 - len(pos)))
            pos[index] = row
        else:
            self._far[index] = row

    def _row(self, index: int) -> int | None:
        if not isinstance(index, int):
            return None
        row = self._pos[index] if 0 <= index < len(self._pos) else -1
        if row < 0:
            row = self._far.get(index, -1)
        return row if row >= 0 else None

    def _plain_rows(self) -> Iterator[int]:
        """The plain rows in index order."""
        dense = (row for row in self._pos if row >= 0)
        if not self._far:
            return dense
        far = (self._far[index] for index in sorted(self._far))
        return heapq.merge(dense, far, key=self._cols[0].__getitem__)

    def _plain_view(self, row: int) -> ItemView:
        index, start, end, duration, seq, cpu = (col[row] for col in self._cols)
        attempt = AttemptView(
            1, index, start, "succeeded", end, duration, seq=seq, cpu_ms=None if cpu < 0 else cpu
        )
        return ItemView(index, [attempt])

    def _plain_json(self, row: int) -> dict[str, Any]:
        """`self._plain_view(row).to_json()`, without making the view."""
        index, start, end, duration, seq, _ = (col[row] for col in self._cols)
        attempt = {
            "number": 1,
            "item": index,
            "start_ms": start,
            "status": "succeeded",
            "end_ms": end,
            "duration_ms": duration,
            "error_type": None,
            "error": None,
            "seq": seq,
            "tokens_in": 0,
            "tokens_out": 0,
            "cost_usd": None,
        }
        return {
            "index": index,
            "status": "succeeded",
            "skipped": None,
            "reused_from": None,
            "attempts": [attempt],
        }

    def _unplain(self, row: int) -> ItemView:
        found = self._plain_view(row)
        self._cols[4][row] = -1
        self._gone += 1
        if found.index in self._far:
            del self._far[found.index]
        else:
            self._pos[found.index] = -1
        return found


def _index_of(item: ItemView) -> int:
    return item.index


_json_index = operator.itemgetter("index")


def _plain_attempt(a: AttemptView) -> bool:
    """One attempt that succeeded the first time, with nothing to say but its timing."""
    cpu = 0 if a.cpu_ms is None else a.cpu_ms
    return (
        a.number == 1
        and a.status == "succeeded"
        and a.error_type is None
        and a.error is None
        and not a.tokens_in
        and not a.tokens_out
        and a.cost_usd is None
        and a.timeout_ms is None
        and a.timeout_seq is None
        and _column(a.start_ms)
        and _column(a.end_ms)
        and _column(a.duration_ms)
        and _column(a.seq)
        and _column(cpu)
    )


def _column(value: object) -> bool:
    return type(value) is int and 0 <= value < INT64


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
    items: Items = field(default_factory=Items)
    last_attempt: AttemptView | None = None  # the one started last, an item's or not
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
        return sum(1 for i in self.items.views() if i.reused_from is not None)

    @property
    def reused(self) -> bool:
        """Succeeded without executing: its result (or every item's) was a kept one."""
        whole = self.reused_from is not None and not self.attempts
        every = bool(self.items) and self.items_reused == len(self.items)
        return self.status == "succeeded" and (whole or every)

    @property
    def attempt_count(self) -> int:
        """Every attempt, its items' included."""
        views = sum(len(i.attempts) for i in self.items.views())
        return len(self.attempts) + self.items.plain + views

    @property
    def duration_ms(self) -> int | None:
        if self.start_ms is None or self.end_ms is None:
            return None
        return self.end_ms - self.start_ms

    @property
    def items_failed(self) -> int:
        return sum(1 for i in self.items.views() if i.status in ENDED)

    @property
    def items_succeeded(self) -> int:
        views = sum(1 for i in self.items.views() if i.status == "succeeded")
        return self.items.plain + views

    @property
    def items_done(self) -> int:
        views = sum(1 for i in self.items.views() if i.status not in ("running", "waiting"))
        return self.items.plain + views

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
        return self.items.json()


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
        self._ts, self._at = "", 0  # the latest timestamp seen, in ms from the start

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
        if e["ts"] != self._ts:  # events come several to a millisecond: parse each time once
            self._ts, self._at = e["ts"], _ms(e["ts"], self.origin)
        at = self._at
        if at > view.last_ms:
            view.last_ms = at
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
        if kind == _STARTED:  # the most frequent first: an attempt starts, then ends
            self._attempt_started(node, e, item, at)
            return
        if kind in _ENDED and "attempt" in e:
            self._attempt_ended(node, e, item, at)
            return
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
        self._ts = ""  # times read before the origin was known are read again
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
        node.last_attempt = attempt
        target = node.attempts if item is None else node.items.view(item).attempts
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
        if item is not None:
            node.items.settle(item)
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
            found = node.items.view(item)
            found.reused_from, found.cached = e.get("from_run"), bool(e.get("cached"))
            return
        if node.start_ms is None:
            node.start_ms = at
        node.reused_from, node.cached = e.get("from_run"), bool(e.get("cached"))
        if node.kind != "loop":
            node.status, node.end_ms = "succeeded", at

    def _skipped(self, node: NodeView, e: dict[str, Any], item: int | None, at: int) -> None:
        if item is not None:
            node.items.view(item).skipped = e.get("reason", "")
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
        views = list(node.items.views())  # plain items all succeeded
        items = [i.status for i in views] + ["succeeded"] * bool(node.items.plain)
        if view.status == "failed" and any(
            i.skipped is None and i.attempts and i.attempts[-1].status in ENDED for i in views
        ):
            # an item failed and was neither retried nor skipped: under fail_run it stopped
            # the run, so its node failed
            node.status = "failed"
            node.end_ms = _items_end(node.items)
            continue
        if items and "running" not in items and "interrupted" not in items:
            # a pipeline stage: its items ended, and the pipeline reports for it
            node.status = "succeeded" if "succeeded" in items else "failed"
            node.end_ms = _items_end(node.items)
            continue
        node.status = (
            "failed" if last is not None and last.status in ("failed", "timeout") else "interrupted"
        )
        node.end_ms = node.end_ms or (last.end_ms if last else None) or view.duration_ms


def _items_end(items: Items) -> int:
    """When the last of the items ended (0 when none has)."""
    return max([*((i.end_ms or 0) for i in items.views()), items.last_end_ms or 0])
