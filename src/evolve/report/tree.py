"""Runs for the terminal: the runs table, and a run's tree, summary, failures and state diff.

Builds rich renderables; `cli.py` prints them. Nothing here reads the workspace.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from evolve.evals.summary import suite_totals
from evolve.store.queries import Inspection
from evolve.view import AttemptView, NodeView

ITEMS_SHOWN = 8
VALUE_CHARS = 60
MARKS = {
    "succeeded": ("✓", "green"),
    "failed": ("✗", "red"),
    "timeout": ("⏱", "red"),
    "skipped": ("–", "dim"),
    "running": ("…", "yellow"),
    "waiting": ("·", "dim"),
    "interrupted": ("!", "yellow"),
    "reused": ("↺", "cyan"),
}
STATUS_STYLE = {
    "success": "green",
    "failed": "red",
    "partial": "yellow",
    "interrupted": "yellow",
    "running": "cyan",
}


def seconds(ms: int | None) -> str:
    if ms is None:
        return "—"
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def money(cost: float | None) -> str:
    return "—" if cost is None else f"${cost:.4f}"


def shorten(value: Any, limit: int = VALUE_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def runs_table(rows: list[dict[str, Any]]) -> Table:
    """The runs, newest first; a `score` column when any of them was scored by evals."""
    scored = any(r.get("score") is not None or r.get("evals_passed") is not None for r in rows)
    # one space between columns when the score column is there, so 100 columns still fit
    table = Table(box=None, header_style="bold", pad_edge=False, collapse_padding=scored)
    for name in (
        "run",
        "experience",
        "status",
        "started",
        "duration",
        "nodes ✓/✗/–",
        "items",
        "tokens",
        "cost",
        *(["score"] if scored else []),
    ):
        table.add_column(
            name,
            justify="right" if name in ("duration", "items", "tokens", "cost") else "left",
            no_wrap=name in ("run", "status", "started", "score"),
        )
    for r in rows:
        tokens = (r.get("tokens_in") or 0) + (r.get("tokens_out") or 0)
        suite = r.get("kind") == "suite"
        table.add_row(
            r["id"],
            r["experience"],
            Text(  # ↺: a run that reused an earlier one's results (resume, --from)
                r["status"] + (" ↺" if r.get("resumed_from") else ""),
                style=STATUS_STYLE.get(r["status"], ""),
            ),
            # with the score column, the year goes so that 100 columns still hold every name
            (r["started_at"] or "")[5 if scored else 0 : 19].replace("T", " "),
            seconds(r.get("duration_ms")),
            f"{r.get('cases') or 0} cases"
            if suite
            else f"{r['nodes_succeeded']}/{r['nodes_failed']}/{r['nodes_skipped']}",
            str(r["items"] or ""),
            str(tokens or ""),
            money(r.get("cost_usd")),
            *([score_text(r)] if scored else []),
        )
    return table


def score_text(row: dict[str, Any]) -> Text:
    """`0.83 ✓` for a run passing its evals, `0.40 ✗` failing them, `0.83 80%` for a suite (mean
    score and pass rate); empty for a run of an experience without evals."""
    score = row.get("score")
    if row.get("kind") == "suite":
        rate = row.get("pass_rate")
        text = "—" if score is None else f"{score:.2f}"
        text += "" if rate is None else f" {rate:.0%}"
        return Text(text, style="green" if rate == 1 else "yellow")
    if score is None and row.get("evals_passed") is None:
        return Text("")
    if row.get("evals_passed"):
        return Text(f"{score or 0:.2f} ✓", style="green")
    return Text(f"{score or 0:.2f} ✗", style="red")


def evals_table(evals: list[dict[str, Any]]) -> Table:
    table = Table(title="evals", title_justify="left", box=None, pad_edge=False)
    for name in ("eval", "kind", "score", "", "reason"):
        table.add_column(name, justify="right" if name == "score" else "left")
    for e in evals:
        mark = Text("✓", style="green") if e["passed"] else Text("✗", style="red")
        if e.get("required"):
            mark.append(" required", style="dim")
        table.add_row(
            e["eval"], e["kind"], f"{e['score']:.2f}", mark, shorten(e.get("reason") or "", 70)
        )
    return table


def suite_table(cases: list[dict[str, Any]]) -> Table:
    """Per case run: status, score, failing evals with reasons, duration, tokens, cost."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("case", "status", "score", "failing evals", "duration", "tokens", "cost"):
        table.add_column(name, justify="right" if name in ("duration", "tokens") else "left")
    for c in cases:
        label = c["case_id"] + (f" #{c['repeat']}" if c.get("repeat", 1) > 1 else "")
        failing = "; ".join(
            f"{f['eval']}" + (f" ({shorten(f['reason'], 50)})" if f.get("reason") else "")
            for f in c.get("failing") or []
        )
        if c.get("error"):
            failing = (failing + "; " if failing else "") + shorten(c["error"], 60)
        score = c.get("score")
        table.add_row(
            label,
            Text(c["status"], style=STATUS_STYLE.get(c["status"], "red")),
            Text(
                "—" if score is None else f"{score:.2f} " + ("✓" if c["passed"] else "✗"),
                style="green" if c["passed"] else "red",
            ),
            failing,
            seconds(c.get("duration_ms")),
            str((c.get("tokens_in") or 0) + (c.get("tokens_out") or 0) or ""),
            money(c.get("cost_usd")),
        )
    return table


def _label(mark_status: str, name: str, detail: str) -> Text:
    mark, style = MARKS.get(mark_status, ("?", ""))
    text = Text(f"{mark} ", style=style)
    text.append(name, style="bold")
    if detail:
        text.append(f"  {detail}", style="dim" if mark_status == "succeeded" else "")
    return text


def _attempt(a: AttemptView) -> Text:
    detail = seconds(a.duration_ms)
    if a.tokens_in or a.tokens_out:
        detail += f", {a.tokens_in}+{a.tokens_out} tokens, {money(a.cost_usd)}"
    if a.error:
        detail += f"  {a.error_type}: {shorten(a.error, 90)}"
    return _label(a.status, f"attempt {a.number}", detail)


def _node_detail(node: NodeView) -> str:
    parts = [node.kind]
    if node.reused_from:
        how = "cache hit" if node.cached else "reused"
        parts.append(f"{how} from {node.reused_from}")
    if node.items:
        parts.append(
            f"{len(node.items)} items"
            + (f", {node.items_failed} failed" if node.items_failed else "")
            + (f", {node.items_reused} reused" if node.items_reused else "")
        )
    if node.iterations:
        parts.append(f"{node.iterations} iterations")
    parts.append(seconds(node.duration_ms))
    if node.llm_calls:
        parts.append(f"{node.tokens_in}+{node.tokens_out} tokens, {money(node.cost_usd)}")
    if node.retries:
        parts.append(f"{node.retries} retr{'y' if node.retries == 1 else 'ies'}")
    if node.reason:
        parts.append(shorten(node.reason, 90))
    return " · ".join(parts)


def mark(node: NodeView) -> str:
    """A node that was not executed at all (its result, or every item's, reused) shows ↺."""
    return "reused" if node.reused else node.status


def _add_node(parent: Tree, node: NodeView) -> None:
    branch = parent.add(_label(mark(node), node.id, _node_detail(node)))
    if len(node.attempts) > 1 or any(a.status != "succeeded" for a in node.attempts):
        for attempt in node.attempts:
            branch.add(_attempt(attempt))
    shown = node.items.notable_then_lowest(ITEMS_SHOWN)
    for item in shown:
        last = item.attempts[-1] if item.attempts else None
        detail = seconds(last.duration_ms) if last else ""
        if item.skipped:
            detail += f"  {shorten(item.skipped, 90)}"
        reused = item.reused_from is not None and not item.attempts
        if reused:
            detail = f"{'cache hit' if item.cached else 'reused'} from {item.reused_from}"
        leaf = branch.add(_label("reused" if reused else item.status, f"item {item.index}", detail))
        if len(item.attempts) > 1 or item.status != "succeeded":
            for attempt in item.attempts:
                leaf.add(_attempt(attempt))
    if len(node.items) > len(shown):
        branch.add(Text(f"… {len(node.items) - len(shown)} more items", style="dim"))


def inspection(report: Inspection) -> Group:
    view, row = report.view, report.row
    title = Text(f"run {view.run_id}", style="bold")
    title.append(f" · {view.experience} · ")
    title.append(view.status, style=STATUS_STYLE.get(view.status, ""))
    title.append(f" · {seconds(view.duration_ms)} · started {(row['started_at'] or '')[:19]}")
    if view.reason:
        title.append(f"\nreason: {view.reason}")
    if view.resumed_from:
        title.append(f"\nresumed from {view.resumed_from}: ↺ marks what was reused, not executed")

    if report.cases is not None:  # a suite: its case runs are what it did
        return Group(
            title,
            Text(""),
            suite_table(report.cases),
            Text(suite_totals(report.suite_summary())),
        )
    tree = Tree(Text(view.experience, style="bold"), guide_style="dim")
    phases = {p: None for p in view.phases}
    by_phase: dict[str | None, list[NodeView]] = {}
    for node in view.nodes.values():
        by_phase.setdefault(node.phase if node.phase in phases else None, []).append(node)
    for phase in [*phases, None]:
        nodes = by_phase.get(phase, [])
        if not nodes:
            continue
        parent = tree.add(Text(f"phase {phase}", style="bold cyan")) if phase else tree
        for node in nodes:
            _add_node(parent, node)

    counts = {
        s: sum(1 for n in view.nodes.values() if n.status == s)
        for s in ("succeeded", "failed", "skipped")
    }
    reused = sum(1 for n in view.nodes.values() if mark(n) == "reused")
    summary = Text(
        f"nodes {counts['succeeded']} ✓ {counts['failed']} ✗ {counts['skipped']} – · "
        + (f"{reused} ↺ reused · " if reused else "")
        + f"retries {view.retries} · timeouts {view.timeouts} · failures {len(view.failures)} · "
        f"tokens {view.tokens_in}+{view.tokens_out} · cost {money(view.cost_usd)} · "
        f"{view.events} events"
    )
    slowest = ", ".join(f"{n.id} {seconds(n.duration_ms)}" for n in view.slowest(3))
    parts: list[Any] = [title, Text(""), tree, Text(""), summary]
    if slowest:
        parts.append(Text(f"slowest: {slowest}"))
    if view.failures:
        failures = Table(title="failures", title_justify="left", box=None, pad_edge=False)
        for name in ("seq", "node", "item", "attempt", "error"):
            failures.add_column(name)
        for f in view.failures[:20]:
            failures.add_row(
                str(f.seq),
                f.node,
                "" if f.item is None else str(f.item),
                "" if f.attempt is None else str(f.attempt),
                f"{f.error_type}: {shorten(f.error, 80)}",
            )
        if len(view.failures) > 20:
            failures.add_row("", f"… {len(view.failures) - 20} more", "", "", "")
        parts += [Text(""), failures]
    if view.evals:
        verdict = "passes its evals" if view.evals_passed else "FAILS its evals"
        score = "—" if view.score is None else f"{view.score:.2f}"
        parts += [
            Text(""),
            Text(f"score {score} · {verdict}", style="bold"),
            evals_table(view.evals),
        ]
    parts += [Text(""), state_diff(report.state_diff)]
    return Group(*parts)


def state_diff(rows: list[dict[str, Any]]) -> Table:
    table = Table(
        title="state diff", title_justify="left", box=None, pad_edge=False, header_style="bold"
    )
    for name in ("field", "before", "after", "writes"):
        table.add_column(name, justify="right" if name == "writes" else "left")
    for r in rows:
        table.add_row(r["field"], shorten(r["before"]), shorten(r["after"]), str(r["writes"]))
    if not rows:
        table.add_row("(no field was written)", "", "", "")
    return table
