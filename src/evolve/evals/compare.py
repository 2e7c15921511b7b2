"""`evolve compare A B`: did B do better than A on the same experience's evals?

A and B are runs or suite runs of one experience (any versions). Their case runs are paired by
case id (a plain run is the one case `-`); with repeats, a case's score is the mean over its
repeats and it passes when most of its repeats pass. The comparison holds:

- the mean score and pass rate of each side over the paired cases, the deltas (B - A), and a
  paired bootstrap 95% interval of the score delta (resampling cases, fixed seed, so the same
  runs always give the same interval);
- per-case flips (pass -> fail, fail -> pass), per-eval score and pass-rate deltas, and per-node
  mean duration, token and cost deltas per case run;
- whether the spec changed: both hashes, and the files whose digests differ (recorded per run, so
  no git checkout is needed).

Gates: `min_improvement` (B - A must reach it) and `no_regressions` (no pass -> fail flip).
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

from evolve.errors import UsageError
from evolve.store.queries import RunQueries

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 12


@dataclass
class Side:
    row: dict[str, Any]
    cases: dict[str, list[dict[str, Any]]]  # case id -> its case runs

    @property
    def id(self) -> str:
        return self.row["id"]

    def score(self, case: str) -> float:
        return statistics.fmean((r["score"] or 0.0) for r in self.cases[case])

    def passed(self, case: str) -> bool:
        runs = self.cases[case]
        return sum(bool(r["evals_passed"]) for r in runs) * 2 > len(runs)


@dataclass
class Comparison:
    a: dict[str, Any]
    b: dict[str, Any]
    paired: list[str]
    only_a: list[str]
    only_b: list[str]
    score_a: float | None
    score_b: float | None
    pass_a: float | None
    pass_b: float | None
    interval: tuple[float, float] | None
    flips: dict[str, list[str]]
    cases: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    spec: dict[str, Any]
    gates: list[str] = field(default_factory=list)

    @property
    def score_delta(self) -> float | None:
        if self.score_a is None or self.score_b is None:
            return None
        return self.score_b - self.score_a

    @property
    def pass_delta(self) -> float | None:
        if self.pass_a is None or self.pass_b is None:
            return None
        return self.pass_b - self.pass_a

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "paired_cases": len(self.paired),
            "only_in_a": self.only_a,
            "only_in_b": self.only_b,
            "score": {
                "a": self.score_a,
                "b": self.score_b,
                "delta": self.score_delta,
                "ci95": list(self.interval) if self.interval else None,
            },
            "pass_rate": {"a": self.pass_a, "b": self.pass_b, "delta": self.pass_delta},
            "flips": self.flips,
            "cases": self.cases,
            "evals": self.evals,
            "nodes": self.nodes,
            "spec": self.spec,
            "gates": self.gates,
        }


def compare(
    queries: RunQueries,
    ref_a: str,
    ref_b: str,
    *,
    min_improvement: float | None = None,
    no_regressions: bool = False,
) -> Comparison:
    row_a, row_b = queries.resolve(ref_a), queries.resolve(ref_b)
    if row_a["experience"] != row_b["experience"]:
        raise UsageError(
            f"{row_a['id']} is a run of {row_a['experience']} and {row_b['id']} of "
            f"{row_b['experience']}: compare runs of one experience"
        )
    a, b = _side(queries, row_a), _side(queries, row_b)
    paired = [c for c in a.cases if c in b.cases]
    if not paired:
        raise UsageError(f"{a.id} and {b.id} share no case: nothing to compare")
    score_a = statistics.fmean(a.score(c) for c in paired)
    score_b = statistics.fmean(b.score(c) for c in paired)
    result = Comparison(
        a=_header(a),
        b=_header(b),
        paired=paired,
        only_a=[c for c in a.cases if c not in b.cases],
        only_b=[c for c in b.cases if c not in a.cases],
        score_a=score_a,
        score_b=score_b,
        pass_a=sum(a.passed(c) for c in paired) / len(paired),
        pass_b=sum(b.passed(c) for c in paired) / len(paired),
        interval=bootstrap_interval([b.score(c) - a.score(c) for c in paired]),
        flips={
            "pass_to_fail": [c for c in paired if a.passed(c) and not b.passed(c)],
            "fail_to_pass": [c for c in paired if not a.passed(c) and b.passed(c)],
        },
        cases=[
            {
                "case": c,
                "a": a.score(c),
                "b": b.score(c),
                "delta": b.score(c) - a.score(c),
                "passed_a": a.passed(c),
                "passed_b": b.passed(c),
            }
            for c in paired
        ],
        evals=_eval_deltas(queries, a, b, paired),
        nodes=_node_deltas(queries, a, b),
        spec=_spec(a, b),
    )
    delta = result.score_delta or 0.0
    if min_improvement is not None and delta < min_improvement:
        result.gates.append(
            f"score improved by {delta:+.3f}, less than --min-improvement {min_improvement}"
        )
    if no_regressions and result.flips["pass_to_fail"]:
        result.gates.append(
            "cases that passed in A fail in B: " + ", ".join(result.flips["pass_to_fail"])
        )
    return result


def bootstrap_interval(
    deltas: list[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """The paired bootstrap 95% interval of the mean of per-case deltas (percentile method)."""
    if len(deltas) == 1:
        return (deltas[0], deltas[0])
    rng = random.Random(seed)
    n = len(deltas)
    means = sorted(sum(rng.choices(deltas, k=n)) / n for _ in range(samples))
    return (means[int(0.025 * samples)], means[int(0.975 * samples) - 1])


def _side(queries: RunQueries, row: dict[str, Any]) -> Side:
    runs = queries.children(row["id"]) if row.get("kind") == "suite" else [row]
    cases: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        cases.setdefault(r.get("case_id") or r.get("parent_node") or "-", []).append(r)
    if all(r["score"] is None and r["evals_passed"] is None for r in runs):
        raise UsageError(f"run {row['id']} has no eval scores (its experience has no evals)")
    return Side(row, cases)


def _header(side: Side) -> dict[str, Any]:
    row = side.row
    return {
        "id": row["id"],
        "kind": row.get("kind") or "run",
        "experience": row["experience"],
        "spec_hash": row["spec_hash"],
        "started_at": row["started_at"],
        "cases": sum(len(v) for v in side.cases.values()),
    }


def _eval_deltas(queries: RunQueries, a: Side, b: Side, paired: list[str]) -> list[dict[str, Any]]:
    def table(side: Side) -> dict[str, tuple[float, float]]:
        wanted = {r["id"] for c in paired for r in side.cases[c]}
        found: dict[str, list[tuple[float, bool]]] = {}
        for e in queries.eval_rows(side.id, side.row.get("kind") == "suite"):
            if e["run_id"] in wanted:
                found.setdefault(e["eval"], []).append((e["score"], bool(e["passed"])))
        return {
            name: (statistics.fmean(s for s, _ in v), sum(p for _, p in v) / len(v))
            for name, v in found.items()
        }

    ta, tb = table(a), table(b)
    out = []
    for name in [*ta, *(n for n in tb if n not in ta)]:
        sa, pa = ta.get(name, (None, None))
        sb, pb = tb.get(name, (None, None))
        out.append(
            {
                "eval": name,
                "a": sa,
                "b": sb,
                "delta": None if sa is None or sb is None else sb - sa,
                "pass_rate_a": pa,
                "pass_rate_b": pb,
            }
        )
    return out


def _node_deltas(queries: RunQueries, a: Side, b: Side) -> list[dict[str, Any]]:
    na = queries.node_costs(a.id, a.row.get("kind") == "suite")
    nb = queries.node_costs(b.id, b.row.get("kind") == "suite")
    runs_a = max(1, sum(len(v) for v in a.cases.values()))
    runs_b = max(1, sum(len(v) for v in b.cases.values()))
    out = []
    for node in [*na, *(n for n in nb if n not in na)]:
        row: dict[str, Any] = {"node": node}
        for key in ("duration_ms", "tokens", "cost_usd"):
            va = na.get(node, {}).get(key)
            vb = nb.get(node, {}).get(key)
            va = None if va is None else va / runs_a
            vb = None if vb is None else vb / runs_b
            row[key] = {
                "a": va,
                "b": vb,
                "delta": None if va is None or vb is None else vb - va,
            }
        out.append(row)
    return out


def _spec(a: Side, b: Side) -> dict[str, Any]:
    fa = json.loads(a.row.get("spec_files") or "null") or {}
    fb = json.loads(b.row.get("spec_files") or "null") or {}
    changed = a.row["spec_hash"] != b.row["spec_hash"]
    files = sorted(f for f in {*fa, *fb} if fa.get(f) != fb.get(f)) if fa and fb else None
    return {"changed": changed, "a": a.row["spec_hash"], "b": b.row["spec_hash"], "files": files}


# -- rendering -----------------------------------------------------------------------------------


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value * 100:+.0f}%" if signed else f"{value * 100:.0f}%"


def text_lines(c: Comparison) -> list[str]:
    """The comparison for a terminal (and, with `markdown_lines`, for a pull request)."""
    lo, hi = c.interval or (None, None)
    lines = [
        f"A {c.a['id']} ({c.a['kind']}, {c.a['cases']} case runs)  ->  "
        f"B {c.b['id']} ({c.b['kind']}, {c.b['cases']} case runs)",
        f"spec: {_spec_text(c.spec)}",
        f"score: {_num(c.score_a)} -> {_num(c.score_b)}  {_num(c.score_delta, True)}  "
        f"95% CI [{_num(lo, True)}, {_num(hi, True)}] over {len(c.paired)} paired cases",
        f"pass rate: {_pct(c.pass_a)} -> {_pct(c.pass_b)}  {_pct(c.pass_delta, True)}",
        "flips: pass->fail: "
        + (", ".join(c.flips["pass_to_fail"]) or "none")
        + "; fail->pass: "
        + (", ".join(c.flips["fail_to_pass"]) or "none"),
    ]
    if c.only_a or c.only_b:
        lines.append(
            f"unpaired cases: only in A: {', '.join(c.only_a) or 'none'}; "
            f"only in B: {', '.join(c.only_b) or 'none'}"
        )
    lines.append("evals:")
    for e in c.evals:
        lines.append(
            f"  {e['eval']}: {_num(e['a'])} -> {_num(e['b'])} ({_num(e['delta'], True)}), "
            f"pass {_pct(e['pass_rate_a'])} -> {_pct(e['pass_rate_b'])}"
        )
    lines.append("nodes (mean per case run):")
    for n in c.nodes:
        lines.append("  " + _node_text(n))
    return lines


def _spec_text(spec: dict[str, Any]) -> str:
    if not spec["changed"]:
        return f"unchanged ({spec['a']})"
    files = ", ".join(spec["files"]) if spec["files"] else "files not recorded"
    return f"changed {spec['a']} -> {spec['b']} ({files})"


def _node_text(n: dict[str, Any]) -> str:
    d, t, k = n["duration_ms"], n["tokens"], n["cost_usd"]
    text = f"{n['node']}: {_ms(d['a'])} -> {_ms(d['b'])}"
    if t["a"] or t["b"]:
        text += f", tokens {_int(t['a'])} -> {_int(t['b'])}"
    if k["a"] is not None or k["b"] is not None:
        text += f", cost {_usd(k['a'])} -> {_usd(k['b'])}"
    return text


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ms"


def _int(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def _usd(v: float | None) -> str:
    return "—" if v is None else f"${v:.4f}"


def markdown(c: Comparison) -> str:
    """A pull-request comment: the verdict first, then the tables."""
    lo, hi = c.interval or (None, None)
    verdict = "❌ gates failed: " + "; ".join(c.gates) if c.gates else "✅ gates passed"
    out = [
        f"### evolve compare: {c.a['experience']}",
        "",
        f"**score {_num(c.score_a)} → {_num(c.score_b)} ({_num(c.score_delta, True)}, "
        f"95% CI [{_num(lo, True)}, {_num(hi, True)}])** · pass rate {_pct(c.pass_a)} → "
        f"{_pct(c.pass_b)} · {len(c.paired)} paired cases · {verdict}",
        "",
        f"A `{c.a['id']}` → B `{c.b['id']}` · spec {_spec_text(c.spec)}",
        "",
        "| flips | cases |",
        "|---|---|",
        f"| pass → fail | {', '.join(c.flips['pass_to_fail']) or 'none'} |",
        f"| fail → pass | {', '.join(c.flips['fail_to_pass']) or 'none'} |",
        "",
        "| eval | A | B | Δ | pass A | pass B |",
        "|---|---|---|---|---|---|",
    ]
    for e in c.evals:
        out.append(
            f"| {e['eval']} | {_num(e['a'])} | {_num(e['b'])} | {_num(e['delta'], True)} | "
            f"{_pct(e['pass_rate_a'])} | {_pct(e['pass_rate_b'])} |"
        )
    out += ["", "| node | duration A → B | tokens A → B | cost A → B |", "|---|---|---|---|"]
    for n in c.nodes:
        d, t, k = n["duration_ms"], n["tokens"], n["cost_usd"]
        out.append(
            f"| {n['node']} | {_ms(d['a'])} → {_ms(d['b'])} | {_int(t['a'])} → {_int(t['b'])} "
            f"| {_usd(k['a'])} → {_usd(k['b'])} |"
        )
    return "\n".join(out) + "\n"
