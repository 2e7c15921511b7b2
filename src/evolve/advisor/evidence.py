"""Evidence for the advisor: one streaming pass over each run's event log, pooled across runs.

For every node: attempts and their durations (p50/p95/max), timeouts with the limit that was hit,
failures by error type, retries, items whose attempts ran out, schema errors, LLM tokens and cost,
and for `for_each` nodes the wall time against the time items spent running. Every finding keeps
the run and event `seq` it came from, so a proposal can cite it. The log is never held in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from evolve.store.log import read_events
from evolve.store.workspace import Workspace

# Failures that often pass on a second try. "deadline" (an attempt that ran into its own
# timeout_ms) is not one of them: retrying a too-short limit fails the same way.
TRANSIENT = ("timeout", "rate_limit", "server_error", "connection")


@dataclass(frozen=True)
class Ref:
    """Where a finding was seen: a run and an event seq."""

    run: str
    seq: int

    def __str__(self) -> str:
        return f"{self.run}#{self.seq}"


@dataclass
class NodeEvidence:
    node_id: str
    runs: set[str] = field(default_factory=set)
    attempts: int = 0
    durations_ms: list[int] = field(default_factory=list)  # every ended attempt
    timeouts: list[Ref] = field(default_factory=list)
    timeout_limits: list[int] = field(default_factory=list)
    failures: dict[str, list[Ref]] = field(default_factory=dict)  # by error_type
    messages: dict[str, str] = field(default_factory=dict)  # one example per error_type
    retries: list[Ref] = field(default_factory=list)
    exhausted: list[tuple[Ref, str]] = field(default_factory=list)  # (last failure, error_type)
    schema_errors: list[tuple[Ref, list[str]]] = field(default_factory=list)
    items: int = 0
    items_failed: list[tuple[str, int]] = field(default_factory=list)  # (run, item)
    fan_out: list[dict[str, Any]] = field(default_factory=list)  # per run: wall, busy, items
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None

    def refs(self, *types: str) -> list[Ref]:
        return sorted(
            (r for k, v in self.failures.items() if not types or k in types for r in v),
            key=lambda r: (r.run, r.seq),
        )

    def timing(self) -> dict[str, int | None]:
        return {
            "p50": percentile(self.durations_ms, 50),
            "p95": percentile(self.durations_ms, 95),
            "max": max(self.durations_ms) if self.durations_ms else None,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "runs": sorted(self.runs),
            "attempts": self.attempts,
            "timing_ms": self.timing(),
            "timeouts": [str(r) for r in self.timeouts],
            "failures": {
                k: {
                    "count": len(v),
                    "seqs": [str(r) for r in v[:10]],
                    "example": self.messages.get(k),
                }
                for k, v in self.failures.items()
            },
            "retries": len(self.retries),
            "exhausted": [{"at": str(r), "error_type": t} for r, t in self.exhausted[:10]],
            "schema_errors": [{"at": str(r), "errors": e[:3]} for r, e in self.schema_errors[:5]],
            "items": self.items,
            "items_failed": len(self.items_failed),
            "fan_out": self.fan_out,
            "llm_calls": self.llm_calls,
            "tokens": {"in": self.tokens_in, "out": self.tokens_out},
            "cost_usd": self.cost_usd,
        }


def percentile(values: list[int], pct: float) -> int | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass
class RunEvidence:
    run_id: str
    status: str
    reason: str | None
    duration_ms: int | None
    events: int
    state_diff: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Evidence:
    """Everything the advisor knows about an experience's runs."""

    experience: str
    runs: list[RunEvidence] = field(default_factory=list)
    nodes: dict[str, NodeEvidence] = field(default_factory=dict)

    def node(self, node_id: str) -> NodeEvidence:
        found = self.nodes.get(node_id)
        if found is None:
            found = self.nodes[node_id] = NodeEvidence(node_id)
        return found

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]

    def summary(self) -> dict[str, Any]:
        return {
            "experience": self.experience,
            "runs": [
                {
                    "run": r.run_id,
                    "status": r.status,
                    "reason": r.reason,
                    "duration_ms": r.duration_ms,
                    "events": r.events,
                    "state_diff": r.state_diff,
                }
                for r in self.runs
            ],
            "nodes": [n.summary() for n in self.nodes.values()],
        }


class _RunReader:
    """Folds one run's events into the pooled evidence."""

    def __init__(self, evidence: Evidence, run_id: str):
        self.evidence = evidence
        self.run_id = run_id
        self.last_failure: dict[tuple[str, int | None], tuple[Ref, str]] = {}
        self.succeeded: set[tuple[str, int | None]] = set()
        self.item_busy: dict[str, int] = {}
        self.deadline: set[tuple[str, int | None]] = set()  # attempts whose timeout_ms fired
        self.status, self.reason, self.duration, self.count = "interrupted", None, None, 0

    def feed(self, e: dict[str, Any]) -> None:
        self.count += 1
        kind, node_id = e["type"], e.get("node_id")
        if kind == "run.finished":
            self.status, self.reason = e.get("status", "success"), e.get("reason")
            self.duration = e.get("duration_ms")
            return
        if not node_id:
            return
        node = self.evidence.node(node_id)
        node.runs.add(self.run_id)
        ref = Ref(self.run_id, e["seq"])
        item = e.get("item")
        key = (node_id, item)
        if kind == "node.started":
            node.attempts += 1
        elif kind == "node.finished" and "attempt" in e:
            node.durations_ms.append(e.get("duration_ms", 0))
            self.succeeded.add(key)
            self.last_failure.pop(key, None)
            if item is not None:
                self.item_busy[node_id] = self.item_busy.get(node_id, 0) + e.get("duration_ms", 0)
        elif kind == "node.finished" and "items" in e:  # a whole for_each node
            node.items += e["items"]
            node.fan_out.append(
                {
                    "run": self.run_id,
                    "wall_ms": e.get("duration_ms", 0),
                    "busy_ms": self.item_busy.get(node_id, 0),
                    "items": e["items"],
                }
            )
        elif kind == "node.failed" and "attempt" in e:
            error_type = e.get("error_type", "error")
            if error_type == "timeout" and key in self.deadline:
                error_type = "deadline"  # our timeout_ms fired, not the provider's
                self.deadline.discard(key)
            node.failures.setdefault(error_type, []).append(ref)
            node.messages.setdefault(error_type, e.get("error", ""))
            self.last_failure[key] = (ref, error_type)
            if error_type == "deadline":
                node.durations_ms.append(node.timeout_limits[-1] if node.timeout_limits else 0)
        elif kind == "node.timeout":
            self.deadline.add(key)
            node.timeouts.append(ref)
            node.timeout_limits.append(e.get("timeout_ms", 0))
        elif kind == "node.retry":
            node.retries.append(ref)
        elif kind == "schema.invalid":
            node.schema_errors.append((ref, list(e.get("errors", []))))
        elif kind == "llm.call":
            node.llm_calls += 1
            node.tokens_in += e.get("tokens_in") or 0
            node.tokens_out += e.get("tokens_out") or 0
            if e.get("cost_usd") is not None:
                node.cost_usd = (node.cost_usd or 0.0) + e["cost_usd"]

    def close(self) -> RunEvidence:
        for (node_id, item), (ref, error_type) in self.last_failure.items():
            node = self.evidence.node(node_id)
            node.exhausted.append((ref, error_type))
            if item is not None:
                node.items_failed.append((self.run_id, item))
        return RunEvidence(self.run_id, self.status, self.reason, self.duration, self.count)


def gather(
    workspace: Workspace,
    experience: str,
    runs: Iterable[dict[str, Any]],
    state_diffs: dict[str, list[dict[str, Any]]],
) -> Evidence:
    """Pool the evidence of `runs` (state-store rows), streaming each event log once."""
    evidence = Evidence(experience)
    for row in runs:
        reader = _RunReader(evidence, row["id"])
        log = workspace.log_path(row["id"])
        if log.exists():
            for event in read_events(log):
                reader.feed(event)
        run = reader.close()
        if run.status == "interrupted" and row.get("status") not in (None, "running"):
            run.status = row["status"]
        run.reason = run.reason or row.get("reason")
        run.state_diff = state_diffs.get(row["id"], [])
        evidence.runs.append(run)
    return evidence
