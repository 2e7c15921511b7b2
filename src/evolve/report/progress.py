"""Live progress of a run, fed by its events: a live table on a terminal, plain lines otherwise.

Both write to stderr, so stdout carries only the result. Plain mode prints one line per node
outcome, retry, timeout and skip (never one per item, so a 5,000-item fan-out stays readable),
and one per eval scored at the end.

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

from evolve.llm import inflight


@dataclass
class NodeProgress:
    status: str = "waiting"
    items_total: int = 0
    items_done: int = 0
    retries: int = 0
    started: float | None = None
    elapsed: float = 0.0


@dataclass
class Progress:
    """Folds events into per-node progress; `lines` mode prints as it goes."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    plain: bool = True
    nodes: dict[str, NodeProgress] = field(default_factory=dict)
    tokens: int = 0
    cost: float | None = None  # None until a call with a known price
    started: float = field(default_factory=time.monotonic)
    tick_s: float = 30.0  # plain mode: how often a waiting model call is reported
    _live: Any = None
    _ticker: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __call__(self, event: dict[str, Any]) -> None:
        kind, node_id = event["type"], event.get("node_id")
        scheduled = node_id and not node_id.startswith("eval:")  # a judge is not a node
        node = self.nodes.setdefault(node_id, NodeProgress()) if scheduled else None
        line = None
        if kind == "node.started" and node:
            if node.started is None:
                node.started = time.monotonic()
            node.status = "running"
            if "item" in event:
                node.items_total = max(node.items_total, event["item"] + 1)
        elif kind == "node.finished" and node:
            if "item" in event:
                node.items_done += 1
            else:
                node.status = (
                    "done" if event.get("status", "succeeded") == "succeeded" else event["status"]
                )
                node.elapsed = event.get("duration_ms", 0) / 1000
                failed = event.get("items_failed")
                items = f", {event['items']} items" if "items" in event else ""
                items += f" ({failed} failed)" if failed else ""
                line = f"✓ {node_id} ({node.elapsed:.2f}s{items})"
        elif kind == "node.retry" and node:
            node.retries += 1
            where = f" item {event['item']}" if "item" in event else ""
            line = (
                f"↻ {node_id}{where}: attempt {event['attempt']} failed, retrying in "
                f"{event['delay_ms']} ms ({event.get('error', '')})"
            )
        elif kind == "node.timeout" and node:
            where = f" item {event['item']}" if "item" in event else ""
            line = (
                f"⏱ {node_id}{where}: attempt {event['attempt']} timed out "
                f"({event['timeout_ms']} ms)"
            )
        elif kind == "node.skipped" and node:
            node.status = "skipped"
            where = f" item {event['item']}" if "item" in event else ""
            line = f"- {node_id}{where} skipped: {event.get('reason', '')}"
        elif kind == "node.failed" and node and "attempt" not in event:
            line = f"✗ {node_id}: {event.get('error', '')}"
        elif kind == "eval.result":
            mark = "✓" if event.get("passed") else "✗"
            why = f": {event['reason']}" if event.get("reason") and not event.get("passed") else ""
            required = ", required" if event.get("required") else ""
            line = f"{mark} eval {event['eval']} {event['score']:.2f}{required}{why}"
        elif kind == "llm.call":
            self.tokens += (event.get("tokens_in") or 0) + (event.get("tokens_out") or 0)
            if event.get("cost_usd") is not None:
                self.cost = (self.cost or 0.0) + event["cost_usd"]
        if self.plain and line:
            print(line, file=self.stream, flush=True)

    def table(self) -> Any:
        from rich.table import Table

        elapsed = time.monotonic() - self.started
        title = f"running · {elapsed:.1f}s"
        if self.tokens:
            cost = "—" if self.cost is None else f"${self.cost:.4f}"
            title += f" · {self.tokens} tokens · cost {cost}"
        table = Table(title=title, title_justify="left", box=None, pad_edge=False)
        for column in ("node", "status", "items", "retries"):
            table.add_column(column)
        marks = {
            "running": "[yellow]running[/]",
            "done": "[green]done[/]",
            "skipped": "[dim]skipped[/]",
            "failed": "[red]failed[/]",
        }
        for node_id, node in self.nodes.items():
            items = f"{node.items_done}/{node.items_total}" if node.items_total else ""
            table.add_row(
                node_id, marks.get(node.status, node.status), items, str(node.retries or "")
            )
        for call in inflight.snapshot():
            table.add_row(
                f"  {_where(call)}",
                f"[yellow]waiting for {call.model} · {call.elapsed():.0f}s[/]",
                "",
                "",
            )
        return table

    def _tick(self) -> None:
        """Plain mode: every `tick_s`, one line per model call waiting longer than that."""
        while not self._stop.wait(self.tick_s):
            for call in inflight.snapshot():
                if call.elapsed() >= self.tick_s:
                    print(
                        f"… {_where(call)}: waiting for {call.model} ({call.elapsed():.0f} s)",
                        file=self.stream,
                        flush=True,
                    )

    def __enter__(self) -> Progress:
        if not self.plain:
            from rich.console import Console
            from rich.live import Live

            # Live pulls the table at its own pace: no rendering work per event.
            self._live = Live(
                get_renderable=self.table,
                console=Console(file=self.stream),
                refresh_per_second=8,
                transient=True,
            )
            self._live.__enter__()
        else:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, daemon=True, name="progress")
            self._ticker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None


def _where(call: inflight.Call) -> str:
    return call.node_id + (f" item {call.item}" if call.item is not None else "")
