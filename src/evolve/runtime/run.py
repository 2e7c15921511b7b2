"""One run of an experience, from start to `run.finished`.

`start_run` checks everything that can be checked before anything is recorded (the spec, the
arguments, a model for every agent node), then `Run.execute` records the run in the state store
and the event log, runs the scheduler, and always writes `run.finished`: success, failed, partial
or interrupted (Ctrl-C, SIGTERM, cancellation). Nested experiences run as child runs linked to
their parent. A process killed outright leaves no `run.finished`; later commands show that run as
interrupted (`StateStore.reconcile`). The run's end is in the state store before `run.finished`
is in the log (see `store.recorder`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from evolve.errors import StoreError, UsageError
from evolve.evals.scoring import RunScore, record_scores, score_run
from evolve.events import RunFinished, RunStarted
from evolve.llm.model import Model, ModelReply, ModelRequest
from evolve.runtime.attempt import AttemptError, RunFailed
from evolve.runtime.driver import drive_until_interrupted
from evolve.runtime.metering import MeteredModel
from evolve.runtime.ray_executor import executor_for
from evolve.runtime.recording import CallRecorder
from evolve.runtime.resume import (
    Verdict,
    check_reruns,
    check_source,
    load_for_resume,
    plan,
    resumable,
    resume_options,
)
from evolve.runtime.reuse import Reuse
from evolve.runtime.scheduler import Scheduler
from evolve.runtime.state import RunState, initial_values
from evolve.spec import Experience, Node, load_experience
from evolve.spec.model import MODEL_KINDS, Eval
from evolve.store.log import EventLog, Listener
from evolve.store.queries import RunQueries
from evolve.store.recorder import Recorder, RunEnd, RunStart
from evolve.store.workspace import Workspace, new_run_id
from evolve.store.writer import StateStore

T = TypeVar("T")

MAX_NESTING = 8  # experience nodes inside experience nodes; deeper is almost surely a cycle
EXIT_CODES = {"success": 0, "failed": 1, "partial": 1, "interrupted": 130}


@dataclass
class RunOptions:
    args: dict[str, Any] = field(default_factory=dict)
    model: str | None = None  # --model: overrides every node's model
    concurrency: int | None = None  # --concurrency: overrides runtime.concurrency
    listeners: list[Listener] = field(default_factory=list)
    api_base: str | None = None  # --api-base: a local OpenAI-compatible server
    record: Path | None = None  # --record FILE
    replay: Path | None = None  # --replay FILE
    offline: bool = False  # --offline: replay the experience's cassettes/
    max_cost: float | None = None  # --max-cost USD
    case: dict[str, Any] | None = None  # the case scored, in a suite: {id, args, expect}
    repeat: int | None = None  # which repeat of its case (1-based), in a suite
    durable_end: bool = True  # sync the run's end to disk (a suite's case runs: the suite does)
    context_window: int | None = None  # --context-window: overrides runtime.context_window
    source: str | None = None  # `resume RUN` / `--from RUN`: the run whose results are reused
    rerun: tuple[str, ...] = ()  # --rerun NODE: executed whatever is kept
    no_cache: bool = False  # --no-cache: no node reuses a result through `cache:`
    explain: Callable[[list[Verdict]], None] | None = None  # told what runs again, and why
    executor: str | None = None  # --executor local | ray[=ADDRESS]: overrides runtime.executor
    record_missing: bool = False  # --record-missing: replay, and record only the misses

    @property
    def replaying(self) -> bool:
        return self.offline or self.replay is not None

    def kept(self) -> dict[str, Any]:
        """What a later `evolve resume` runs with again, unless told otherwise."""
        return {
            "model": self.model,
            "concurrency": self.concurrency,
            "api_base": self.api_base,
            "replay": str(self.replay) if self.replay else None,
            "offline": self.offline or None,
            "max_cost": self.max_cost,
            "executor": self.executor,
        }


@dataclass
class RunResult:
    run_id: str
    experience: str
    status: str
    reason: str | None
    duration_ms: int
    log_path: Path
    state: dict[str, Any]
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    scored: RunScore | None = None  # None when the experience has no evals
    workers: list[str] = field(default_factory=list)  # the Ray nodes its attempts ran on

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def score(self) -> float | None:
        return self.scored.score if self.scored else None

    @property
    def evals_passed(self) -> bool | None:
        return self.scored.passed if self.scored else None


def model_resolver(experience: Experience, override: str | None, replaying: bool = False):
    """Model precedence: --model > node model > runtime.model > EVOLVE_MODEL.

    A replayed run needs no real model: it falls back to the name "replay".
    """
    env = os.environ.get("EVOLVE_MODEL") or None
    fallback = "replay" if replaying else None

    def model_for(node: Node) -> str | None:
        return override or node.model or experience.runtime.model or env or fallback

    return model_for


def judge_node(check: Eval) -> Node:
    """A judge as the model layer sees it: an agent step named `eval:<name>` (never scheduled)."""
    return Node(id=f"eval:{check.name}", kind="agent", model=check.judge and check.judge.model)


def check_models(
    experience: Experience, override: str | None, replaying: bool = False, cases: bool = True
) -> None:
    """Every agent node, and every judge that will score (`cases`: the run has a case; a judge
    reading $case scores only then), has a model."""
    model_for = model_resolver(experience, override, replaying)
    missing = [
        n.id for n in experience.nodes.values() if n.kind in MODEL_KINDS and not model_for(n)
    ]
    missing += [
        judge_node(e).id
        for e in experience.evals
        if e.kind == "judge" and (cases or not e.reads_case) and not model_for(judge_node(e))
    ]
    if missing:
        raise UsageError(
            f"no model for agent node{'s' * (len(missing) > 1)} {', '.join(missing)}: pass "
            "--model openai/gpt-4o-mini, set runtime.model in experience.yaml, or set "
            "EVOLVE_MODEL"
        )


def check_offline(experience: Experience, offline: bool) -> None:
    """Refuse `--offline` before anything runs when the experience calls a model and has no
    cassette to replay: every model call would fail on a cassette miss."""
    from evolve.llm.cassettes import offline_cassettes

    calls_model = any(n.kind in MODEL_KINDS for n in experience.nodes.values()) or any(
        e.kind == "judge" for e in experience.evals
    )
    if not offline or not calls_model or offline_cassettes(experience.directory):
        return
    folder = experience.directory / "cassettes"
    raise UsageError(
        f"--offline replays recorded model calls, but {folder} holds no *.jsonl cassette: record "
        f"one with a model first (evolve run {experience.directory} --record "
        f"{folder / 'run.jsonl'}), or run without --offline"
    )


def graph_outline(experience: Experience) -> dict[str, Any]:
    """The shape of the graph as run, so a report can draw it from the log alone."""
    nodes = {
        n.id: {"kind": n.kind, "phase": n.phase, "for_each": bool(n.for_each)}
        for n in experience.nodes.values()
    }
    for pipe in experience.pipelines.values():
        nodes[pipe.id] = {"kind": "pipeline", "stages": list(pipe.stages)}
    for loop in experience.loops.values():
        nodes[loop.id] = {"kind": "loop", "body": loop.body}
    return {
        "phases": [p.id for p in experience.phases],
        "nodes": nodes,
        "steps": list(experience.steps),
        "edges": [
            {"from": e.source, "to": e.target, "when": e.when.source if e.when else None}
            for e in experience.edges
        ],
    }


class Run:
    """One execution of one experience (a child run is another `Run` in the same loop)."""

    def __init__(
        self,
        experience: Experience,
        workspace: Workspace,
        store: StateStore,
        options: RunOptions,
        model: Model | None,
        *,
        parent: tuple[str, str] | None = None,
    ):
        self.experience = experience
        self.workspace = workspace
        self.store = store
        self.options = options
        self.model = model
        self.parent = parent
        self.values = initial_values(experience, options.args)
        check_models(experience, options.model, options.replaying, options.case is not None)
        self.run_id = new_run_id()
        self.depth = 0  # how many parents this run has
        self.reuse: Reuse | None = None

    async def execute(self) -> RunResult:
        experience, run_id = self.experience, self.run_id
        model_ready = self._prepare_model()
        log_path = self.workspace.log_path(run_id)
        recorder = Recorder(
            run_id,
            EventLog(log_path, run_id, self.options.listeners),
            self.store,
            durable=self.options.durable_end,
        )
        model_for = model_resolver(experience, self.options.model, self.options.replaying)
        # what each node's results will be kept under (its definition, files and model) is
        # taken from the experience as loaded, like spec_files, before the run starts
        reuse = self._reuse(model_for)
        prints = [
            {
                "node_id": p.node_id,
                "digest": p.digest,
                "definition": p.definition,
                "files": p.files,
                "model": p.model,
            }
            for p in map(reuse.print_of, experience.nodes.values())
        ]
        models = sorted(
            {
                m
                for n in experience.nodes.values()
                if n.kind in MODEL_KINDS
                for m in [model_for(n)]
                if m
            }
        )
        recorder.run_started(
            RunStart(
                RunStarted(
                    experience=experience.name,
                    version=experience.version,
                    experience_dir=str(experience.directory),
                    spec_hash=experience.spec_hash,
                    args=self.options.args,
                    model=", ".join(models) or None,
                    parent_run_id=self.parent[0] if self.parent else None,
                    parent_node=self.parent[1] if self.parent else None,
                    case_id=self.case_id,
                    repeat=self.options.repeat,
                    resumed_from=self.options.source,
                    rerun=list(self.options.rerun) or None,
                    options={k: v for k, v in self.options.kept().items() if v is not None} or None,
                    graph=graph_outline(experience),
                ),
                log_path=str(log_path),
                spec_files=experience.file_digests() if self.parent is None else None,
            )
        )
        recorder.prints_taken(prints)
        started = time.monotonic()
        state = RunState(experience, self.values, recorder)
        metered = MeteredModel(self.model, recorder, self.options.max_cost)
        scheduler = Scheduler(
            experience,
            state,
            recorder,
            concurrency=self.options.concurrency or experience.runtime.concurrency,
            ask=metered.complete,
            model_for=model_for,
            child_runner=self._child,
            calls=CallRecorder.for_model(self.model, self.options.replaying),
            model_ready=model_ready,
            reuse=reuse,
            executor=executor_for(experience, self.options.executor),
            remote_every_tool=self.options.case is not None,  # a case of a suite: docs/ray.md
        )
        status, reason, stopped = "success", None, None
        scored: RunScore | None = None
        outer_hook = self.store.on_failure  # a child run shares its parent's store

        def store_failed(failure: StoreError) -> None:  # rows cannot be written: stop the run
            scheduler.halt(RunFailed("", str(failure)))
            if outer_hook is not None:
                outer_hook(failure)

        self.store.on_failure = store_failed
        try:
            try:
                await scheduler.run()
                status = "partial" if scheduler.partial else "success"
            except RunFailed as exc:
                status, reason = "failed", str(exc)
                stopped = exc.stopped
            finally:
                self.store.on_failure = outer_hook
            if self.store.failure is not None:
                status, reason = "failed", str(self.store.failure)
            scored = await self._score(recorder, metered, state.values, status, started)
        except (asyncio.CancelledError, KeyboardInterrupt):
            status, reason = "interrupted", "interrupted by the user"
            raise
        except StoreError as exc:  # the workspace refused a write: say so, it is not a bug
            status, reason = "failed", str(exc)
            raise
        except BaseException as exc:
            status, reason = "failed", f"internal error: {type(exc).__name__}: {exc}"
            raise
        finally:
            duration = round((time.monotonic() - started) * 1000)
            recorder.run_finished(
                RunEnd(
                    RunFinished(
                        status=status,
                        reason=reason,
                        stopped=stopped,
                        duration_ms=duration,
                        tokens={"in": metered.tokens_in, "out": metered.tokens_out},
                        cost_usd=metered.cost_usd,
                        score=scored.score if scored else None,
                        evals_passed=scored.passed if scored else None,
                    )
                )
            )
        return RunResult(
            run_id,
            experience.name,
            status,
            reason,
            duration,
            log_path,
            state.values,
            metered.tokens_in,
            metered.tokens_out,
            metered.cost_usd,
            scored,
            sorted(scheduler.workers),
        )

    @property
    def case_id(self) -> str | None:
        return str(self.options.case["id"]) if self.options.case else None

    async def _score(
        self,
        recorder: Recorder,
        metered: MeteredModel,
        values: dict[str, Any],
        status: str,
        started: float,
    ) -> RunScore | None:
        """Score the final state with the experience's evals; record each result once."""
        if not self.experience.evals:
            return None
        summary = {
            "run_id": self.run_id,
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000),
            "tokens_in": metered.tokens_in,
            "tokens_out": metered.tokens_out,
            "cost_usd": metered.cost_usd,
            "case_id": self.case_id,
        }
        model_for = model_resolver(self.experience, self.options.model, self.options.replaying)

        async def judge_call(check: Eval, request: ModelRequest) -> ModelReply:
            node = judge_node(check)
            return await metered.complete(
                replace(request, node_id=node.id, model=model_for(node) or "", attempt=1)
            )

        scored = await score_run(self.experience, values, self.options.case, summary, judge_call)
        record_scores(recorder, self.case_id, scored)
        return scored

    def _prepare_model(self) -> asyncio.Future[Any] | None:
        """Start importing the model layer (seconds, for litellm) as the run starts, on a thread:
        the nodes before the first agent run meanwhile, and an agent attempt waits only for
        what is left, before its clock starts (the import is no attempt's time)."""
        prepare = getattr(self.model, "prepare", None)
        if prepare is None or not any(
            n.kind in MODEL_KINDS for n in self.experience.nodes.values()
        ):
            return None
        return asyncio.ensure_future(asyncio.to_thread(prepare))

    def _reuse(self, model_for: Any) -> Reuse:
        """The run's reuse rules (made once: `start_run` asks for them to explain the plan)."""
        if self.reuse is not None:
            return self.reuse
        queries = RunQueries(self.store)
        source = self.options.source
        self.reuse = Reuse(
            self.experience.name,
            self.experience.directory,
            model_for,
            source=source,
            kept=queries.kept_results(source) if source else (),
            rerun=frozenset(self.options.rerun),
            cache=not self.options.no_cache,
            lookup=queries.cached_result,
        )
        return self.reuse

    async def _child(self, node: Node, args: dict[str, Any]) -> dict[str, Any]:
        if self.depth >= MAX_NESTING:
            raise AttemptError(
                f"experiences nest deeper than {MAX_NESTING} levels here; does a "
                "child experience run one of its parents?",
                "nesting_too_deep",
            )
        child_experience = load_experience(node.impl)
        options = RunOptions(
            args=args,
            model=self.options.model,
            listeners=self.options.listeners,
            offline=self.options.offline,
            replay=self.options.replay,
            max_cost=self.options.max_cost,
            no_cache=self.options.no_cache,
        )
        child = Run(
            child_experience,
            self.workspace,
            self.store,
            options,
            self.model,
            parent=(self.run_id, node.id),
        )
        child.depth = self.depth + 1
        result = await child.execute()
        if result.status not in ("success", "partial"):
            raise AttemptError(
                f"child run {result.run_id} ({child_experience.name}) "
                f"{result.status}: {result.reason}",
                "child_failed",
            )
        return result.state


def start_run(
    path: str | Path, workspace: Workspace, options: RunOptions, model: Model | None = None
) -> RunResult:
    """Load, check and run the experience at `path` to the end; Ctrl-C/SIGTERM interrupt it."""
    experience = load_experience(path)
    with _collector_skips_what_exists():
        return _start(experience, workspace, options, model)


@contextlib.contextmanager
def _collector_skips_what_exists() -> Iterator[None]:
    """While the run lasts, the cycle collector leaves alone every object that exists before it
    (the loaded experience, the imported modules): a run allocates enough to trigger full
    collections, and walking those objects again each time was 8% of a 5,000-item fan-out.
    They return to the collector's care when the run ends (`gc.unfreeze`)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _start(
    experience: Experience, workspace: Workspace, options: RunOptions, model: Model | None
) -> RunResult:
    check_offline(experience, options.offline and not options.record_missing)
    executor = executor_for(experience, options.executor)
    if executor is not None:  # joined before anything is recorded: a missing Ray is a usage error
        executor.connect(experience.directory)
    if model is None:
        from evolve.llm import build_model

        model = build_model(
            experience.directory,
            api_base=options.api_base,
            record=options.record,
            replay=options.replay,
            offline=options.offline,
            record_missing=options.record_missing,
            context_window=options.context_window or experience.runtime.context_window,
            window_source="--context-window"
            if options.context_window
            else "runtime.context_window",
        )
    store = StateStore.open(workspace.create().database)
    try:
        store.reconcile()
        if options.source is not None or options.rerun:
            _prepare_reuse(experience, store, options)
        run = Run(experience, workspace, store, options, model)
        if options.source is not None and options.explain is not None:
            reuse = run._reuse(model_resolver(experience, options.model, options.replaying))
            prints = {n: reuse.print_of(node) for n, node in experience.nodes.items()}
            source = RunQueries(store).resolve(options.source)
            options.explain(plan(experience, RunQueries(store), source, prints, options.rerun))
        return drive_until_interrupted(run.execute(), lambda: _interrupted(run))
    finally:
        store.close()


def _prepare_reuse(experience: Experience, store: StateStore, options: RunOptions) -> None:
    """Check --from and --rerun; with --from and no --args/--set, the earlier run's args."""
    check_reruns(experience, options.rerun)
    if options.source is None:
        raise UsageError("--rerun needs --from RUN: the run whose other results are reused")
    row = check_source(RunQueries(store), options.source, experience)
    options.source = row["id"]
    if not options.args:
        options.args = resume_options(row)["args"]


def resume_run(
    ref: str, workspace: Workspace, options: RunOptions, model: Model | None = None
) -> RunResult:
    """Continue run `ref` as a new run: its experience, arguments and model options (those in
    `options` win), reusing every result of it that still matches."""
    row = find_resumable(workspace, ref)
    if row["kind"] == "suite":
        raise UsageError(f"{row['id']} is a suite run: resume it with `evolve resume {ref}`")
    load_for_resume(row)
    options.source = row["id"]
    options.args = options.args or resume_options(row)["args"]
    apply_kept_options(options, row)
    return start_run(row["experience_dir"], workspace, options, model)


def find_resumable(workspace: Workspace, ref: str) -> dict[str, Any]:
    """The `runs` row of run `ref`, if it can be resumed (else a one-line error)."""
    store = StateStore.open(workspace.create().database)
    try:
        store.reconcile()
        return resumable(RunQueries(store), ref)
    finally:
        store.close()


def apply_kept_options(options: RunOptions, row: dict[str, Any]) -> None:
    """The earlier run's model options, where `options` does not set them."""
    kept = resume_options(row)
    options.model = options.model or kept.get("model")
    options.concurrency = options.concurrency or kept.get("concurrency")
    options.api_base = options.api_base or kept.get("api_base")
    options.executor = options.executor or kept.get("executor")
    options.max_cost = options.max_cost if options.max_cost is not None else kept.get("max_cost")
    if options.replay is None and not options.offline and options.record is None:
        options.replay = Path(kept["replay"]) if kept.get("replay") else None
        options.offline = bool(kept.get("offline"))


def _interrupted(run: Run) -> RunResult:
    row = run.store.run(run.run_id) or {}
    return RunResult(
        run.run_id,
        run.experience.name,
        "interrupted",
        row.get("reason"),
        row.get("duration_ms") or 0,
        run.workspace.log_path(run.run_id),
        {},
    )
