"""Verification (`evolve propose --verify`): every candidate proposal is applied to a scratch copy
of the experience and re-run with what the original runs ran, and its effect is measured.

Contracts:
- A re-run uses the original run's args (for a suite, each case run's case again), in a scratch
  copy of the experience directory and a scratch workspace: the user's workspace gets no runs.
- Model calls whose request is unchanged are answered from the original runs' own recorded calls
  (the `llm_calls` rows); other calls go to `fallback` (the configured model, or with `--offline`
  the experience's cassettes). A call nothing can answer makes the candidate unverified, with the
  count. Tools run again, as in any run.
- Candidates re-run concurrently (`concurrency` at once); at most `budget` re-runs in total; the
  model cost of all re-runs is summed and, with `max_cost`, no re-run starts once it is spent.
- A proposal whose value is a guess carries `search`: further values, tried in order until one
  improves the run (the first that works is proposed, and the line says what was tried).
- The effect compares the patched runs with the originals: the score (when there are evals, with
  the paired bootstrap interval over cases for a suite) and run health. Worse status or score is
  `worse`; the caller moves those to the appendix.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.advisor.proposal import Proposal
from evolve.evals.cases import load_cases
from evolve.evals.compare import bootstrap_interval
from evolve.llm.cassettes import request_key
from evolve.llm.model import Model, ModelError, ModelReply, ModelRequest
from evolve.spec import load_experience
from evolve.store.log import read_events
from evolve.store.workspace import Workspace
from evolve.store.writer import StateStore
from evolve.view import RunView, fold

MAX_CANDIDATES = 8  # candidates verified; at most MAX_PROPOSALS of them are emitted
STATUS_RANK = {"success": 0, "partial": 1, "failed": 2, "interrupted": 3}
SCORE_EPSILON = 0.005
MIN_SAVED_MS = 200  # a faster run counts only beyond timing noise: a quarter and this much


@dataclass
class Health:
    """What a run (or the runs of one candidate, pooled) did: the figures that are compared."""

    status: str
    runs: int = 1
    score: float | None = None
    case_scores: dict[str, float] = field(default_factory=dict)
    failed_nodes: int = 0
    skipped_nodes: int = 0
    failed_items: int = 0
    timeouts: int = 0
    retries: int = 0
    schema_failures: int = 0
    duration_ms: int = 0
    tokens: int = 0
    cost_usd: float | None = None

    @property
    def problems(self) -> int:
        """What went wrong, counted once each (a retry is a cost, not an outcome)."""
        return self.failed_nodes + self.failed_items + self.timeouts + self.schema_failures

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "runs": self.runs,
            "score": self.score,
            "failed_nodes": self.failed_nodes,
            "skipped_nodes": self.skipped_nodes,
            "failed_items": self.failed_items,
            "timeouts": self.timeouts,
            "retries": self.retries,
            "schema_failures": self.schema_failures,
            "duration_ms": self.duration_ms,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
        }


def health_of(view: RunView, case_id: str | None = None) -> Health:
    """One run's figures, from its folded log."""
    found = Health(view.status if view.finished else "interrupted", score=view.score)
    if case_id is not None and view.score is not None:
        found.case_scores[case_id] = view.score
    for node in view.nodes.values():
        found.failed_nodes += node.status == "failed"
        found.skipped_nodes += node.status == "skipped"
        found.failed_items += sum(
            1 for i in node.items.views() if i.attempts and i.attempts[-1].status != "succeeded"
        )
        found.timeouts += node.timeouts
        found.retries += node.retries
        found.schema_failures += node.schema_invalid
    found.duration_ms = view.duration_ms or 0
    found.tokens = view.tokens_in + view.tokens_out
    found.cost_usd = view.cost_usd
    return found


def pooled(healths: list[Health]) -> Health:
    """Several runs as one: the worst status, the mean score, the sums of the rest."""
    worst = max(healths, key=lambda h: STATUS_RANK.get(h.status, 3)).status
    scores = [h.score for h in healths if h.score is not None]
    out = Health(worst, runs=len(healths), score=sum(scores) / len(scores) if scores else None)
    for h in healths:
        out.case_scores.update(h.case_scores)
        for name in (
            "failed_nodes",
            "skipped_nodes",
            "failed_items",
            "timeouts",
            "retries",
            "schema_failures",
            "duration_ms",
            "tokens",
        ):
            setattr(out, name, getattr(out, name) + getattr(h, name))
        if h.cost_usd is not None:
            out.cost_usd = (out.cost_usd or 0.0) + h.cost_usd
    return out


@dataclass
class Verification:
    """What re-running one candidate showed."""

    verdict: str  # better | same | worse | unverified
    baseline: Health
    patched: Health | None = None
    missing_calls: int = 0  # calls nothing could answer
    new_calls: int = 0  # calls not answered from the original runs' recorded calls
    reason: str = ""  # why unverified
    tried: list[str] = field(default_factory=list)  # a search: each value and how it went
    interval: tuple[float, float] | None = None  # paired bootstrap of per-case score deltas
    effect: float = 0.0  # for ranking: larger is a stronger measured improvement

    def delta(self) -> dict[str, Any]:
        if self.patched is None:
            return {}
        b, p = self.baseline.to_json(), self.patched.to_json()
        out: dict[str, Any] = {}
        for key, value in p.items():
            if isinstance(value, int | float) and isinstance(b.get(key), int | float):
                out[key] = round(value - b[key], 6)
        if self.interval:
            out["score_interval"] = [round(x, 4) for x in self.interval]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "baseline": self.baseline.to_json(),
            "patched": self.patched.to_json() if self.patched else None,
            "delta": self.delta(),
            "new_model_calls": self.new_calls,
            "missing_model_calls": self.missing_calls,
            **({"reason": self.reason} if self.reason else {}),
            **({"tried": self.tried} if self.tried else {}),
            "line": self.line(),
        }

    def line(self) -> str:
        """One line for the markdown: what the re-run showed."""
        if self.verdict == "unverified" or self.patched is None:
            return f"Not verified: {self.reason}."
        b, p = self.baseline, self.patched
        parts = [f"{b.status} -> {p.status}" if b.status != p.status else f"{p.status} as before"]
        for name, label in (
            ("failed_nodes", "failed nodes"),
            ("failed_items", "failed items"),
            ("timeouts", "timeouts"),
            ("retries", "retries"),
            ("schema_failures", "schema failures"),
            ("skipped_nodes", "skipped nodes"),
        ):
            before, after = getattr(b, name), getattr(p, name)
            if before != after:
                parts.append(f"{label} {before} -> {after}")
        if b.score is not None and p.score is not None:
            over = f" over {len(p.case_scores)} cases" if len(p.case_scores) > 1 else ""
            parts.append(f"score {b.score:.2f} -> {p.score:.2f}{over}")
            if self.interval and len(p.case_scores) > 1:
                low, high = self.interval
                parts[-1] += f" (95% interval of the change {low:+.2f} to {high:+.2f})"
        if b.duration_ms:
            change = (p.duration_ms - b.duration_ms) / b.duration_ms
            parts.append(f"duration {change:+.0%}")
        parts.append(
            "no new model calls"
            if not self.new_calls
            else f"{self.new_calls} new model call{'s' * (self.new_calls > 1)}"
        )
        text = "Verified by re-running: " + ", ".join(parts)
        if self.tried:
            text += "; tried " + "; ".join(self.tried)
        return text


def judge(baseline: Health, patched: Health) -> tuple[str, float]:
    """better, same or worse, and the size of the effect (for ranking and confidence).

    Worse is a worse status or a lower score; anything else that improves nothing is `same`
    (its line still shows every figure that moved)."""
    b_rank, p_rank = STATUS_RANK.get(baseline.status, 3), STATUS_RANK.get(patched.status, 3)
    if p_rank > b_rank:
        return "worse", -1.0
    score_delta = 0.0
    if baseline.score is not None and patched.score is not None:
        score_delta = patched.score - baseline.score
        if score_delta < -SCORE_EPSILON:
            return "worse", score_delta
    if p_rank < b_rank:
        return "better", 1.0 + (b_rank - p_rank) + max(score_delta, 0.0)
    if score_delta > SCORE_EPSILON:
        return "better", 0.5 + score_delta
    if patched.problems < baseline.problems:
        return "better", 0.2 + 0.3 * (1 - patched.problems / max(baseline.problems, 1))
    saved = baseline.duration_ms - patched.duration_ms
    if saved >= MIN_SAVED_MS and patched.duration_ms < 0.75 * baseline.duration_ms:
        return "better", 0.1 + 0.2 * (1 - patched.duration_ms / baseline.duration_ms)
    return "same", 0.0


def confidence_from(verification: Verification) -> str:
    """From the measured effect, not from how many events were seen."""
    if verification.verdict != "better":
        return "low"
    if verification.interval and len(verification.patched.case_scores) > 1:  # type: ignore[union-attr]
        low, _ = verification.interval
        if low <= 0 and verification.effect < 1.0:
            return "low"  # the suite's cases do not agree the change helps
    if verification.effect >= 1.0 or verification.effect >= 0.6:
        return "high"
    if verification.effect >= 0.2:
        return "medium"
    return "low"


class RecordedCalls:
    """Answers a re-run's model calls: from the original runs' recorded calls when the request
    is unchanged, else from `fallback`; counts the calls made anew and those nothing answered."""

    def __init__(self, recorded: dict[str, list[dict[str, Any]]], fallback: Model | None):
        self.recorded = {k: list(v) for k, v in recorded.items()}  # this re-run's own copy
        self.fallback = fallback
        self.new_calls = 0
        self.missing = 0

    async def complete(self, request: ModelRequest) -> ModelReply:
        key = request_key(request)
        replies = self.recorded.get(key)
        if replies:  # in the order they were given; the last one stands for any more
            row = replies.pop(0) if len(replies) > 1 else replies[0]
            return ModelReply(
                text=row["text"],
                model=row.get("model") or request.model,
                tokens_in=row.get("tokens_in"),
                tokens_out=row.get("tokens_out"),
                cost_usd=row.get("cost_usd"),
                replayed=True,
                key=key,
                mode=row.get("mode"),
                finish_reason=row.get("finish_reason"),
            )
        self.new_calls += 1
        if self.fallback is None:
            self.missing += 1
            raise ModelError(
                f"node '{request.node_id}' asks a new question and no model is configured",
                "cassette_miss",
            )
        try:
            return await self.fallback.complete(request)
        except ModelError:  # a call that failed measures the provider, not the candidate
            self.missing += 1
            raise


@dataclass
class Original:
    """A run to re-run: its args and, in a suite, its case."""

    run_id: str
    args: dict[str, Any]
    case_id: str | None
    health: Health
    model: str | None = None  # the one model it ran with, passed again (same request keys)
    replayed: bool = False  # it ran on cassettes with no model named ("replay")


@dataclass
class VerifyOptions:
    concurrency: int = 4
    budget: int | None = None  # re-runs in total
    max_cost: float | None = None
    offline: bool = False
    fallback: Model | None = None  # answers new calls (None: they cannot be made)


class Verifier:
    """Re-runs candidates against the originals; see the module docstring."""

    def __init__(
        self,
        experience_dir: Path,
        workspace: Workspace,
        rows: list[dict[str, Any]],
        options: VerifyOptions,
    ):
        self.experience_dir = experience_dir
        self.options = options
        self.originals = [_original(workspace, r) for r in rows]
        self.baseline = pooled([o.health for o in self.originals])
        self.recorded = _recorded_calls(workspace, [r["id"] for r in rows])
        self.reruns = 0
        self.cost_usd: float | None = None
        self.seconds = 0.0  # the sum of every re-run's own duration
        self.wall_seconds = 0.0  # how long verification took, start to end

    def verify(self, candidates: list[Proposal], scratch_files) -> dict[int, Verification]:
        """A verification per candidate (by position); `scratch_files(proposal)` gives the files
        the proposal writes, as paths inside the experience -> content."""
        began = time.monotonic()
        try:
            return asyncio.run(self._verify_all(candidates, scratch_files))
        finally:
            self.wall_seconds = time.monotonic() - began

    async def _verify_all(self, candidates, scratch_files) -> dict[int, Verification]:
        slots = asyncio.Semaphore(max(1, self.options.concurrency))
        results: dict[int, Verification] = {}
        with tempfile.TemporaryDirectory(prefix="evolve-verify-") as tmp:

            async def one(i: int, proposal: Proposal) -> None:
                async with slots:
                    results[i] = await self._candidate(Path(tmp) / f"c{i}", proposal, scratch_files)

            async with asyncio.TaskGroup() as group:
                for i, proposal in enumerate(candidates):
                    group.create_task(one(i, proposal))
        return results

    async def _candidate(self, scratch: Path, proposal: Proposal, scratch_files) -> Verification:
        """Re-run the proposal; for a search, each value in turn until one makes it better."""
        tried: list[str] = []
        first: Verification | None = None
        for n, option in enumerate([proposal, *proposal.search]):
            found = await self._rerun(scratch / str(n), scratch_files(option))
            first = first or found
            if proposal.search:
                tried.append(f"{option.search_label}: {_short(found, option.search_shows)}")
                found.tried = first.tried = list(tried)
            if found.verdict == "better":
                if option is not proposal:
                    proposal.adopt(option)
                return found
            if found.verdict == "unverified":
                break
        assert first is not None
        return first

    async def _rerun(self, scratch: Path, files: dict[str, str | None]) -> Verification:
        need = len(self.originals)
        budget = self.options.budget
        if budget is not None and self.reruns + need > budget:
            return Verification(
                "unverified",
                self.baseline,
                reason=f"the --verify-budget of {budget} re-runs was spent",
            )
        if self.options.max_cost is not None and (self.cost_usd or 0.0) >= self.options.max_cost:
            return Verification(
                "unverified", self.baseline, reason="the --max-cost budget was spent"
            )
        self.reruns += need
        directory = scratch / self.experience_dir.name
        shutil.copytree(
            self.experience_dir,
            directory,
            ignore=shutil.ignore_patterns(".evolve", ".git", "__pycache__"),
        )
        for name, content in files.items():
            if content is not None:
                target = directory / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content, encoding="utf-8")
        fallback = self.options.fallback
        if self.options.offline:
            from evolve.llm import build_model

            fallback = build_model(directory, offline=True)
        model = RecordedCalls(self.recorded, fallback)
        workspace = Workspace(scratch / ".evolve").create()
        healths = await asyncio.to_thread(self._run_all, directory, workspace, model)
        patched = pooled(healths)
        if patched.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + patched.cost_usd
        self.seconds += patched.duration_ms / 1000
        if model.missing:
            return Verification(
                "unverified",
                self.baseline,
                patched,
                missing_calls=model.missing,
                new_calls=model.new_calls,
                reason=f"{model.missing} new model call{'s' * (model.missing > 1)} could not be "
                "made (no recorded reply, and "
                + ("no cassette line" if self.options.offline else "no model, or it failed")
                + ")",
            )
        verdict, effect = judge(self.baseline, patched)
        found = Verification(verdict, self.baseline, patched, new_calls=model.new_calls)
        found.effect = effect
        found.interval = _paired(self.baseline, patched)
        return found

    def _run_all(self, directory: Path, workspace: Workspace, model: RecordedCalls) -> list[Health]:
        """Each original run again, one after another, in its own event loop (a thread)."""
        from evolve.runtime.run import Run, RunOptions

        experience = load_experience(directory)
        cases = (
            {c.id: c for c in load_cases(experience.cases)} if experience.cases is not None else {}
        )
        store = StateStore.open(workspace.database)
        healths: list[Health] = []
        base = model.fallback
        try:
            for original in self.originals:
                case = cases.get(original.case_id) if original.case_id else None
                if case is not None and hasattr(base, "for_case"):  # a case's own cassette lines
                    model.fallback = base.for_case(case.id)  # type: ignore[union-attr]
                options = RunOptions(
                    args=case.args if case else original.args,
                    model=original.model,
                    case=case.to_json() if case else None,
                    max_cost=self.options.max_cost,
                    offline=self.options.offline or original.replayed,
                )
                run = Run(experience, workspace, store, options, model)
                result = asyncio.run(run.execute())
                view = fold(read_events(result.log_path), None)
                healths.append(health_of(view, original.case_id))
        finally:
            store.close()
        return healths


FIGURES = {
    "timeouts": "timeouts",
    "failed_nodes": "failed nodes",
    "failed_items": "failed items",
    "retries": "retries",
}


def _short(found: Verification, shows: tuple[str, ...] = ("timeouts",)) -> str:
    """One step of a search: the status and the figures that tell how it went."""
    if found.verdict == "unverified" or found.patched is None:
        return "not verified"
    b, p = found.baseline, found.patched
    parts = [p.status]
    for name in shows:
        if name == "duration_ms":
            if b.duration_ms:
                parts.append(f"duration {(p.duration_ms - b.duration_ms) / b.duration_ms:+.0%}")
        else:
            parts.append(f"{FIGURES[name]} {getattr(p, name)}")
    return ", ".join(parts) + (" (works)" if found.verdict == "better" else "")


def _paired(baseline: Health, patched: Health) -> tuple[float, float] | None:
    cases = sorted(set(baseline.case_scores) & set(patched.case_scores))
    if len(cases) < 2:
        return None
    return bootstrap_interval([patched.case_scores[c] - baseline.case_scores[c] for c in cases])


def _original(workspace: Workspace, row: dict[str, Any]) -> Original:
    log = workspace.log_path(row["id"])
    view = fold(read_events(log) if log.exists() else (), None)
    args = row.get("args")
    if isinstance(args, str):
        args = json.loads(args or "{}")
    model = row.get("model")
    return Original(
        row["id"],
        args or {},
        row.get("case_id"),
        health_of(view, row.get("case_id")),
        model=model if model and model != "replay" and ", " not in model else None,
        replayed=model == "replay" or "replay" in (model or "").split(", "),
    )


def _recorded_calls(workspace: Workspace, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The original runs' model replies, by request key, in the order they were given."""
    store = StateStore.open(workspace.database, readonly=True)
    try:
        if not store.db["llm_calls"].exists():
            return {}
        marks = ",".join("?" for _ in run_ids)
        rows = store.db.query(
            f"select key, model, request, response, tokens_in, tokens_out, cost_usd "
            f"from llm_calls where run_id in ({marks}) and key is not null order by id",
            run_ids,
        )
        found: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            response = json.loads(row["response"] or "{}")
            request = json.loads(row["request"] or "{}")
            if not isinstance(response, dict) or response.get("text") is None:
                continue
            found.setdefault(row["key"], []).append(
                {
                    "text": response["text"],
                    "model": row["model"],
                    "tokens_in": row["tokens_in"],
                    "tokens_out": row["tokens_out"],
                    "cost_usd": row["cost_usd"],
                    "mode": request.get("mode") if isinstance(request, dict) else None,
                    "finish_reason": response.get("finish_reason"),
                }
            )
        return found
    finally:
        store.close()
