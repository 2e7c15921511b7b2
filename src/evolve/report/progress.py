"""Live progress of a run, fed by its events: per-node lines, and a live table on a terminal.

Every event goes through the same fold as `inspect` (`evolve.view.Folder`, one per run, so a
nested experience's nodes show under the node that started them). Lines go to stderr, so stdout
carries only the result: one line per node outcome (✓ or ✗), retry, timeout and skip, never one
per item, so a 5,000-item fan-out stays readable, and one per eval scored at the end. On a
terminal the same lines print above a live table (node, status, items done of the real total,
retries, timeouts, failed items, the latest activity); when the run ends the table stays on
screen with the outcome, and the reason for a failed or partial run.

A model call that takes long shows while it waits (`evolve.llm.inflight`): the live table has a
row per call in flight with its elapsed time, and plain mode prints a line every `tick_s`
seconds for each call waiting longer than that. A cost litellm does not know is `—`, never $0.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from evolve.events import EventType
from evolve.llm import inflight
from evolve.view import Folder, NodeView, RunView

MARKS = {
    "running": "[yellow]running[/]",
    "succeeded": "[green]done[/]",
    "skipped": "[dim]skipped[/]",
    "failed": "[red]failed[/]",
    "interrupted": "[yellow]interrupted[/]",
    "waiting": "[dim]waiting[/]",
    "reused": "[cyan]reused[/]",
}


@dataclass
class Progress:
    """A run listener: folds events per run, prints lines as it goes, draws the table."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    plain: bool = True
    runs: dict[str, Folder] = field(default_factory=dict)  # run id -> its fold, first = top
    started: float = field(default_factory=time.monotonic)
    outcome: RunView | None = None  # the top-level run, once it has ended
    tick_s: float = 30.0  # plain mode: how often a waiting model call is reported
    _announced: set[tuple[str, str]] = field(default_factory=set)  # (run, node) given a ✗
    _live: Any = None
    _ticker: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __call__(self, event: dict[str, Any]) -> None:
        folder = self.runs.get(event["run_id"])
        if folder is None:
            folder = self.runs[event["run_id"]] = Folder()
        folder.feed(event)
        line = self._line(event, folder)
        if line:
            self._print(line)
        if event["type"] == EventType.RUN_FINISHED:
            self._finished(event["run_id"], folder)

    def _label(self, folder: Folder, node_id: str) -> str:
        parent = folder.view.parent_node
        return f"{parent} › {node_id}" if parent else node_id

    def _line(self, event: dict[str, Any], folder: Folder) -> str | None:
        kind, node_id = event["type"], event.get("node_id")
        if kind == EventType.EVAL_RESULT:
            mark = "✓" if event.get("passed") else "✗"
            why = f": {event['reason']}" if event.get("reason") and not event.get("passed") else ""
            required = ", required" if event.get("required") else ""
            return f"{mark} eval {event['eval']} {event['score']:.2f}{required}{why}"
        if not node_id or node_id.startswith("eval:"):  # a judge is not a node
            return None
        label = self._label(folder, node_id)
        where = f" item {event['item']}" if "item" in event else ""
        if kind == EventType.NODE_FINISHED and "item" not in event:
            return self._outcome_line(event["run_id"], folder.view.nodes[node_id], label, event)
        if kind == EventType.NODE_REUSED and not where:
            how = "cache hit" if event.get("cached") else "reused"
            return f"↺ {label} ({how} from {event['from_run']})"
        if kind == EventType.NODE_FAILED and "attempt" not in event:
            self._announced.add((event["run_id"], node_id))
            return f"✗ {label}: {event.get('error', '')}"
        if kind == EventType.NODE_RETRY:
            return (
                f"↻ {label}{where}: attempt {event['attempt']} failed, retrying in "
                f"{event['delay_ms']} ms ({event.get('error', '')})"
            )
        if kind == EventType.NODE_TIMEOUT:
            return (
                f"⏱ {label}{where}: attempt {event['attempt']} timed out ({event['timeout_ms']} ms)"
            )
        if kind == EventType.NODE_SKIPPED:
            reason = event.get("reason", "")
            if reason.startswith("failed"):
                if not where:
                    self._announced.add((event["run_id"], node_id))
                return f"✗ {label}{where}: {reason}"
            return f"- {label}{where} skipped: {reason}"
        return None

    def _outcome_line(
        self, run_id: str, node: NodeView, label: str, event: dict[str, Any]
    ) -> str | None:
        elapsed = event.get("duration_ms", 0) / 1000
        failed = event.get("items_failed")
        items = f", {event['items']} items" if "items" in event else ""
        items += f" ({failed} failed)" if failed else ""
        items += f" ({node.items_reused} reused)" if node.items_reused else ""
        if event.get("status", "succeeded") != "succeeded":
            if (run_id, node.id) in self._announced:
                return None  # its failure has been told already
            self._announced.add((run_id, node.id))
            return f"✗ {label} ({elapsed:.2f}s{items}): {event.get('error') or 'failed'}"
        return f"{'↺' if node.reused else '✓'} {label} ({elapsed:.2f}s{items})"

    def _finished(self, run_id: str, folder: Folder) -> None:
        """A run ended: a ✗ for every failed node not yet given one (a plain node that failed
        the run under fail_run says so only through its last attempt)."""
        view = folder.settled()
        for node in view.nodes.values():
            if node.status == "failed" and (run_id, node.id) not in self._announced:
                self._announced.add((run_id, node.id))
                last = node.last_attempt
                error = (last.error if last else None) or node.reason or "failed"
                self._print(f"✗ {self._label(folder, node.id)}: {error}")
        if next(iter(self.runs)) == run_id:
            self.outcome = view

    def _print(self, line: str) -> None:
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self.stream, flush=True)

    @property
    def cost(self) -> float | None:
        """What the model calls cost so far, or None while no call had a known price."""
        costs = [f.view.cost_usd for f in self.runs.values() if f.view.cost_usd is not None]
        return sum(costs) if costs else None

    def title(self) -> str:
        view = self.outcome
        if view is None:
            text = f"running · {time.monotonic() - self.started:.1f}s"
        else:
            text = f"{view.status} · {(view.duration_ms or 0) / 1000:.2f}s"
        views = [f.view for f in self.runs.values()]
        tokens = sum(v.tokens_in + v.tokens_out for v in views)
        if tokens:
            cost = "—" if self.cost is None else f"${self.cost:.4f}"
            text += f" · {tokens} tokens · cost {cost}"
        if view is not None and view.status != "success":
            text += f"\nreason: {partial_reason(view)}"
        return text

    def table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(self.title()), title_justify="left", box=None, pad_edge=False)
        nodes = [(f, n) for f in self.runs.values() for n in f.view.nodes.values()]
        active = any(n.activity for _, n in nodes)
        columns = ["node", "status", "items", "retries", "timeouts", "failed items"]
        for column in [*columns, "activity"] if active else columns:
            table.add_column(column)
        for folder, node in nodes:
            total = node.items_total if node.items_total is not None else len(node.items)
            items = f"{node.items_done}/{total}" if total or node.items else ""
            row = [
                Text(self._label(folder, node.id)),
                MARKS.get("reused" if node.reused else node.status, node.status),
                items,
                str(node.retries or ""),
                str(node.timeouts or ""),
                str(node.items_failed or ""),
            ]
            table.add_row(*row, *([Text(node.activity or "")] if active else []))
        for call in inflight.snapshot():
            waiting = f"[yellow]waiting for {call.model} · {call.elapsed():.0f}s[/]"
            table.add_row(Text(f"  {_where(call)}"), waiting, *[""] * (len(table.columns) - 2))
        return table

    def _tick(self) -> None:
        """Plain mode: every `tick_s`, one line per model call waiting longer than that."""
        while not self._stop.wait(self.tick_s):
            for call in inflight.snapshot():
                if call.elapsed() >= self.tick_s:
                    self._print(
                        f"… {_where(call)}: waiting for {call.model} ({call.elapsed():.0f} s)"
                    )

    def __enter__(self) -> Progress:
        if not self.plain:
            from rich.console import Console
            from rich.live import Live

            # Live pulls the table at its own pace: no rendering work per event. The last
            # table stays on screen when the run ends.
            self._live = Live(
                get_renderable=self.table,
                console=Console(file=self.stream),
                refresh_per_second=8,
                transient=False,
            )
            self._live.__enter__()
        else:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, daemon=True, name="progress")
            self._ticker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)
            self._live = None
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None


def _where(call: inflight.Call) -> str:
    return call.node_id + (f" item {call.item}" if call.item is not None else "")


def partial_reason(view: RunView) -> str:
    """Why a run did not succeed: its reason, or for a partial run what failed under skip."""
    if view.reason:
        return view.reason
    failed = [n.id for n in view.nodes.values() if n.status == "failed"]
    failed += [
        f"{n.id} item {i.index}"
        for n in view.nodes.values()
        for i in n.items.views()  # plain items succeeded
        if i.status == "failed" and n.status != "failed"
    ]
    if not failed:
        return view.status
    shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
    return f"failed under on_error: skip: {shown}"
