"""Evidence for the advisor: each run's event log folded into its view (`evolve.view`), pooled
across runs.

For every node: attempts and their durations (p50/p95/max), timeouts with the limit that was hit,
failures by error type, retries, items whose attempts ran out, schema errors, LLM tokens and cost,
and for `for_each` nodes the wall time against the time items spent running. Every finding keeps
the run and event `seq` it came from, so a proposal can cite it. The log is never held in memory.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from evolve.store.log import read_events
from evolve.store.workspace import Workspace
from evolve.view import AttemptView, RunView, fold

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
    # 8 bytes an attempt: a million-item fan-out holds a million of each
    durations_ms: array[int] = field(default_factory=lambda: array("q"))  # every ended attempt
    succeeded_ms: array[int] = field(default_factory=lambda: array("q"))  # finished: observed
    timeouts: list[Ref] = field(default_factory=list)
    timeout_limits: list[int] = field(default_factory=list)
    failures: dict[str, list[Ref]] = field(default_factory=dict)  # by error_type
    messages: dict[str, str] = field(default_factory=dict)  # one example per error_type
    retries: list[Ref] = field(default_factory=list)
    exhausted: list[tuple[Ref, str]] = field(default_factory=list)  # (last failure, error_type)
    schema_errors: list[tuple[Ref, list[str]]] = field(default_factory=list)
    items: int = 0
    items_failed: list[tuple[str, int]] = field(default_factory=list)  # (run, item)
    skips: list[str] = field(default_factory=list)  # "run: reason" (a false when shows its values)
    fan_out: list[dict[str, Any]] = field(default_factory=list)  # per run: wall, busy, items
    llm_calls: int = 0
    cut: list[Ref] = field(default_factory=list)  # replies cut at max_tokens (finish_reason)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None

    def refs(self, *types: str) -> list[Ref]:
        """The failures of these types (any, without types), in log order."""
        return sorted(
            (r for k, v in self.failures.items() if not types or k in types for r in v),
            key=_log_order,
        )

    def put_in_order(self) -> None:
        """Every list of refs in log order, by run, then event seq: items finish out of order,
        and whoever reads the evidence (a proposal's citations, the model advisor's request,
        which keeps the first ten) looks them up in order."""
        pairs = sorted(
            zip(self.timeouts, self.timeout_limits, strict=True), key=lambda p: _log_order(p[0])
        )
        self.timeouts = [r for r, _ in pairs]
        self.timeout_limits = [limit for _, limit in pairs]
        for refs in (self.cut, *self.failures.values()):
            refs.sort(key=_log_order)
        self.exhausted.sort(key=lambda p: _log_order(p[0]))

    def schema_repeated(self) -> bool:
        """Whether a reply repeated the schema violation of the reply before it word for word
        (the first reply and its repair): not transient, so a retry would not help."""
        pairs = zip(self.schema_errors, self.schema_errors[1:], strict=False)
        return any(a[0].run == b[0].run and a[1] == b[1] for a, b in pairs)

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
            **({"schema_repeated": True} if self.schema_repeated() else {}),
            "items": self.items,
            "items_failed": len(self.items_failed),
            **({"skipped": self.skips[:5]} if self.skips else {}),
            "fan_out": self.fan_out,
            "llm_calls": self.llm_calls,
            **({"replies_cut_at_max_tokens": [str(r) for r in self.cut[:10]]} if self.cut else {}),
            "tokens": {"in": self.tokens_in, "out": self.tokens_out},
            "cost_usd": self.cost_usd,
        }


def percentile(values: Sequence[int], pct: float) -> int | None:
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
    score: float | None = None
    case_id: str | None = None
    failing_evals: list[dict[str, Any]] = field(default_factory=list)  # with their reasons


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
                    **({"case": r.case_id} if r.case_id else {}),
                    **({"score": r.score} if r.score is not None else {}),
                    **({"failing_evals": r.failing_evals} if r.failing_evals else {}),
                }
                for r in self.runs
            ],
            "nodes": [n.summary() for n in self.nodes.values()],
        }


def _pool(evidence: Evidence, run_id: str, view: RunView) -> None:
    """Add one run's folded view to the pooled evidence."""
    nodes = sorted(
        (n for n in view.nodes.values() if n.first_seq is not None), key=lambda n: n.first_seq
    )
    for node in nodes:
        found = evidence.node(node.id)
        found.runs.add(run_id)
        if node.status == "skipped" and node.reason:
            found.skips.append(f"{run_id}: {node.reason}")
        found.skips += [
            f"{run_id} item {i.index}: {i.skipped}" for i in node.items.views() if i.skipped
        ][:5]
        busy = 0
        cpu: int | None = 0  # None once an item's CPU time is unknown
        for duration, cpu_ms in node.items.plain_attempts():  # each an item's one success
            found.attempts += 1
            found.durations_ms.append(duration)
            found.succeeded_ms.append(duration)
            busy += duration
            cpu = None if cpu is None or cpu_ms is None else cpu + cpu_ms
        views = [a for i in node.items.views() for a in i.attempts]
        for attempt in [*node.attempts, *views]:
            found.attempts += 1
            if attempt.status == "succeeded":
                found.durations_ms.append(attempt.duration_ms or 0)
                found.succeeded_ms.append(attempt.duration_ms or 0)
                if attempt.item is not None:
                    busy += attempt.duration_ms or 0
                    cpu = None if cpu is None or attempt.cpu_ms is None else cpu + attempt.cpu_ms
            elif attempt.status == "timeout":  # our timeout_ms fired, not the provider's
                found.timeouts.append(Ref(run_id, attempt.timeout_seq or attempt.seq))
                found.timeout_limits.append(attempt.timeout_ms or 0)
                found.durations_ms.append(attempt.timeout_ms or 0)
            if attempt.status in ("failed", "timeout"):
                kind = _error_type(attempt)
                found.failures.setdefault(kind, []).append(Ref(run_id, attempt.seq))
                found.messages.setdefault(kind, attempt.error or "")
        found.retries += [Ref(run_id, seq) for seq in node.retry_seqs]
        found.schema_errors += [(Ref(run_id, seq), errors) for seq, errors in node.schema_errors]
        for wall_ms, items in node.finishes:
            found.items += items
            found.fan_out.append(
                {"run": run_id, "wall_ms": wall_ms, "busy_ms": busy, "cpu_ms": cpu, "items": items}
            )
        found.llm_calls += node.llm_calls
        found.cut += [Ref(run_id, seq) for seq in node.cut_seqs]
        found.tokens_in += node.tokens_in
        found.tokens_out += node.tokens_out
        if node.cost_usd is not None:
            found.cost_usd = (found.cost_usd or 0.0) + node.cost_usd
        tries = [(None, node.attempts)] if node.attempts else []
        tries += [(i.index, i.attempts) for i in node.items.views() if i.attempts]
        for item, attempts in tries:
            last = attempts[-1]
            if last.status in ("failed", "timeout"):  # its attempts ran out (or the run stopped)
                found.exhausted.append((Ref(run_id, last.seq), _error_type(last)))
                if item is not None:
                    found.items_failed.append((run_id, item))


def _error_type(attempt: AttemptView) -> str:
    """`deadline` for an attempt that ran into its own timeout_ms: retrying a too-short limit
    fails the same way, unlike a provider's timeout."""
    return "deadline" if attempt.status == "timeout" else attempt.error_type or "error"


def gather(
    workspace: Workspace,
    experience: str,
    runs: Iterable[dict[str, Any]],
    state_diffs: dict[str, list[dict[str, Any]]],
) -> Evidence:
    """Pool the evidence of `runs` (state-store rows), streaming each event log once."""
    evidence = Evidence(experience)
    for row in runs:
        log = workspace.log_path(row["id"])
        view = fold(read_events(log) if log.exists() else (), None)
        _pool(evidence, row["id"], view)
        status = view.status if view.finished else "interrupted"
        if not view.finished and row.get("status") not in (None, "running"):
            status = row["status"]
        run = RunEvidence(row["id"], status, view.reason, view.duration_ms, view.events)
        if not view.finished:
            run.duration_ms = None
        run.reason = run.reason or row.get("reason")
        run.state_diff = state_diffs.get(row["id"], [])
        run.score, run.case_id = view.score, row.get("case_id")
        run.failing_evals = [
            {k: e[k] for k in ("eval", "score", "reason", "required") if e.get(k) is not None}
            for e in view.evals
            if e.get("passed") is False
        ]
        evidence.runs.append(run)
    for node in evidence.nodes.values():
        node.put_in_order()
    return evidence


def _log_order(ref: Ref) -> tuple[str, int]:
    return (ref.run, ref.seq)
