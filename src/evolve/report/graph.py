"""An experience's graph as Mermaid: phases as subgraphs, pipelines and loops as boxes of their own,
`for_each` and `when` written on the nodes and edges they belong to."""

from __future__ import annotations

from itertools import pairwise

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
