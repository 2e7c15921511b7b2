"""`evolve eval`: one suite run over the cases of an experience, each case a scored child run.

The suite is a run of its own (`runs.kind = 'suite'`, its own id and event log), so `inspect`,
`runs`, `propose` and `compare` take it like any run. Every case runs `repeat` times as a child
run of the suite (`parent_run_id` the suite, `parent_node` the case id), with the case's `args`
as initial state and its evals scored on the final state. The suite log holds `run.started`, an
`eval.case` event per finished case run, and `run.finished` with the mean score and pass rate.
A case whose arguments are refused, or whose run fails, is one failing row: the other cases
still run and are scored.

With the Ray executor (`--executor ray[=ADDRESS]`, docs/ray.md) every Python tool attempt of a
case run is a Ray task, while this process keeps scheduling the cases, their model calls, the
policies and the recording (one writer); `eval.case` then names the Ray nodes the case ran on
(`workers`), and the cases run at once default to the cluster's CPUs (at least 4).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.errors import EvolveError, UsageError
from evolve.evals.cases import Case, load_cases, select
from evolve.evals.summary import spread_of
from evolve.events import EvalCase, RunFinished, RunStarted
from evolve.llm.model import Model
from evolve.runtime.driver import drive_until_interrupted
from evolve.runtime.ray_executor import RayExecutor, executor_for
from evolve.runtime.run import (
    Run,
    RunOptions,
    RunResult,
    check_models,
    check_offline,
)
from evolve.spec import Experience, load_experience
from evolve.store.log import EventLog, read_events
from evolve.store.queries import RunQueries
from evolve.store.recorder import Recorder, RunEnd, RunStart
from evolve.store.workspace import Workspace, new_run_id
from evolve.store.writer import StateStore

DEFAULT_CASE_CONCURRENCY = 4


@dataclass
class CaseResult:
    case_id: str
    repeat: int
    run_id: str | None
    status: str  # the child run's status, or "error" when it could not start
    score: float | None = None
    passed: bool = False
    failing: list[dict[str, Any]] = field(default_factory=list)  # {eval, reason}
    duration_ms: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    error: str | None = None
    workers: list[str] | None = None  # the Ray nodes its attempts ran on (--executor ray)

    def to_json(self) -> dict[str, Any]:
        fields = dict(self.__dict__)
        if fields["workers"] is None:  # a local suite records what it always did
            del fields["workers"]
        return fields


@dataclass
class SuiteResult:
    suite_id: str
    experience: str
    status: str
    duration_ms: int
    log_path: Path
    cases: list[CaseResult]
    repeat: int = 1

    @property
    def score(self) -> float | None:
        return mean_score(self.cases)

    @property
    def pass_rate(self) -> float | None:
        return pass_rate(self.cases)

    @property
    def spread(self) -> float | None:
        return spread(self.cases)

    @property
    def tokens_in(self) -> int:
        return sum(c.tokens_in for c in self.cases)

    @property
    def tokens_out(self) -> int:
        return sum(c.tokens_out for c in self.cases)

    @property
    def cost_usd(self) -> float | None:
        costs = [c.cost_usd for c in self.cases if c.cost_usd is not None]
        return sum(costs) if costs else None

    def to_json(self) -> dict[str, Any]:
        return {
            "suite_id": self.suite_id,
            "experience": self.experience,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "repeat": self.repeat,
            "score": self.score,
            "pass_rate": self.pass_rate,
            "spread": self.spread,
            "tokens": {"in": self.tokens_in, "out": self.tokens_out},
            "cost_usd": self.cost_usd,
            "cases": [c.to_json() for c in self.cases],
        }


def mean_score(cases: list[CaseResult]) -> float | None:
    return sum(c.score or 0.0 for c in cases) / len(cases) if cases else None


def pass_rate(cases: list[CaseResult]) -> float | None:
    return sum(c.passed for c in cases) / len(cases) if cases else None


def spread(cases: list[CaseResult]) -> float | None:
    return spread_of([(c.case_id, c.score) for c in cases])


@dataclass
class SuiteOptions:
    run: RunOptions = field(default_factory=RunOptions)  # model, replay, budget: for every case
    case_ids: list[str] = field(default_factory=list)  # --case; empty: all
    repeat: int = 1
    concurrency: int | None = None  # cases at once (default: cases.concurrency, else 4)
    on_case: Callable[[CaseResult, int, int], None] | None = None  # (result, done, total)
    source: str | None = None  # `evolve resume SUITE`: each case run reuses its earlier one


def run_suite(
    path: str | Path, workspace: Workspace, options: SuiteOptions, model: Model | None = None
) -> SuiteResult:
    """Load the experience and its cases, run every case (repeat times), score, record."""
    experience = load_experience(path)
    executor = executor_for(experience, options.run.executor)
    if executor is not None:  # joined before anything is recorded
        executor.connect(experience.directory)
    if experience.cases is None:
        raise UsageError(
            f"{experience.name} has no cases: add `cases: {{source: data/cases.jsonl}}` to "
            "its experience.yaml (see docs/evals.md)"
        )
    if not experience.evals:
        raise UsageError(f"{experience.name} has no evals to score its cases with (see evals:)")
    if options.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    cases = select(load_cases(experience.cases), options.case_ids)
    check_models(experience, options.run.model, options.run.replaying)
    check_offline(experience, options.run.offline and not options.run.record_missing)
    if model is None:
        from evolve.llm import build_model

        model = build_model(
            experience.directory,
            api_base=options.run.api_base,
            record=options.run.record,
            replay=options.run.replay,
            offline=options.run.offline,
            record_missing=options.run.record_missing,
        )
    store = StateStore.open(workspace.create().database)
    try:
        store.reconcile()
        suite = _Suite(experience, workspace, store, options, model, cases, executor)
        return drive_until_interrupted(suite.execute(), lambda: suite.result("interrupted"))
    finally:
        store.close()


class _Suite:
    def __init__(
        self,
        experience: Experience,
        workspace: Workspace,
        store: StateStore,
        options: SuiteOptions,
        model: Model,
        cases: list[Case],
        executor: RayExecutor | None = None,
    ):
        self.experience = experience
        self.executor = executor  # Ray: where the cases' Python tools run (docs/ray.md)
        self.workspace = workspace
        self.store = store
        self.options = options
        self.model = model
        self.jobs = [(c, r) for c in cases for r in range(1, options.repeat + 1)]
        self.suite_id = new_run_id()
        self.results: list[CaseResult] = []
        self.started = time.monotonic()
        self.recorder: Recorder | None = None
        self.previous: dict[tuple[str, int], str] = {}  # (case, repeat) -> the earlier case run
        if options.source is not None:
            for row in RunQueries(store).children(options.source):
                self.previous.setdefault((row["case_id"], row["repeat"] or 1), row["id"])

    async def execute(self) -> SuiteResult:
        experience, suite_id = self.experience, self.suite_id
        log_path = self.workspace.log_path(suite_id)
        self.recorder = Recorder(suite_id, EventLog(log_path, suite_id), self.store)
        self.recorder.run_started(
            RunStart(
                RunStarted(
                    kind="suite",
                    experience=experience.name,
                    version=experience.version,
                    experience_dir=str(experience.directory),
                    spec_hash=experience.spec_hash,
                    cases=[c.id for c, r in self.jobs if r == 1],
                    repeat=self.options.repeat,
                    model=self.options.run.model,
                    resumed_from=self.options.source,
                    options={k: v for k, v in self.options.run.kept().items() if v is not None}
                    or None,
                ),
                log_path=str(log_path),
                spec_files=experience.file_digests(),
            )
        )
        status = "success"
        try:
            limit = self.options.concurrency or (
                (experience.cases.concurrency if experience.cases else None)
                or max(DEFAULT_CASE_CONCURRENCY, self.executor.cpus() if self.executor else 0)
            )
            slots = asyncio.Semaphore(limit)
            await asyncio.gather(*(self._job(case, r, slots) for case, r in self.jobs))
            status = _status(self.results)
        except (asyncio.CancelledError, KeyboardInterrupt):
            status = "interrupted"
            raise
        finally:
            self._finish(status)
        return self.result(status)

    def result(self, status: str) -> SuiteResult:
        order = {(c.id, r): i for i, (c, r) in enumerate(self.jobs)}
        cases = sorted(self.results, key=lambda c: order[(c.case_id, c.repeat)])
        return SuiteResult(
            self.suite_id,
            self.experience.name,
            status,
            round((time.monotonic() - self.started) * 1000),
            self.workspace.log_path(self.suite_id),
            cases,
            self.options.repeat,
        )

    def _finish(self, status: str) -> None:
        summary = self.result(status)
        passed = None if summary.pass_rate is None else summary.pass_rate == 1.0
        assert self.recorder is not None
        self.recorder.run_finished(
            RunEnd(
                RunFinished(
                    status=status,
                    duration_ms=summary.duration_ms,
                    tokens={"in": summary.tokens_in, "out": summary.tokens_out},
                    cost_usd=summary.cost_usd,
                    score=summary.score,
                    pass_rate=summary.pass_rate,
                    evals_passed=passed,
                )
            )
        )

    async def _job(self, case: Case, repeat: int, slots: asyncio.Semaphore) -> None:
        async with slots:
            result = await self._case(case, repeat)
        self.results.append(result)
        assert self.recorder is not None
        fields = result.to_json()
        fields["case_run_id"] = fields.pop("run_id")
        self.recorder.emit(EvalCase(**fields))
        if self.options.on_case:
            self.options.on_case(result, len(self.results), len(self.jobs))

    async def _case(self, case: Case, repeat: int) -> CaseResult:
        base = self.options.run
        options = RunOptions(
            args=case.args,
            model=base.model,
            api_base=base.api_base,
            record=base.record,
            replay=base.replay,
            offline=base.offline,
            max_cost=base.max_cost,
            case=case.to_json(),
            repeat=repeat,
            source=self.previous.get((case.id, repeat)),
            no_cache=base.no_cache,
            executor=base.executor,
            durable_end=False,  # the suite's end is synced; one sync per case would dominate
        )
        model = self.model
        if hasattr(model, "for_case"):  # a replayed model: a fresh cassette for this case run
            model = model.for_case(case.id)  # type: ignore[union-attr]
        try:
            run = Run(
                self.experience,
                self.workspace,
                self.store,
                options,
                model,
                parent=(self.suite_id, case.id),
            )
        except EvolveError as exc:  # the case's args are refused: this case fails, not the suite
            return CaseResult(case.id, repeat, None, "error", 0.0, False, error=str(exc))
        result = await run.execute()
        workers = result.workers if self.executor is not None else None
        return _case_result(case.id, repeat, result, workers)


def _case_result(
    case_id: str, repeat: int, result: RunResult, workers: list[str] | None = None
) -> CaseResult:
    scored = result.scored
    failing = [
        {"eval": r.name, "reason": r.reason, "required": r.required}
        for r in (scored.failing if scored else [])
    ]
    return CaseResult(
        case_id,
        repeat,
        result.run_id,
        result.status,
        result.score,
        bool(result.evals_passed),
        failing,
        result.duration_ms,
        result.tokens_in,
        result.tokens_out,
        result.cost_usd,
        result.reason if result.status == "failed" else None,
        workers,
    )


def resume_suite(
    row: dict[str, Any], workspace: Workspace, options: SuiteOptions, model: Model | None = None
) -> SuiteResult:
    """Continue the suite run `row` (checked by `runtime.run.find_resumable`) as a new suite
    over the same cases and repeats: each case run reuses what its earlier case run kept, so a
    case that had finished executes nothing, and one never started runs whole."""
    from evolve.runtime.resume import load_for_resume
    from evolve.runtime.run import apply_kept_options

    load_for_resume(row)
    started = next(iter(read_events(Path(row["log_path"]))), {})
    options.source = row["id"]
    options.case_ids = options.case_ids or list(started.get("cases") or [])
    options.repeat = started.get("repeat") or row.get("repeat") or 1
    apply_kept_options(options.run, row)
    return run_suite(row["experience_dir"], workspace, options, model)


def _status(results: list[CaseResult]) -> str:
    ok = [r.status in ("success", "partial") for r in results]
    if all(ok):
        return "success"
    return "failed" if not any(ok) else "partial"


def failed_gates(
    score: float | None, rate: float | None, min_score: float | None, min_rate: float | None
) -> list[str]:
    """What a suite's totals fail of --min-score and --min-pass-rate, one line each."""
    failed = []
    if min_score is not None and (score or 0.0) < min_score:
        failed.append(f"mean score {score or 0.0:.3f} is below --min-score {min_score}")
    if min_rate is not None and (rate or 0.0) < min_rate:
        failed.append(f"pass rate {rate or 0.0:.3f} is below --min-pass-rate {min_rate}")
    return failed
