"""Where the boxes and arrows of a graph go: a small layered (Sugiyama-style) layout, left to right.

`layout_graph(ids, edges, subtitles)` places one box per id and one path per edge, and returns
plain geometry (a `Layout`): no markup, no colours. Boxes sit in columns by longest path from the
sources; a long edge passes through invisible dummies so it bends around the columns it crosses;
a few barycentre sweeps order each column to untangle crossings; an edge that goes back (a cycle)
loops below the boxes. A box is as wide as its name and its subtitle need (within bounds), and a
gap between columns is wide enough for the label of an edge that leaves it (a `when`, say).

Ids named by an edge but missing from `ids` are added after them, in edge order. The layout is
deterministic: the same graph always gives the same figures.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

BOX_H = 54
DUMMY_H = 10
GAP_Y = 26
MIN_GAP_X = 64
PAD = 20
CHAR_W = 7.6  # bold 13px sans, roughly
SUB_CHAR_W = 6.4  # 11.5px sans
MONO_W = 6.7  # 11px monospace
LABEL_CHARS = 40
MIN_W = 150.0
MAX_W = 260.0


@dataclass(frozen=True, slots=True)
class Box:
    """A node's box; `name_chars`/`sub_chars` say how many characters of its two lines fit."""

    key: str
    x: float
    y: float
    w: float
    h: float

    @property
    def name_chars(self) -> int:
        return int((self.w - 40) / CHAR_W)

    @property
    def sub_chars(self) -> int:
        return int((self.w - 40) / SUB_CHAR_W)


@dataclass(frozen=True, slots=True)
class EdgeLabel:
    """An edge's label (its `when`), in a pill on its first hop: `text` is clipped, `full` not."""

    x: float
    y: float
    w: float
    text: str
    full: str


@dataclass(frozen=True, slots=True)
class Line:
    """An edge drawn as an SVG path (`d`), with its label if it has a condition."""

    source: str
    target: str
    d: str
    label: EdgeLabel | None


@dataclass(slots=True)
class Layout:
    width: float
    height: float
    boxes: dict[str, Box] = field(default_factory=dict)  # in the order of `ids`
    lines: list[Line] = field(default_factory=list)  # in the order of `edges`


@dataclass(slots=True)
class _Slot:
    key: str  # a node id, or "\0edge-index:layer" for a dummy on a long edge
    layer: int
    dummy: bool
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def layout_graph(
    ids: Sequence[str],
    edges: Sequence[tuple[str, str, str | None]],
    subtitles: Mapping[str, str] | None = None,
) -> Layout:
    """Place `ids` (boxes) and `edges` (source, target, label or None) left to right.

    `subtitles` holds the second line of each box; it only widens boxes, it is not drawn here.
    An empty graph is a `Layout` with no boxes and no size.
    """
    subtitles = subtitles or {}
    ids = list(ids)
    for a, b, _ in edges:
        for end in (a, b):
            if end not in ids:
                ids.append(end)
    if not ids:
        return Layout(0.0, 0.0)
    layer = _layers(ids, [(a, b) for a, b, _ in edges])
    depth = max(layer.values()) + 1

    slots = {i: _Slot(i, layer[i], False) for i in ids}
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

    widths = [_column_width(column, subtitles) for column in columns]
    gaps = [float(MIN_GAP_X)] * depth
    for chain, (_, _, label) in zip(chains, edges, strict=True):
        if label and chain[0].layer < chain[1].layer:
            need = len(clip(label, LABEL_CHARS)) * MONO_W + 14 + 96
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

    result = Layout(width=x - gaps[-1] + PAD, height=tallest + 2 * PAD)
    for i in ids:
        s = slots[i]
        result.boxes[i] = Box(i, s.x, s.y, s.w, s.h)
    for chain, (a, b, label) in zip(chains, edges, strict=True):
        pill = _edge_label(chain, label) if label else None
        result.lines.append(Line(a, b, _edge_path(chain), pill))
    return result


def _column_width(column: list[_Slot], subtitles: Mapping[str, str]) -> float:
    boxes = [s.key for s in column if not s.dummy]
    longest = max((len(k) for k in boxes), default=0)
    sub = max((len(subtitles[k]) for k in boxes if k in subtitles), default=0)
    return min(MAX_W, max(MIN_W, longest * CHAR_W + 44, sub * SUB_CHAR_W + 44))


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


def _edge_label(chain: list[_Slot], label: str) -> EdgeLabel:
    a, b = chain[0], chain[1]
    # on the curve of the first hop, past its middle: edges fanning out of one box have
    # drawn apart by then, so a label sits on its own edge only
    x0, y0, x1, y1 = a.x + a.w, a.y + a.h / 2, b.x, b.y + b.h / 2
    t = 0.62
    x = x0 + (x1 - x0) * (1.5 * t * (1 - t) + t * t * t)  # the cubic of `_edge_path`
    y = y0 + (y1 - y0) * (3 * t * t - 2 * t * t * t)
    text = clip(label, LABEL_CHARS)
    return EdgeLabel(x, y, len(text) * MONO_W + 14, text, label)
