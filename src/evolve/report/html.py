"""A run as one self-contained HTML file: header, summary cards, graph, timeline, nodes, failures,
state diff.

`render_html(report)` returns the page; `write_html(report, path)` writes it. This module turns an
`Inspection` into what the page shows (figures, bars and their positions, clipped texts); the
markup is in `report/templates/run.html.j2` (autoescaped: run text can never become markup), the
style and script in `report/static/`, the graph's geometry in `report/layout.py`. The page never
reaches the network: CSS, the small vanilla JS and the graph's SVG are inline. Large runs stay
fast and small: a node draws at most `ITEMS_DRAWN` item rows in the timeline, the failures list
and long state values are capped, and each says how much it left out.

Stable hooks for tests and scripts: every element standing for a node carries `data-node` and
`data-status`; timeline bars have `class="bar"`; state diff rows have `class="diff-row"` and
`data-field`; eval rows `class="eval-row"`, `data-eval` and `data-passed`; a suite's case rows
`class="case-row"`, `data-case` and `data-passed`; the script sets
`document.body.dataset.ready = "1"` once it has run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve import __version__
from evolve.report.layout import Layout, clip, layout_graph
from evolve.report.templating import GraphNode, duration, money, number, render_page
from evolve.store.queries import Inspection
from evolve.view import AttemptView, ItemView, NodeView, RunView

ITEMS_DRAWN = 500
FAILURES_SHOWN = 200
VALUE_PREVIEW = 90
VALUE_CHARS = 20_000
ERROR_CHARS = 2_000
MARKS_DRAWN = 200
OPEN_UP_TO = 20  # a fan-out this small starts expanded in the timeline

STATUS_LEGEND = [
    ("st-succeeded", "succeeded"),
    ("st-failed", "failed"),
    ("st-skipped", "skipped"),
    ("st-running", "running / interrupted"),
    ("st-waiting", "not started"),
]


def write_html(report: Inspection, path: Path) -> None:
    """Write the report of one run to `path` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")


def render_html(report: Inspection) -> str:
    """The whole report page of one run, as a string."""
    view = report.view
    layout, graph_nodes, edge_styles = _graph(view)
    return render_page(
        "run.html.j2",
        title=f"{view.run_id} · {view.experience} · evolve",
        version=__version__,
        view=view,
        facts=_facts(report),
        cards=_cards(view),
        graph=layout if layout.boxes else None,
        graph_nodes=graph_nodes,
        edge_styles=edge_styles,
        legend_keys=STATUS_LEGEND,
        items_drawn=ITEMS_DRAWN,
        timeline=_timeline(view),
        has_items=any(n.items for n in view.nodes.values()),
        table=_node_table(view),
        failures=[_failure(view, f) for f in view.failures[:FAILURES_SHOWN]],
        failures_more=max(0, len(view.failures) - FAILURES_SHOWN),
        diff=[_diff_row(d) for d in report.state_diff],
        evals=view.evals,
        score=view.score if report.cases is None else report.row.get("score"),
        evals_passed=view.evals_passed,
        cases=report.cases,
        totals=_suite_totals(report) if report.cases is not None else "",
    )


def _suite_totals(report: Inspection) -> str:
    from evolve.evals.summary import suite_totals

    return suite_totals(report.suite_summary())


# --- header and cards -------------------------------------------------------------------------


def _facts(report: Inspection) -> list[tuple[str, str]]:
    view, row = report.view, report.row
    started = (row.get("started_at") or view.started or "")[:19].replace("T", " ")
    tokens = view.tokens_in + view.tokens_out
    facts = [
        ("experience", view.experience),
        ("wall time", duration(view.duration_ms)),
        (
            "tokens",
            f"{number(view.tokens_in)} in · {number(view.tokens_out)} out" if tokens else "0",
        ),
        ("cost", money(view.cost_usd)),
        ("started", f"{started} UTC" if started else "—"),
    ]
    if row.get("model"):
        facts.append(("model", row["model"]))
    if row.get("parent_run_id"):
        facts.append(("parent", f"{row['parent_run_id']} ({row.get('parent_node') or '?'})"))
    return facts


@dataclass(frozen=True, slots=True)
class Card:
    key: str
    label: str
    value: int
    note: str = ""

    @property
    def hot(self) -> bool:
        return bool(self.value) and self.key in ("failed", "timeout", "failure")


def _cards(view: RunView) -> list[Card]:
    counts = {"succeeded": 0, "failed": 0, "skipped": 0}
    for node in view.nodes.values():
        if node.status in counts:
            counts[node.status] += 1
    items = sum(len(n.items) for n in view.nodes.values())
    items_failed = sum(n.items_failed for n in view.nodes.values())
    cards = [
        Card("succeeded", "nodes ok", counts["succeeded"]),
        Card("failed", "nodes failed", counts["failed"]),
        Card("skipped", "nodes skipped", counts["skipped"]),
        *(
            [Card("reused", "nodes reused", reused, f"from {view.resumed_from}")]
            if (reused := sum(1 for n in view.nodes.values() if n.reused))
            else []
        ),
        Card("retry", "retries", view.retries),
        Card("timeout", "timeouts", view.timeouts),
        Card("failure", "failures", len(view.failures)),
        Card("items", "items", items, f"{number(items_failed)} failed" if items_failed else ""),
    ]
    unsettled = sum(1 for n in view.nodes.values() if n.status in ("running", "interrupted"))
    if unsettled:
        label = "running" if view.status == "running" else "interrupted"
        cards.insert(3, Card("unsettled", label, unsettled))
    return cards


# --- the graph --------------------------------------------------------------------------------


def _box_label(node: NodeView) -> str:
    if node.items:
        text = f"{len(node.items):,} items"
        if node.items_failed:
            text += f" · {node.items_failed:,} failed"
        if node.items_reused:
            text += f" · {node.items_reused:,} reused"
        return text
    if node.reused:
        return f"{node.kind} · ↺ {'cache hit' if node.cached else 'reused'} {node.reused_from}"
    if node.iterations:
        return f"{node.kind} · {node.iterations} iterations"
    return f"{node.kind} · {duration(node.duration_ms)}"


def _graph(view: RunView) -> tuple[Layout, dict[str, GraphNode], list[tuple[str, str]]]:
    edges = [
        (str(e.get("from")), str(e.get("to")), f"when {e['when']}" if e.get("when") else None)
        for e in view.edges
    ]
    labels = {key: _box_label(node) for key, node in view.nodes.items()}
    layout = layout_graph(list(view.nodes), edges, labels)
    nodes = {}
    for key in layout.boxes:
        node = view.nodes.get(key)
        status = node.status if node else "waiting"
        kind = node.kind if node else "?"
        tip = f"{key} · {kind} · {status}"
        if node and node.reason:
            tip += f"\n{node.reason}"
        sub = labels.get(key, "not in this run")
        reused = " reused" if node and node.reused else ""
        nodes[key] = GraphNode(f"st-{status} kind-{kind}{reused}", kind, tip, sub, status)
    styles = []
    for _, target, _ in edges:
        node = view.nodes.get(target)
        muted = node is None or node.status in ("skipped", "waiting")
        styles.append(("edge muted", "arrow-muted") if muted else ("edge", "arrow"))
    return layout, nodes, styles


# --- the timeline -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    css: str
    node: str
    status: str
    style: str
    tip: str
    item: int | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    status: str
    style: str
    tip: str


@dataclass(frozen=True, slots=True)
class Note:
    side: str  # after | before
    style: str
    text: str


@dataclass(slots=True)
class Track:
    bars: list[Bar] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    note: Note | None = None


@dataclass(frozen=True, slots=True)
class ItemRow:
    index: int
    status: str
    meta: str
    track: Track


@dataclass(frozen=True, slots=True)
class NodeRow:
    node: str
    status: str
    meta: str
    track: Track
    items: list[ItemRow] | None  # None: not a fan-out
    hidden: int = 0
    opened: bool = False


@dataclass(frozen=True, slots=True)
class Tick:
    pct: str
    text: str
    css: str = ""


@dataclass(frozen=True, slots=True)
class Timeline:
    ticks: list[Tick]
    rows: list[NodeRow]


def _nice_step(total: int, target: int = 8) -> int:
    raw = max(total / target, 1)
    magnitude = 10 ** (len(str(int(raw))) - 1)
    for factor in (1, 2, 2.5, 5, 10):
        step = int(factor * magnitude)
        if step >= raw:
            return step
    return 10 * magnitude


def _axis_label(ms: int) -> str:
    if ms == 0:
        return "0"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:g} s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes}m{seconds:02d}s"


class _Scale:
    def __init__(self, total: int) -> None:
        self.total = max(total, 1)

    def pct(self, ms: float) -> str:
        return f"{min(max(ms, 0) / self.total * 100, 100):.3f}"

    def span(self, start: int, end: int) -> str:
        width = min(max(end - start, 0), self.total - min(start, self.total))
        # a bar drawn at its minimum width at the very end must not poke out of its track
        return f"left:min({self.pct(start)}%,calc(100% - 3px));width:{self.pct(width)}%"


def _timeline(view: RunView) -> Timeline | None:
    ends = [view.duration_ms or 0, view.last_ms]
    for node in view.nodes.values():
        ends.append(node.end_ms or 0)
    scale = _Scale(max(ends))
    order = sorted(
        enumerate(view.nodes.values()),
        key=lambda p: (p[1].start_ms is None, p[1].start_ms or 0, p[0]),
    )
    if not order:
        return None
    step = _nice_step(scale.total)
    marks = list(range(0, scale.total + 1, step))
    edge = {0: "first", marks[-1]: "last" if marks[-1] > 0.95 * scale.total else ""}
    ticks = [Tick(scale.pct(t), _axis_label(t), edge.get(t, "")) for t in marks]
    rows = [_timeline_node(node, scale, view.duration_ms) for _, node in order]
    return Timeline(ticks, rows)


def _attempt_bars(
    node_id: str, attempts: list[AttemptView], scale: _Scale, item: int | None
) -> list[Bar]:
    bars = []
    for a in attempts:
        end = a.end_ms if a.end_ms is not None else scale.total
        tip = f"attempt {a.number} · {a.status} · {duration(a.duration_ms or (end - a.start_ms))}"
        if item is not None:
            tip = f"item {item} · " + tip
        if a.error:
            tip += f"\n{a.error_type}: {clip(a.error, 300)}"
        style = scale.span(a.start_ms, end)
        bars.append(Bar(f"bar att st-{a.status}", node_id, a.status, style, tip, item))
    return bars


def _note(text: str, scale: _Scale, start: int, end: int) -> Note | None:
    """A short note beside a bar, on the side with more room; none when neither has room
    (the same text is in the bar's tooltip, the nodes table and the failures list)."""
    after = 100 - end / scale.total * 100
    before = start / scale.total * 100
    room = max(after, before)
    if room < 14:
        return None
    if after >= before:
        where, side = f"left:{scale.pct(end)}%", "after"
    else:
        where, side = f"right:{after:.3f}%", "before"
    return Note(side, f"{where};max-width:calc({room:.1f}% - 12px)", clip(text, 120))


def _timeline_node(node: NodeView, scale: _Scale, run_ms: int | None) -> NodeRow:
    detail = _box_label(node) if node.items else duration(node.duration_ms)
    track = Track()
    if node.start_ms is None:
        track.note = Note("after", "left:0", "not started")
    else:
        end = node.end_ms if node.end_ms is not None else (run_ms or scale.total)
        tip = f"{node.id} · {node.status} · {duration(end - node.start_ms)}"
        span = scale.span(node.start_ms, end)
        track.bars.append(Bar(f"bar span st-{node.status}", node.id, node.status, span, tip))
        track.bars += _attempt_bars(node.id, node.attempts, scale, None)
        if node.items:
            track.marks = _failure_marks(node, scale)
        note = node.reason or _last_error(node)
        if note:
            track.note = _note(note, scale, node.start_ms, end)
    if not node.items:
        return NodeRow(node.id, node.status, detail, track, None)
    items, hidden = _items_drawn(node)
    return NodeRow(
        node.id,
        node.status,
        detail,
        track,
        [_timeline_item(node.id, item, scale) for item in items],
        hidden,
        len(node.items) <= OPEN_UP_TO,
    )


def _last_error(node: NodeView) -> str | None:
    failed = [a for a in node.attempts if a.error]
    if failed and node.status != "succeeded":
        return f"{failed[-1].error_type}: {failed[-1].error}"
    return None


def _failure_marks(node: NodeView, scale: _Scale) -> list[Mark]:
    marks = []
    for item in node.items.views():  # a plain item has no failed attempt
        for a in item.attempts:
            if a.status in ("failed", "timeout") and a.end_ms is not None:
                tip = f"item {item.index}, attempt {a.number}: {a.status}"
                marks.append(Mark(a.status, f"left:{scale.pct(a.end_ms)}%", tip))
                if len(marks) >= MARKS_DRAWN:
                    return marks
    return marks


def _items_drawn(node: NodeView) -> tuple[list[ItemView], int]:
    drawn = node.items.notable_then_lowest(ITEMS_DRAWN)
    return drawn, len(node.items) - len(drawn)


def _timeline_item(node_id: str, item: ItemView, scale: _Scale) -> ItemRow:
    last = item.attempts[-1] if item.attempts else None
    meta = duration(last.duration_ms) if last else ""
    if len(item.attempts) > 1:
        meta = f"{len(item.attempts)} tries · {meta}"
    track = Track(_attempt_bars(node_id, item.attempts, scale, item.index))
    if item.skipped and item.start_ms is not None:
        track.note = _note(item.skipped, scale, item.start_ms, item.end_ms or item.start_ms)
    elif item.skipped:
        track.note = Note("after", "left:0", clip(item.skipped, 90))
    return ItemRow(item.index, item.status, meta, track)


# --- tables -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeTable:
    nodes: list[NodeView]
    phased: bool  # a phase column is shown
    slowest: set[str]
    attempts: dict[str, int]  # every attempt, items' included


def _node_table(view: RunView) -> NodeTable:
    return NodeTable(
        nodes=list(view.nodes.values()),
        phased=any(n.phase for n in view.nodes.values()),
        slowest={n.id for n in view.slowest(1)} if len(view.nodes) > 2 else set(),
        attempts={n.id: n.attempt_count for n in view.nodes.values()},
    )


@dataclass(frozen=True, slots=True)
class FailureRow:
    seq: int
    node: str
    status: str  # of the node
    item: int | None
    attempt: int | None
    error_type: str
    error: str


def _failure(view: RunView, f: Any) -> FailureRow:
    node = view.nodes.get(f.node)
    status = node.status if node else "failed"
    error = clip(f.error, ERROR_CHARS)
    return FailureRow(f.seq, f.node, status, f.item, f.attempt, f.error_type, error)


@dataclass(frozen=True, slots=True)
class Value:
    """A state value as shown: `empty` (null / empty string), `short` or `long` (folded)."""

    shape: str
    text: str  # the whole value (short), the one-line preview (long), or the empty word
    full: str = ""  # long: the value, clipped at VALUE_CHARS
    size: int = 0
    more: int = 0  # long: characters left out


def _value(value: Any) -> Value:
    if value is None or value == "":
        return Value("empty", "null" if value is None else "empty string")
    full = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, indent=2, default=str)
    )
    if len(full) <= VALUE_PREVIEW and "\n" not in full:
        return Value("short", full)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    short = clip(text.replace("\n", " ⏎ "), VALUE_PREVIEW)
    return Value("long", short, full[:VALUE_CHARS], len(full), max(0, len(full) - VALUE_CHARS))


@dataclass(frozen=True, slots=True)
class DiffRow:
    field: str
    before: Value
    after: Value
    writes: Any
    writer: str | None


def _diff_row(d: dict[str, Any]) -> DiffRow:
    return DiffRow(
        d["field"], _value(d.get("before")), _value(d.get("after")), d.get("writes"),
        d.get("last_writer"),
    )  # fmt: skip
