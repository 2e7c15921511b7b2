"""A run as one self-contained HTML file: header, summary cards, graph, timeline, nodes, failures,
state diff.

`render_html(report)` returns the page; `write_html(report, path)` writes it. The page never
reaches the network: CSS, the small vanilla JS and the graph's SVG are inline, drawn here in
Python, and every piece of run text goes through `html.escape`. Large runs stay fast and small:
a node draws at most `ITEMS_DRAWN` item rows in the timeline, the failures list and long state
values are capped, and each says how much it left out.

Stable hooks for tests and scripts: every element standing for a node carries `data-node` and
`data-status`; timeline bars have `class="bar"`; state diff rows have `class="diff-row"` and
`data-field`; the script sets `document.body.dataset.ready = "1"` once it has run.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from html import escape
from itertools import pairwise
from pathlib import Path
from typing import Any

from evolve import __version__
from evolve.store.queries import Inspection
from evolve.view import AttemptView, ItemView, NodeView, RunView

ITEMS_DRAWN = 500
FAILURES_SHOWN = 200
VALUE_PREVIEW = 90
VALUE_CHARS = 20_000
ERROR_CHARS = 2_000
MARKS_DRAWN = 200
OPEN_UP_TO = 20  # a fan-out this small starts expanded in the timeline


def write_html(report: Inspection, path: Path) -> None:
    """Write the report of one run to `path` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")


def render_html(report: Inspection) -> str:
    """The whole report page of one run, as a string."""
    view = report.view
    title = f"{view.run_id} · {view.experience} · evolve"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style></head>",
        f'<body data-run="{_e(view.run_id)}" data-status="{_e(view.status)}">',
        '<main class="page">',
        _header(report),
        _cards(view),
        _section("Graph", "graph", _graph(view), _graph_legend()),
        _section("Timeline", "timeline", _timeline(view), _timeline_tools(view)),
        _section("Nodes", "nodes", _node_table(view)),
        _section(
            f"Failures <span class=count>{len(view.failures)}</span>", "failures", _failures(view)
        ),
        _section(
            f"State diff <span class=count>{len(report.state_diff)}</span>",
            "state",
            _state_diff(report.state_diff),
        ),
        f"<footer>evolve {_e(__version__)} · {view.events} events · "
        f"a self-contained report: no network needed</footer>",
        "</main>",
        f"<script>{JS}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


# --- small formatting helpers ---------------------------------------------------------------


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, rest = divmod(ms // 1000, 60)
    return f"{minutes}m {rest:02d}s"


def money(cost: float | None) -> str:
    return "—" if cost is None else f"${cost:.4f}"


def _number(n: int) -> str:
    return f"{n:,}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(value: Any, limit: int = VALUE_PREVIEW) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return _clip(text.replace("\n", " ⏎ "), limit)


def _section(title: str, key: str, body: str, tools: str = "") -> str:
    return (
        f'<section class="panel" id="{key}"><div class="panel-head"><h2>{title}</h2>{tools}'
        f"</div>{body}</section>"
    )


def _all_attempts(node: NodeView) -> int:
    return len(node.attempts) + sum(len(i.attempts) for i in node.items.values())


# --- header and cards -------------------------------------------------------------------------


def _header(report: Inspection) -> str:
    view, row = report.view, report.row
    started = (row.get("started_at") or view.started or "")[:19].replace("T", " ")
    tokens = view.tokens_in + view.tokens_out
    facts = [
        ("experience", view.experience),
        ("wall time", duration(view.duration_ms)),
        (
            "tokens",
            f"{_number(view.tokens_in)} in · {_number(view.tokens_out)} out" if tokens else "0",
        ),
        ("cost", money(view.cost_usd)),
        ("started", f"{started} UTC" if started else "—"),
    ]
    if row.get("model"):
        facts.append(("model", row["model"]))
    if row.get("parent_run_id"):
        facts.append(("parent", f"{row['parent_run_id']} ({row.get('parent_node') or '?'})"))
    dl = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
    reason = f'<p class="reason">{_e(view.reason)}</p>' if view.reason else ""
    return (
        f'<header class="top" data-status="{_e(view.status)}">'
        '<div class="eyebrow">evolve · run report</div>'
        f'<h1><span class="run-id">{_e(view.run_id)}</span>'
        f'<span class="badge run-{_e(view.status)}">{_e(view.status)}</span></h1>'
        f'<dl class="facts">{dl}</dl>{reason}</header>'
    )


def _cards(view: RunView) -> str:
    counts = {"succeeded": 0, "failed": 0, "skipped": 0}
    for node in view.nodes.values():
        if node.status in counts:
            counts[node.status] += 1
    items = sum(len(n.items) for n in view.nodes.values())
    items_failed = sum(n.items_failed for n in view.nodes.values())
    cards = [
        ("succeeded", "nodes ok", counts["succeeded"], ""),
        ("failed", "nodes failed", counts["failed"], ""),
        ("skipped", "nodes skipped", counts["skipped"], ""),
        ("retry", "retries", view.retries, ""),
        ("timeout", "timeouts", view.timeouts, ""),
        ("failure", "failures", len(view.failures), ""),
        ("items", "items", items, f"{_number(items_failed)} failed" if items_failed else ""),
    ]
    unsettled = sum(1 for n in view.nodes.values() if n.status in ("running", "interrupted"))
    if unsettled:
        label = "running" if view.status == "running" else "interrupted"
        cards.insert(3, ("unsettled", label, unsettled, ""))
    html = []
    for key, label, value, note in cards:
        hot = " hot" if value and key in ("failed", "timeout", "failure") else ""
        note_html = f"<small>{_e(note)}</small>" if note and value else ""
        html.append(
            f'<div class="card card-{key}{hot}" data-card="{key}"><span class="card-value">'
            f"{_number(value)}</span><span class=card-label>{_e(label)}</span>{note_html}</div>"
        )
    return f'<section class="cards">{"".join(html)}</section>'


# --- the graph --------------------------------------------------------------------------------

BOX_H = 54
DUMMY_H = 10
GAP_Y = 26
MIN_GAP_X = 64
PAD = 20
CHAR_W = 7.6  # bold 13px sans, roughly
MONO_W = 6.7  # 11px monospace
LABEL_CHARS = 40


@dataclass(slots=True)
class _Slot:
    key: str  # a node id, or "\0edge-index:layer" for a dummy on a long edge
    layer: int
    dummy: bool
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0


def _layers(ids: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering: a node sits one layer right of its furthest predecessor. Nodes in
    a cycle (a graph that should not exist) are placed after what is known of them."""
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for a, b in edges:
        preds[b].append(a)
        succs[a].append(b)
    indegree = {i: len(preds[i]) for i in ids}
    layer = {i: 0 for i in ids}
    ready = deque(i for i in ids if indegree[i] == 0)
    seen: set[str] = set()
    while ready:
        current = ready.popleft()
        seen.add(current)
        for nxt in succs[current]:
            layer[nxt] = max(layer[nxt], layer[current] + 1)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    for stuck in (i for i in ids if i not in seen):
        known = [layer[p] + 1 for p in preds[stuck] if p in seen]
        layer[stuck] = max(known, default=0)
    return layer


def _box_label(node: NodeView) -> str:
    if node.items:
        text = f"{len(node.items):,} items"
        if node.items_failed:
            text += f" · {node.items_failed:,} failed"
        return text
    if node.iterations:
        return f"{node.kind} · {node.iterations} iterations"
    return f"{node.kind} · {duration(node.duration_ms)}"


def _graph(view: RunView) -> str:
    ids = list(view.nodes)
    edges = []
    for edge in view.edges:
        a, b = str(edge.get("from")), str(edge.get("to"))
        for end in (a, b):
            if end not in view.nodes and end not in ids:
                ids.append(end)
        edges.append((a, b, edge.get("when")))
    if not ids:
        return '<p class="empty">This run recorded no graph.</p>'
    layer = _layers(ids, [(a, b) for a, b, _ in edges])
    depth = max(layer.values()) + 1

    slots: dict[str, _Slot] = {i: _Slot(i, layer[i], False) for i in ids}
    columns: list[list[_Slot]] = [[] for _ in range(depth)]
    for i in ids:
        columns[layer[i]].append(slots[i])
    chains: list[list[_Slot]] = []  # per edge: source, dummies..., target
    for n, (a, b, _) in enumerate(edges):
        chain = [slots[a]]
        for lay in range(layer[a] + 1, layer[b]):
            dummy = _Slot(f"\0{n}:{lay}", lay, True)
            columns[lay].append(dummy)
            chain.append(dummy)
        chains.append([*chain, slots[b]])
    _order(columns, chains)

    widths = []
    for column in columns:
        longest = max((len(s.key) for s in column if not s.dummy), default=0)
        label = max(
            (len(_box_label(view.nodes[s.key])) for s in column if s.key in view.nodes),
            default=0,
        )
        widths.append(min(260.0, max(150.0, longest * CHAR_W + 44, label * 6.4 + 44)))
    gaps = [MIN_GAP_X] * depth
    for chain, (_, _, when) in zip(chains, edges, strict=True):
        if when and chain[0].layer < chain[1].layer:
            need = len(_clip(f"when {when}", LABEL_CHARS)) * MONO_W + 14 + 96
            gaps[chain[0].layer] = max(gaps[chain[0].layer], need)

    heights = [
        sum(DUMMY_H if s.dummy else BOX_H for s in col) + GAP_Y * max(0, len(col) - 1)
        for col in columns
    ]
    tallest = max(heights)
    x = float(PAD)
    for lay, column in enumerate(columns):
        y = PAD + (tallest - heights[lay]) / 2
        for slot in column:
            slot.x, slot.w = x, widths[lay]
            slot.h = DUMMY_H if slot.dummy else BOX_H
            slot.y = y
            y += slot.h + GAP_Y
        x += widths[lay] + gaps[lay]
    width = x - gaps[-1] + PAD
    height = tallest + 2 * PAD

    svg = [
        f'<svg class="graph" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="graph of {_e(view.experience)}">',
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" '
        'class="arrow-head"/></marker>'
        '<marker id="arrow-muted" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" '
        'class="arrow-head muted"/></marker></defs>',
    ]
    labels = []
    for chain, (a, b, when) in zip(chains, edges, strict=True):
        target = view.nodes.get(b)
        muted = target is None or target.status in ("skipped", "waiting")
        svg.append(
            f'<path class="edge{" muted" if muted else ""}" data-from="{_e(a)}" data-to="{_e(b)}" '
            f'd="{_edge_path(chain)}" marker-end="url(#arrow{"-muted" if muted else ""})"/>'
        )
        if when:
            labels.append(_edge_label(chain, str(when)))
    svg += labels
    for i in ids:
        svg.append(_graph_node(slots[i], view.nodes.get(i)))
    svg.append("</svg>")
    return f'<div class="graph-wrap">{"".join(svg)}</div>'


def _order(columns: list[list[_Slot]], chains: list[list[_Slot]]) -> None:
    """A few barycentre sweeps to untangle crossings (the Sugiyama heuristic)."""
    ups: dict[int, list[_Slot]] = {}
    downs: dict[int, list[_Slot]] = {}
    for chain in chains:
        for a, b in pairwise(chain):
            if a.layer < b.layer:
                ups.setdefault(id(b), []).append(a)
                downs.setdefault(id(a), []).append(b)

    def sweep(indices: range, neighbours: dict[int, list[_Slot]], ref: int) -> None:
        for lay in indices:
            pos = {id(s): n for n, s in enumerate(columns[lay + ref])}
            keys = {}
            for n, slot in enumerate(columns[lay]):
                near = [pos[id(o)] for o in neighbours.get(id(slot), []) if id(o) in pos]
                keys[id(slot)] = sum(near) / len(near) if near else float(n)
            columns[lay].sort(key=lambda slot: keys[id(slot)])

    for _ in range(3):
        sweep(range(1, len(columns)), ups, -1)
        sweep(range(len(columns) - 2, -1, -1), downs, 1)


def _edge_path(chain: list[_Slot]) -> str:
    points: list[tuple[float, float]] = []
    for n, slot in enumerate(chain):
        mid = slot.y + slot.h / 2
        if n > 0:
            points.append((slot.x, mid))
        if n < len(chain) - 1:
            points.append((slot.x + slot.w, mid))
    (x0, y0), *rest = points
    if chain[0].layer >= chain[-1].layer:  # a back edge: loop below the boxes
        (x1, y1) = rest[-1]
        drop = max(y0, y1) + BOX_H
        return (
            f"M{x0:.1f} {y0:.1f}C{x0 + 60:.1f} {drop:.1f} {x1 - 60:.1f} {drop:.1f} "
            f"{x1:.1f} {y1:.1f}"
        )
    d = [f"M{x0:.1f} {y0:.1f}"]
    previous = (x0, y0)
    for n, (x, y) in enumerate(rest):
        px, py = previous
        if n % 2 == 0:  # across a gap between columns
            dx = (x - px) / 2
            d.append(f"C{px + dx:.1f} {py:.1f} {x - dx:.1f} {y:.1f} {x:.1f} {y:.1f}")
        else:  # through a column, along a dummy
            d.append(f"L{x:.1f} {y:.1f}")
        previous = (x, y)
    return "".join(d)


def _edge_label(chain: list[_Slot], when: str) -> str:
    a, b = chain[0], chain[1]
    # on the curve of the first hop, past its middle: edges fanning out of one box have
    # drawn apart by then, so a label sits on its own edge only
    x0, y0, x1, y1 = a.x + a.w, a.y + a.h / 2, b.x, b.y + b.h / 2
    t = 0.62
    x = x0 + (x1 - x0) * (1.5 * t * (1 - t) + t * t * t)  # the cubic of `_edge_path`
    y = y0 + (y1 - y0) * (3 * t * t - 2 * t * t * t)
    text = _clip(f"when {when}", LABEL_CHARS)
    w = len(text) * MONO_W + 14
    return (
        f'<g class="edge-label"><title>{_e("when " + when)}</title>'
        f'<rect x="{x - w / 2:.1f}" y="{y - 10:.1f}" width="{w:.1f}" height="20" rx="10"/>'
        f'<text x="{x:.1f}" y="{y + 3.8:.1f}" text-anchor="middle">{_e(text)}</text></g>'
    )


def _graph_node(slot: _Slot, node: NodeView | None) -> str:
    status = node.status if node else "waiting"
    kind = node.kind if node else "?"
    chars = int((slot.w - 40) / CHAR_W)
    tip = f"{slot.key} · {kind} · {status}"
    if node and node.reason:
        tip += f"\n{node.reason}"
    sub = _box_label(node) if node else "not in this run"
    return (
        f'<g class="node st-{_e(status)} kind-{_e(kind)}" data-node="{_e(slot.key)}" '
        f'data-status="{_e(status)}" transform="translate({slot.x:.1f},{slot.y:.1f})" '
        f'tabindex="0"><title>{_e(tip)}</title>'
        f'<rect class="box" width="{slot.w:.0f}" height="{BOX_H}" rx="10"/>'
        f'<circle class="dot" cx="18" cy="20" r="5"/>'
        f'<text class="name" x="30" y="24">{_e(_clip(slot.key, chars))}</text>'
        f'<text class="sub" x="30" y="41">{_e(_clip(sub, int((slot.w - 40) / 6.4)))}</text></g>'
    )


def _graph_legend() -> str:
    keys = {
        "succeeded": "succeeded",
        "failed": "failed",
        "skipped": "skipped",
        "running": "running / interrupted",
        "waiting": "not started",
    }
    return (
        '<div class="legend">'
        + "".join(f'<span class="key st-{k}"><i></i>{v}</span>' for k, v in keys.items())
        + "</div>"
    )


# --- the timeline -----------------------------------------------------------------------------


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


def _timeline(view: RunView) -> str:
    ends = [view.duration_ms or 0, view.last_ms]
    for node in view.nodes.values():
        ends.append(node.end_ms or 0)
    scale = _Scale(max(ends))
    order = sorted(
        enumerate(view.nodes.values()),
        key=lambda p: (p[1].start_ms is None, p[1].start_ms or 0, p[0]),
    )
    if not order:
        return '<p class="empty">No node ran.</p>'
    step = _nice_step(scale.total)
    ticks = list(range(0, scale.total + 1, step))
    grid = "".join(f'<i style="left:{scale.pct(t)}%"></i>' for t in ticks)
    edge = {0: " first", ticks[-1]: " last" if ticks[-1] > 0.95 * scale.total else ""}
    axis = "".join(
        f'<span class="tick{edge.get(t, "")}" style="left:{scale.pct(t)}%">'
        f"{_e(_axis_label(t))}</span>"
        for t in ticks
    )
    rows = [_timeline_node(node, scale, view.duration_ms) for _, node in order]
    return (
        '<div class="timeline">'
        f'<div class="tl-grid" aria-hidden="true">{grid}</div>'
        f'<div class="tl-axis"><span class="tl-label muted">node</span><span class="tl-track">'
        f"{axis}</span></div>"
        f"{''.join(rows)}</div>"
    )


def _attempt_bars(
    node_id: str, attempts: list[AttemptView], scale: _Scale, item: int | None
) -> list[str]:
    bars = []
    for a in attempts:
        end = a.end_ms if a.end_ms is not None else scale.total
        tip = f"attempt {a.number} · {a.status} · {duration(a.duration_ms or (end - a.start_ms))}"
        if item is not None:
            tip = f"item {item} · " + tip
        if a.error:
            tip += f"\n{a.error_type}: {_clip(a.error, 300)}"
        item_attr = "" if item is None else f' data-item="{item}"'
        bars.append(
            f'<span class="bar att st-{_e(a.status)}" data-node="{_e(node_id)}"{item_attr} '
            f'data-status="{_e(a.status)}" style="{scale.span(a.start_ms, end)}" '
            f'title="{_e(tip)}"></span>'
        )
    return bars


def _note(text: str, scale: _Scale, start: int, end: int) -> str:
    """A short note beside a bar, on the side with more room; none when neither has room
    (the same text is in the bar's tooltip, the nodes table and the failures list)."""
    after = 100 - end / scale.total * 100
    before = start / scale.total * 100
    room = max(after, before)
    if room < 14:
        return ""
    if after >= before:
        where, side = f"left:{scale.pct(end)}%", "after"
    else:
        where, side = f"right:{after:.3f}%", "before"
    return (
        f'<span class="note {side}" style="{where};max-width:calc({room:.1f}% - 12px)">'
        f"{_e(_clip(text, 120))}</span>"
    )


def _timeline_node(node: NodeView, scale: _Scale, run_ms: int | None) -> str:
    nid, status = _e(node.id), _e(node.status)
    detail = _box_label(node) if node.items else duration(node.duration_ms)
    label = (
        f'<span class="tl-label"><i class="dot st-{status}"></i>'
        f'<span class="tl-name" title="{nid}">{nid}</span>'
        f'<span class="tl-meta">{_e(detail)}</span></span>'
    )
    track = []
    if node.start_ms is None:
        track.append('<span class="note after" style="left:0">not started</span>')
    else:
        end = node.end_ms if node.end_ms is not None else (run_ms or scale.total)
        tip = f"{node.id} · {node.status} · {duration(end - node.start_ms)}"
        track.append(
            f'<span class="bar span st-{status}" data-node="{nid}" data-status="{status}" '
            f'style="{scale.span(node.start_ms, end)}" title="{_e(tip)}"></span>'
        )
        track += _attempt_bars(node.id, node.attempts, scale, None)
        if node.items:
            track += _failure_marks(node, scale)
        note = node.reason or _last_error(node)
        if note:
            track.append(_note(note, scale, node.start_ms, end))
    row = (
        f'<div class="tl-row" data-node="{nid}" data-status="{status}">{label}'
        f'<span class="tl-track">{"".join(track)}</span></div>'
    )
    if not node.items:
        return row
    items, hidden = _items_drawn(node)
    inner = [_timeline_item(node.id, item, scale) for item in items]
    opened = " open" if len(node.items) <= OPEN_UP_TO else ""
    if hidden:
        inner.append(
            f'<div class="tl-more">… {hidden:,} more items not drawn '
            f"(the {ITEMS_DRAWN} drawn are failures and retries first, then in order)</div>"
        )
    return (
        f'<details class="tl-group" data-node="{nid}" data-status="{status}"{opened}>'
        f'<summary class="tl-row" data-node="{nid}" data-status="{status}">{label}'
        f'<span class="tl-track">{"".join(track)}</span></summary>'
        f'<div class="tl-items">{"".join(inner)}</div></details>'
    )


def _last_error(node: NodeView) -> str | None:
    failed = [a for a in node.attempts if a.error]
    if failed and node.status != "succeeded":
        return f"{failed[-1].error_type}: {failed[-1].error}"
    return None


def _failure_marks(node: NodeView, scale: _Scale) -> list[str]:
    marks = []
    for item in node.items.values():
        for a in item.attempts:
            if a.status in ("failed", "timeout") and a.end_ms is not None:
                marks.append(
                    f'<span class="mark st-{a.status}" style="left:{scale.pct(a.end_ms)}%" '
                    f'title="item {item.index}, attempt {a.number}: {a.status}"></span>'
                )
                if len(marks) >= MARKS_DRAWN:
                    return marks
    return marks


def _items_drawn(node: NodeView) -> tuple[list[ItemView], int]:
    items = node.items
    if len(items) <= ITEMS_DRAWN:
        return sorted(items.values(), key=lambda i: i.index), 0
    notable = [i for i in items.values() if i.status != "succeeded" or len(i.attempts) > 1]
    notable = sorted(notable, key=lambda i: i.index)[:ITEMS_DRAWN]
    picked = {i.index for i in notable}
    for index in sorted(items):
        if len(picked) >= ITEMS_DRAWN:
            break
        picked.add(index)
    return [items[k] for k in sorted(picked)], len(items) - len(picked)


def _timeline_item(node_id: str, item: ItemView, scale: _Scale) -> str:
    status = _e(item.status)
    last = item.attempts[-1] if item.attempts else None
    meta = duration(last.duration_ms) if last else ""
    if len(item.attempts) > 1:
        meta = f"{len(item.attempts)} tries · {meta}"
    track = _attempt_bars(node_id, item.attempts, scale, item.index)
    if item.skipped and item.start_ms is not None:
        track.append(_note(item.skipped, scale, item.start_ms, item.end_ms or item.start_ms))
    elif item.skipped:
        skipped = _e(_clip(item.skipped, 90))
        track.append(f'<span class="note after" style="left:0">{skipped}</span>')
    return (
        f'<div class="tl-row tl-item" data-item="{item.index}" data-status="{status}">'
        f'<span class="tl-label"><i class="dot st-{status}"></i>'
        f'<span class="tl-name">item {item.index}</span><span class="tl-meta">{_e(meta)}</span>'
        f'</span><span class="tl-track">{"".join(track)}</span></div>'
    )


def _timeline_tools(view: RunView) -> str:
    if not any(n.items for n in view.nodes.values()):
        return ""
    return (
        '<div class="tools"><button type="button" data-action="expand">Expand items</button>'
        '<button type="button" data-action="collapse">Collapse</button></div>'
    )


# --- tables -----------------------------------------------------------------------------------


def _node_table(view: RunView) -> str:
    phased = any(n.phase for n in view.nodes.values())
    head = (
        f"<tr><th>node</th><th>kind</th>{'<th>phase</th>' if phased else ''}<th>status</th>"
        "<th class=num>start</th>"
        "<th class=num>duration</th><th class=num>items</th><th class=num>attempts</th>"
        "<th class=num>retries</th><th class=num>timeouts</th><th class=num>tokens</th>"
        "<th class=num>cost</th></tr>"
    )
    slowest = {n.id for n in view.slowest(1)} if len(view.nodes) > 2 else set()
    rows = []
    for node in view.nodes.values():
        nid, status = _e(node.id), _e(node.status)
        items = ""
        if node.items:
            items = f"{len(node.items):,}"
            if node.items_failed:
                items += f' <span class="bad">({node.items_failed:,} failed)</span>'
        tokens = node.tokens_in + node.tokens_out
        reason = f'<div class="why">{_e(_clip(node.reason, 160))}</div>' if node.reason else ""
        slow = ' <span class="tag">slowest</span>' if node.id in slowest else ""
        phase = f"<td>{_e(node.phase or '')}</td>" if phased else ""
        rows.append(
            f'<tr class="node-row" data-node="{nid}" data-status="{status}">'
            f"<td><code>{nid}</code>{slow}{reason}</td><td class=kind>{_e(node.kind)}"
            f"{' <span class=tag>for_each</span>' if node.for_each else ''}</td>"
            f"{phase}"
            f'<td><span class="pill st-{status}">{status}</span></td>'
            f"<td class=num>{duration(node.start_ms)}</td>"
            f"<td class=num>{duration(node.duration_ms)}</td><td class=num>{items}</td>"
            f"<td class=num>{_all_attempts(node):,}</td>"
            f"<td class=num>{node.retries or ''}</td><td class=num>{node.timeouts or ''}</td>"
            f'<td class=num title="{node.tokens_in:,} in, {node.tokens_out:,} out">'
            f"{_number(tokens) if tokens else ''}</td>"
            f"<td class=num>{money(node.cost_usd) if node.cost_usd is not None else ''}</td></tr>"
        )
    return f'<div class="table-wrap"><table class="nodes"><thead>{head}</thead><tbody>' + (
        "".join(rows) + "</tbody></table></div>"
    )


def _failures(view: RunView) -> str:
    if not view.failures:
        return '<p class="empty">No failures.</p>'
    rows = []
    for f in view.failures[:FAILURES_SHOWN]:
        node = view.nodes.get(f.node)
        status = node.status if node else "failed"
        error = _clip(f.error, ERROR_CHARS)
        rows.append(
            f'<li class="failure" data-node="{_e(f.node)}" data-status="{_e(status)}" '
            f'data-seq="{f.seq}"><span class="seq">#{f.seq}</span>'
            f'<div class="failure-body"><div class="failure-head"><code>{_e(f.node)}</code>'
            + (f'<span class="muted">item {f.item}</span>' if f.item is not None else "")
            + (f'<span class="muted">attempt {f.attempt}</span>' if f.attempt else "")
            + f'<span class="pill st-{"timeout" if f.error_type == "timeout" else "failed"}">'
            f"{_e(f.error_type)}</span></div>"
            f'<pre class="error">{_e(error)}</pre></div></li>'
        )
    more = len(view.failures) - FAILURES_SHOWN
    tail = f'<p class="muted">… {more:,} more failures not listed</p>' if more > 0 else ""
    return f'<ol class="failures">{"".join(rows)}</ol>{tail}'


def _value(value: Any) -> str:
    if value is None or value == "":
        return f'<span class="muted">{"null" if value is None else "empty string"}</span>'
    full = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, indent=2, default=str)
    )
    short = _one_line(value)
    if len(full) <= VALUE_PREVIEW and "\n" not in full:
        return f'<code class="val">{_e(full)}</code>'
    clipped = full[:VALUE_CHARS]
    note = (
        f'\n<span class="muted">… {len(full) - VALUE_CHARS:,} more characters</span>'
        if len(full) > VALUE_CHARS
        else ""
    )
    return (
        f'<details class="val-long"><summary><code class="val">{_e(short)}</code>'
        f'<span class="size">{len(full):,} chars</span></summary>'
        f"<pre>{_e(clipped)}{note}</pre></details>"
    )


def _state_diff(diff: list[dict[str, Any]]) -> str:
    if not diff:
        return '<p class="empty">The run wrote no state.</p>'
    rows = []
    for d in diff:
        writes = d.get("writes")
        writer = d.get("last_writer")
        rows.append(
            f'<tr class="diff-row" data-field="{_e(d["field"])}"><td><code>{_e(d["field"])}</code>'
            f"</td><td class=before>{_value(d.get('before'))}</td>"
            f"<td class=after>{_value(d.get('after'))}</td>"
            f"<td class=num>{_e(writes) if writes is not None else ''}</td>"
            f"<td>{f'<code>{_e(writer)}</code>' if writer else ''}</td></tr>"
        )
    return (
        '<div class="table-wrap"><table class="diff"><thead><tr><th>field</th><th>before</th>'
        "<th>after</th><th class=num>writes</th><th>last writer</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


# --- style and script -------------------------------------------------------------------------

CSS = """
:root{--bg:#f6f7f9;--panel:#fff;--ink:#0f172a;--ink2:#475569;--muted:#64748b;--line:#e2e8f0;
--line2:#eef2f6;--accent:#4f46e5;
--ok:#16a34a;--ok-bg:#dcfce7;--bad:#dc2626;--bad-bg:#fee2e2;--to:#c2410c;--to-bg:#ffedd5;
--skip:#94a3b8;--skip-bg:#f1f5f9;--run:#d97706;--run-bg:#fef3c7;--wait:#cbd5e1;--wait-bg:#f8fafc;
--label:232px;--radius:12px;--shadow:0 1px 2px rgba(15,23,42,.06),0 1px 8px rgba(15,23,42,.04);
--sans:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","Liberation Sans",Arial,
sans-serif;--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
@media (prefers-color-scheme:dark){:root{--bg:#0b1020;--panel:#131a2b;--ink:#e2e8f0;
--ink2:#cbd5e1;--muted:#94a3b8;--line:#26314a;--line2:#1c2538;--accent:#818cf8;
--ok:#22c55e;--ok-bg:#12361f;--bad:#f87171;--bad-bg:#3f1618;--to:#fb923c;--to-bg:#3b1f0c;
--skip:#64748b;--skip-bg:#1e2637;--run:#fbbf24;--run-bg:#3a2a07;--wait:#475569;
--wait-bg:#172033;--shadow:none}}
*{box-sizing:border-box}
html{background:var(--bg)}
body{margin:0;color:var(--ink);font:14px/1.5 var(--sans);-webkit-font-smoothing:antialiased}
.page{max-width:1240px;margin:0 auto;padding:28px 28px 40px}
code,pre,.val{font-family:var(--mono);font-size:12.5px}
.muted{color:var(--muted)}
.top{margin-bottom:18px}
.eyebrow{color:var(--muted);font-size:12px;letter-spacing:.08em;text-transform:uppercase;
font-weight:600}
h1{display:flex;align-items:center;gap:12px;margin:4px 0 10px;font-size:28px;
letter-spacing:-.01em}
.run-id{font-family:var(--mono);font-weight:700}
.badge{font:600 13px/1 var(--sans);padding:6px 12px;border-radius:999px;text-transform:uppercase;
letter-spacing:.05em}
.run-success{background:var(--ok-bg);color:var(--ok)}
.run-failed{background:var(--bad-bg);color:var(--bad)}
.run-partial,.run-interrupted,.run-running{background:var(--run-bg);color:var(--run)}
.facts{display:flex;flex-wrap:wrap;gap:8px 32px;margin:0}
.facts div{min-width:0}
.facts dt{color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.06em}
.facts dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums}
.reason{margin:12px 0 0;padding:10px 14px;border-left:3px solid var(--run);
background:var(--panel);border-radius:0 8px 8px 0;box-shadow:var(--shadow);color:var(--ink2)}
.top[data-status=failed] .reason{border-color:var(--bad)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(118px,1fr));gap:12px;
margin:20px 0}
.card{background:var(--panel);border:1px solid var(--line);border-radius:var(--radius);
padding:14px 16px;box-shadow:var(--shadow);display:flex;flex-direction:column;
border-top:3px solid var(--line)}
.card-value{font-size:26px;font-weight:700;line-height:1.1;font-variant-numeric:tabular-nums}
.card-label{color:var(--muted);font-size:12.5px;margin-top:2px}
.card small{color:var(--bad);font-size:12px}
.card-succeeded{border-top-color:var(--ok)}
.card-failed.hot,.card-failure.hot{border-top-color:var(--bad)}
.card-failed.hot .card-value,.card-failure.hot .card-value{color:var(--bad)}
.card-timeout.hot{border-top-color:var(--to)}.card-timeout.hot .card-value{color:var(--to)}
.card-skipped{border-top-color:var(--skip)}
.card-retry{border-top-color:var(--run)}
.card-unsettled{border-top-color:var(--run)}.card-unsettled .card-value{color:var(--run)}
.card-items{border-top-color:var(--accent)}
.panel{background:var(--panel);border:1px solid var(--line);border-radius:var(--radius);
box-shadow:var(--shadow);padding:18px 20px 20px;margin:16px 0;min-width:0}
.panel-head{display:flex;align-items:center;justify-content:space-between;gap:16px;
margin-bottom:14px;flex-wrap:wrap}
h2{margin:0;font-size:16px;letter-spacing:-.005em}
h2 .count{display:inline-block;min-width:22px;padding:1px 8px;margin-left:6px;border-radius:999px;
background:var(--line2);color:var(--ink2);font-size:12px;text-align:center;font-weight:600}
.empty{color:var(--muted);margin:0}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;font-size:12px;color:var(--muted)}
.legend .key{display:inline-flex;align-items:center;gap:6px}
.legend i{width:12px;height:12px;border-radius:4px;border:1.5px solid var(--c);background:var(--b)}
.st-succeeded{--c:var(--ok);--b:var(--ok-bg)}
.st-failed{--c:var(--bad);--b:var(--bad-bg)}
.st-timeout{--c:var(--to);--b:var(--to-bg)}
.st-skipped{--c:var(--skip);--b:var(--skip-bg)}
.st-running,.st-interrupted{--c:var(--run);--b:var(--run-bg)}
.st-waiting{--c:var(--wait);--b:var(--wait-bg)}
.graph-wrap{overflow-x:auto;padding:4px 0}
svg.graph{display:block;margin:0 auto;max-width:none;font-family:var(--sans)}
.node .box{fill:var(--b);stroke:var(--c);stroke-width:1.5}
.node.st-skipped .box,.node.st-waiting .box{stroke-dasharray:5 4}
.node .dot{fill:var(--c)}
.node .name{font-weight:700;font-size:13px;fill:var(--ink)}
.node .sub{font-size:11.5px;fill:var(--ink2)}
.node.kind-pipeline .box,.node.kind-loop .box{stroke-width:2.5}
.node:hover .box,.node.hl .box,.node:focus .box{stroke-width:3}
.node{cursor:pointer;outline:none}
.edge{fill:none;stroke:#94a3b8;stroke-width:1.6}
.edge.muted{stroke:var(--skip);stroke-dasharray:5 4;opacity:.75}
.arrow-head{fill:#94a3b8}.arrow-head.muted{fill:var(--skip)}
.edge-label rect{fill:var(--panel);stroke:var(--line)}
.edge-label text{font:11px var(--mono);fill:var(--ink2)}
.tools{display:flex;gap:8px}
button{font:600 12.5px var(--sans);color:var(--ink2);background:var(--panel);
border:1px solid var(--line);border-radius:8px;padding:5px 12px;cursor:pointer}
button:hover{border-color:var(--accent);color:var(--accent)}
.timeline{position:relative;font-size:13px}
.tl-grid{position:absolute;left:var(--label);right:12px;top:0;bottom:0;pointer-events:none}
.tl-grid i{position:absolute;top:0;bottom:0;border-left:1px dashed var(--line)}
.tl-row,.tl-axis{display:grid;grid-template-columns:var(--label) 1fr;align-items:center;
min-height:34px;padding-right:12px}
.tl-axis{min-height:26px;border-bottom:1px solid var(--line);margin-bottom:4px}
.tl-axis .tl-label{font-size:11.5px;text-transform:uppercase;letter-spacing:.06em}
.tl-axis .tl-track{height:26px}
.tick{position:absolute;top:5px;transform:translateX(-50%);font-size:11.5px;color:var(--muted);
white-space:nowrap;font-variant-numeric:tabular-nums}
.tick.first{transform:none}.tick.last{transform:translateX(-100%)}
.tl-row{border-bottom:1px solid var(--line2)}
.tl-row:hover,.tl-row.hl{background:var(--line2)}
.tl-label{display:flex;align-items:center;gap:8px;min-width:0;padding:0 12px 0 6px}
.tl-name{font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tl-meta{margin-left:auto;color:var(--muted);font-size:12px;white-space:nowrap;
font-variant-numeric:tabular-nums}
.dot{flex:none;width:9px;height:9px;border-radius:50%;background:var(--c)}
.tl-track{display:block;position:relative;height:34px}
.bar{position:absolute;top:9px;height:16px;min-width:3px;border-radius:4px}
.bar.span{background:var(--b);border:1px solid var(--c);opacity:.9}
.bar.att{top:12px;height:10px;background:var(--c);border-radius:3px;z-index:1}
.bar.st-timeout{background:repeating-linear-gradient(135deg,var(--to) 0 4px,var(--to-bg) 4px 7px)}
.bar.st-interrupted,.bar.st-running{background:repeating-linear-gradient(135deg,var(--run) 0 4px,
var(--run-bg) 4px 7px)}
.mark{position:absolute;top:6px;width:2px;height:22px;margin-left:-1px;background:var(--c);
z-index:2;border-radius:1px}
.note{position:absolute;top:8px;font-size:12px;color:var(--muted);white-space:nowrap;
overflow:hidden;text-overflow:ellipsis}
.note.after{margin-left:8px}.note.before{margin-right:8px;text-align:right}
details.tl-group>summary{list-style:none;cursor:pointer}
details.tl-group>summary::-webkit-details-marker{display:none}
details.tl-group>summary .tl-label::before{content:"";flex:none;width:7px;height:7px;
margin:0 1px 0 -2px;border-right:2px solid var(--muted);border-bottom:2px solid var(--muted);
transform:rotate(-45deg);transition:transform .15s}
details.tl-group[open]>summary .tl-label::before{transform:rotate(45deg)}
.tl-items{background:var(--line2);border-bottom:1px solid var(--line)}
.tl-item{min-height:22px;font-size:12px;border-bottom:0}
.tl-item .tl-label{padding-left:30px}
.tl-item .tl-name{font-weight:500;color:var(--ink2)}
.tl-item .tl-track{height:22px}
.tl-item .bar.att{top:6px;height:10px}
.tl-item .note{top:3px}
.tl-more{padding:6px 12px 8px 30px;color:var(--muted);font-size:12px}
.table-wrap{overflow-x:auto}
table{width:100%;border-collapse:collapse;font-size:13px}
th{text-align:left;font-size:11.5px;font-weight:600;color:var(--muted);text-transform:uppercase;
letter-spacing:.05em;padding:0 10px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
td{padding:9px 10px;border-bottom:1px solid var(--line2);vertical-align:top}
tr:last-child td{border-bottom:0}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.node-row:hover,tr.node-row.hl{background:var(--line2)}
.pill{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600;
background:var(--b);color:var(--c);white-space:nowrap}
.tag{font-size:11px;color:var(--accent);border:1px solid currentColor;border-radius:999px;
padding:0 6px;margin-left:6px}
.kind{white-space:nowrap}
.why{color:var(--muted);font-size:12px;margin-top:2px}
.bad{color:var(--bad)}
.failures{list-style:none;margin:0;padding:0}
.failure{display:flex;gap:14px;padding:12px 0;border-bottom:1px solid var(--line2)}
.failure:first-child{padding-top:0}.failure:last-child{border-bottom:0;padding-bottom:0}
.seq{flex:none;min-width:48px;font:600 12.5px var(--mono);color:var(--muted);padding-top:2px}
.failure-body{min-width:0;flex:1}
.failure-head{display:flex;align-items:center;gap:10px;flex-wrap:wrap}
.failure-head code{font-weight:700;font-size:13px}
pre{margin:0;white-space:pre-wrap;word-break:break-word}
pre.error{margin-top:6px;padding:8px 12px;background:var(--bad-bg);color:var(--ink);
border-radius:8px;max-height:220px;overflow:auto}
table.diff td{max-width:0}
table.diff td:first-child{width:16%}
table.diff td.before,table.diff td.after{width:32%}
table.diff td:nth-child(4){width:70px;max-width:none}
table.diff td:last-child{width:14%}
.val{display:inline-block;max-width:100%;padding:1px 6px;border-radius:5px;white-space:pre-wrap;
word-break:break-word}
td.before .val{background:var(--bad-bg)}
td.after .val{background:var(--ok-bg)}
.val-long summary{cursor:pointer;display:flex;gap:8px;align-items:baseline;min-width:0}
.val-long summary .val{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.size{flex:none;font-size:11px;color:var(--muted)}
.val-long pre{margin-top:6px;padding:8px 10px;border:1px solid var(--line);border-radius:8px;
max-height:320px;overflow:auto}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
@media (max-width:760px){:root{--label:150px}.page{padding:16px}}
@media print{.tools{display:none}details.tl-group .tl-items{display:block}}
"""

JS = """
(function () {
  function each(selector, fn) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), fn);
  }
  function byNode(id) {
    return '[data-node="' + (window.CSS && CSS.escape ? CSS.escape(id) : id) + '"]';
  }
  each("button[data-action]", function (button) {
    button.addEventListener("click", function () {
      var open = button.dataset.action === "expand";
      each("details.tl-group", function (d) { d.open = open; });
    });
  });
  var lit = null;
  function light(id) {
    if (id === lit) return;
    each(".hl", function (el) { el.classList.remove("hl"); });
    lit = id;
    if (id === null) return;
    var q = byNode(id);
    each(".node" + q + ", .tl-row" + q + ", .node-row" + q, function (el) {
      el.classList.add("hl");
    });
  }
  document.addEventListener("mouseover", function (event) {
    var el = event.target.closest && event.target.closest("[data-node]");
    light(el ? el.dataset.node : null);
  });
  each("svg.graph .node", function (node) {
    function go() {
      var row = document.querySelector(".timeline " + byNode(node.dataset.node));
      if (!row) return;
      if (row.tagName === "DETAILS") row.open = true;
      row.scrollIntoView({ behavior: "smooth", block: "center" });
    }
    node.addEventListener("click", go);
    node.addEventListener("keydown", function (event) { if (event.key === "Enter") go(); });
  });
  document.body.dataset.ready = "1";
})();
"""
