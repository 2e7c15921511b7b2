"""An experience's graph for people, without running it: as Mermaid text or as an HTML page.

`mermaid(experience)`: a Mermaid flowchart, phases as subgraphs, pipelines and loops as boxes of
their own, `for_each` and `when` written on the nodes and edges they belong to.

`graph_page(experience)`: one self-contained HTML page (the run report's layout, templates, CSS
and JS): the graph drawn left to right, one box per node, pipeline and loop, each box coloured by
kind; an edge's `when` on the edge; a pipeline's stages and a loop's body joined to it by dashed
edges; then the nodes and the state fields as tables. Every element standing for a node carries
`data-node` and `data-kind`; edges carry `data-from`/`data-to` (and class `inner` for the dashed
ones); the script sets `document.body.dataset.ready = "1"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from evolve import __version__
from evolve.report.layout import layout_graph
from evolve.report.templating import GraphNode, render_page
from evolve.spec.model import Experience, Node

_SHAPES = {
    "tool": ('["', '"]'),
    "agent": ('(["', '"])'),
    "dataset": ('[("', '")]'),
    "experience": ('[["', '"]]'),
    "skill": ('{{"', '"}}'),
    "cli-agent": ('[/"', '"/]'),
}


def _text(value: str) -> str:
    """Escape text for a quoted Mermaid label."""
    return (
        value.replace("&", "#amp;")
        .replace('"', "#quot;")
        .replace("|", "#124;")
        .replace("<", "#lt;")
        .replace(">", "#gt;")
    )


def _id(step: str) -> str:
    """A Mermaid id for a step: prefixed, since ids such as `end` or `style` are Mermaid words."""
    return f"s_{step}"


def _node(node: Node) -> str:
    label = f"<b>{node.id}</b><br/>{node.kind}"
    if node.for_each:
        cap = f", ≤{node.for_each.concurrency}" if node.for_each.concurrency else ""
        label += f"<br/>for_each {_text(node.for_each.source.source)}{cap}"
    if node.frozen:
        label += "<br/>frozen"
    opening, closing = _SHAPES[node.kind]
    return f"{_id(node.id)}{opening}{label}{closing}"


def mermaid(experience: Experience) -> str:
    """The Mermaid `flowchart` source of `experience`."""
    lines = ["flowchart TD"]
    owned: set[str] = set()
    groups: list[tuple[str, str, list[str]]] = []
    for pipe in experience.pipelines.values():
        title = f"pipeline {pipe.id}: each of {_text(pipe.items.source)}"
        groups.append((pipe.id, title, list(pipe.stages)))
        owned |= set(pipe.stages)
    for loop in experience.loops.values():
        title = f"loop {loop.id}: until {_text(loop.until.source)}, ≤{loop.max_iters} times"
        groups.append((loop.id, title, [loop.body]))
        owned.add(loop.body)

    phases = {p.id: [] for p in experience.phases}
    loose: list[str] = []
    for node in experience.nodes.values():
        if node.id not in owned:
            (phases.setdefault(node.phase, []) if node.phase else loose).append(_node(node))
    for phase, members in phases.items():
        if members:
            lines.append(f'  subgraph phase_{phase}["{phase}"]')
            lines += [f"    {m}" for m in members]
            lines.append("  end")
    lines += [f"  {m}" for m in loose]
    for ident, title, members in groups:
        lines.append(f'  subgraph {_id(ident)}["{title}"]')
        lines += [f"    {_node(experience.nodes[m])}" for m in members]
        for first, second in pairwise(members):
            lines.append(f"    {_id(first)} --> {_id(second)}")
        lines.append("  end")
    for edge in experience.edges:
        arrow = f'-->|"when {_text(edge.when.source)}"|' if edge.when else "-->"
        lines.append(f"  {_id(edge.source)} {arrow} {_id(edge.target)}")
    return "\n".join(lines) + "\n"


# --- the HTML page ----------------------------------------------------------------------------

KINDS = ("tool", "agent", "skill", "cli-agent", "dataset", "experience", "pipeline", "loop")


@dataclass(frozen=True, slots=True)
class NodeRow:
    """A row of the nodes table: a node, a pipeline or a loop."""

    id: str
    kind: str
    phase: str
    description: str
    runs: str  # what it runs: a tool file, a prompt, a data source, a child, its members
    reads: str
    writes: str
    on_error: str
    for_each: str
    frozen: bool


@dataclass(frozen=True, slots=True)
class FieldRow:
    name: str
    type: str
    merge: str
    writers: str
    readers: str


def write_graph_html(experience: Experience, path: Path) -> None:
    """Write the graph page of `experience` to `path` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(graph_page(experience), encoding="utf-8")


def graph_page(experience: Experience) -> str:
    """The graph of `experience` as one self-contained HTML page."""
    boxes = _boxes(experience)
    edges: list[tuple[str, str, str | None]] = [
        (e.source, e.target, f"when {e.when.source}" if e.when else None) for e in experience.edges
    ]
    styles = [("edge", "arrow")] * len(edges)
    for pipe in experience.pipelines.values():
        for a, b in pairwise((pipe.id, *pipe.stages)):
            edges.append((a, b, None))
    for loop in experience.loops.values():
        edges.append((loop.id, loop.body, None))
    styles += [("edge inner", "arrow-muted")] * (len(edges) - len(styles))
    layout = layout_graph(list(boxes), edges, {k: b.sub for k, b in boxes.items()})
    kinds = [b.kind for b in boxes.values()]
    counts = [(k, kinds.count(k)) for k in KINDS if k in kinds]
    legend = [(f"kd-{k}", k) for k in KINDS[:-2] if k in kinds]
    if "pipeline" in kinds or "loop" in kinds:
        legend.append(("kd-group", "pipeline / loop"))
    facts = [
        ("version", experience.version),
        ("nodes", str(len(experience.nodes))),
        ("edges", str(len(experience.edges))),
    ]
    for label, count in (
        ("phases", len(experience.phases)),
        ("pipelines", len(experience.pipelines)),
        ("loops", len(experience.loops)),
        ("state fields", len(experience.state)),
    ):
        if count:
            facts.append((label, str(count)))
    return render_page(
        "graph.html.j2",
        title=f"{experience.name} · graph · evolve",
        version=__version__,
        experience=experience,
        facts=facts,
        counts=counts,
        graph=layout,
        graph_nodes=boxes,
        edge_styles=styles,
        legend_keys=legend,
        inner=len(edges) > len(experience.edges),
        rows=[_row(experience, key) for key in boxes],
        phased=bool(experience.phases),
        fields=_fields(experience),
    )


def _boxes(experience: Experience) -> dict[str, GraphNode]:
    """Every box, steps first (in graph order), then the members of pipelines and loops."""
    order = list(experience.steps)
    for pipe in experience.pipelines.values():
        order += [s for s in pipe.stages if s not in order]
    for loop in experience.loops.values():
        order += [] if loop.body in order else [loop.body]
    order += [n for n in experience.nodes if n not in order]
    boxes = {}
    for key in order:
        kind, sub = _kind_and_sub(experience, key)
        node = experience.nodes.get(key)
        tip = f"{key} · {kind}"
        if node and node.description:
            tip += f"\n{node.description}"
        group = kind in ("pipeline", "loop")
        css = f"kd-{'group' if group else kind} kind-{kind}"
        if node and node.frozen:
            css += " frozen"
        boxes[key] = GraphNode(css, kind, tip, sub)
    return boxes


def _kind_and_sub(experience: Experience, key: str) -> tuple[str, str]:
    if key in experience.pipelines:
        pipe = experience.pipelines[key]
        return "pipeline", f"pipeline · each of {pipe.items.source}"
    if key in experience.loops:
        loop = experience.loops[key]
        return "loop", f"loop · until {loop.until.source} · ≤{loop.max_iters}"
    node = experience.nodes[key]
    parts = [node.kind]
    if node.for_each:
        parts.append(f"for_each {node.for_each.source.source}")
    if node.frozen:
        parts.append("frozen")
    return node.kind, " · ".join(parts)


def _row(experience: Experience, key: str) -> NodeRow:
    if key in experience.pipelines:
        pipe = experience.pipelines[key]
        cap = f", ≤{pipe.concurrency} at once" if pipe.concurrency else ""
        runs = f"stages {' → '.join(pipe.stages)} for each of {pipe.items.source}{cap}"
        return NodeRow(key, "pipeline", "", "", runs, "", "", "", "", False)
    if key in experience.loops:
        loop = experience.loops[key]
        runs = f"{loop.body} until {loop.until.source}, at most {loop.max_iters} times"
        return NodeRow(key, "loop", "", "", runs, "", "", "", "", False)
    node = experience.nodes[key]
    policy = node.on_error.policy
    if policy == "retry":
        policy = f"retry ×{node.on_error.attempts}, then {node.on_error.then}"
    for_each = ""
    if node.for_each:
        cap = f", ≤{node.for_each.concurrency} at once" if node.for_each.concurrency else ""
        for_each = f"{node.for_each.source.source}{cap}"
    return NodeRow(
        id=key,
        kind=node.kind,
        phase=node.phase or "",
        description=node.description,
        runs=_runs(experience, node),
        reads=", ".join(node.reads),
        writes=", ".join(node.writes),
        on_error=policy,
        for_each=for_each,
        frozen=node.frozen,
    )


def _runs(experience: Experience, node: Node) -> str:
    model = f" ({node.model})" if node.model else ""
    if node.source:
        return node.source.url or node.source.uri
    if node.skill:
        return f"{_relative(experience, node.skill.directory)}/{model}"
    if node.cli:
        runs = node.cli.provider or " ".join(node.cli.command)
        if node.prompt:
            runs += f" · {_relative(experience, node.prompt)}"
        return runs + model
    if node.prompt:
        return _relative(experience, node.prompt) + model
    return node.impl_text or ""


def _relative(experience: Experience, path: Path) -> str:
    try:
        return path.relative_to(experience.directory).as_posix()
    except ValueError:
        return path.as_posix()


def _fields(experience: Experience) -> list[FieldRow]:
    rows = []
    for name, spec in experience.state.items():
        writers = [n.id for n in experience.nodes.values() if name in n.writes]
        readers = [n.id for n in experience.nodes.values() if name in n.reads]
        rows.append(FieldRow(name, spec.type, spec.merge, ", ".join(writers), ", ".join(readers)))
    return rows
