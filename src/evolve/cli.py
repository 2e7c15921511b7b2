"""The `evolve` command line: parse, call one core function, render. Nothing else lives here.

Results go to stdout, progress and errors to stderr. Core code raises `EvolveError`; this module
prints its message and exits with its code (set EVOLVE_RAISE_ERRORS=1 for tracebacks). Heavy
modules (jsonschema, sqlite-utils, litellm) are imported inside the commands that need them, so
`evolve --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from evolve import __version__
from evolve.clihelp import readable
from evolve.errors import EvolveError, SpecError, UsageError


class ReadableGroup(TyperGroup):
    """Typer's group, its commands in the loop's order, placeholders readable, runs and
    experience directories completed (evolve.clihelp)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = readable(self.commands, self)


app = typer.Typer(
    name="evolve",
    help="Run LLM agent workflows, record everything, and get reviewable diffs that improve them.",
    no_args_is_help=True,
    cls=ReadableGroup,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def friendly_errors(command: F) -> F:
    """Turn an EvolveError into its message on stderr and its documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = command(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return result
        except BrokenPipeError:
            _quiet_broken_pipe()
        except EvolveError as exc:
            if os.environ.get("EVOLVE_RAISE_ERRORS") == "1":
                raise
            _err(f"error: {exc}" if not isinstance(exc, SpecError) else str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None
        except OSError as exc:  # a path that cannot be read or written: say which, no traceback
            if os.environ.get("EVOLVE_RAISE_ERRORS") == "1":
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            _err(f"error: {exc.strerror or exc}{where}")
            raise typer.Exit(1) from None
        except Exception as exc:
            store_failure = _store_failure(exc, kwargs.get("workspace"))
            if store_failure is None or os.environ.get("EVOLVE_RAISE_ERRORS") == "1":
                raise
            _err(f"error: {store_failure}")
            raise typer.Exit(store_failure.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _quiet_broken_pipe() -> None:
    """The reader of stdout went away (`evolve runs | head`): stop quietly, as Unix tools do,
    with the status a process killed by SIGPIPE has (128 + 13)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
    except (OSError, ValueError):  # no real file descriptor (a test's captured stdout)
        pass
    raise typer.Exit(141)


def _store_failure(exc: Exception, workspace: Path | None) -> EvolveError | None:
    """A database error met while reading the state store, as the one line it deserves."""
    sqlite3 = sys.modules.get("sqlite3")  # a sqlite3 error means the module is loaded
    if sqlite3 is None or not isinstance(exc, sqlite3.DatabaseError):
        return None
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
        return None  # evolve's own mistake: a traceback is the right answer
    from evolve.store.workspace import Workspace
    from evolve.store.writer import store_error

    return store_error(Workspace.locate(workspace).database, exc)


def _version(value: bool) -> None:
    if value:
        print(f"evolve {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run LLM agent workflows, record everything, and get reviewable diffs that improve them.

    The loop: evolve run DIR -> evolve propose last -> review -> git apply -> evolve run DIR.
    """


def _display(path: Path) -> str:
    """A path as the user would write it: relative to the current directory when inside it."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


@app.command()
@friendly_errors
def validate(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Experience directories or experience.yaml files.", show_default=False),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the problems as JSON.")] = False,
) -> None:
    """Check experiences: YAML, keys, types, references, cycles, expressions, files, prompts.

    Prints one line per problem as FILE:LINE:COL: message [json.path] and exits 2 if there is
    any; otherwise a one-line summary per experience and exit 0.
    """
    from evolve.spec import load_experience, resolve_spec_path

    problems, summaries = [], []
    for path in paths:
        try:
            experience = load_experience(path, display=_display(resolve_spec_path(path)))
        except SpecError as exc:
            problems += exc.problems
            continue
        summaries.append(
            {
                "file": _display(experience.spec_path),
                "name": experience.name,
                "version": experience.version,
                "nodes": len(experience.nodes),
                "edges": len(experience.edges),
                "state_fields": len(experience.state),
            }
        )
    if as_json:
        print(
            json.dumps({"valid": summaries, "problems": [p.__dict__ for p in problems]}, indent=2)
        )
    else:
        for problem in problems:
            print(problem)
        for s in summaries:
            print(
                f"{s['file']}: ok ({s['name']} {s['version']}: {s['nodes']} nodes, "
                f"{s['edges']} edges, {s['state_fields']} state fields)"
            )
        if problems:
            files = len({p.file for p in problems})
            _err(
                f"{len(problems)} problem{'s' * (len(problems) != 1)} in {files} "
                f"file{'s' * (files != 1)}"
            )
    if problems:
        raise typer.Exit(2)


@app.command()
@friendly_errors
def schema(
    write: Annotated[
        Path | None,
        typer.Option(
            "--write",
            help="Write the schema to this file instead of printing it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print the JSON Schema of experience.yaml, for editors (yaml-language-server).

    Point an experience at it with a first line such as
    `# yaml-language-server: $schema=./experience.schema.json`.
    """
    from evolve.spec import schema_text

    if write is None:
        sys.stdout.write(schema_text())
        return
    try:
        write.parent.mkdir(parents=True, exist_ok=True)
        write.write_text(schema_text(), encoding="utf-8")
    except OSError as exc:
        raise EvolveError(f"cannot write {write}: {exc.strerror or exc}") from None
    _err(f"wrote {write}")


@app.command()
@friendly_errors
def graph(
    path: Annotated[
        Path,
        typer.Argument(help="An experience directory or its experience.yaml.", show_default=False),
    ],
    html: Annotated[
        Path | None,
        typer.Option(
            help="Write the graph as a self-contained HTML page to this file instead.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print an experience's graph as Mermaid (phases as subgraphs; for_each and when marked).

    Paste it into any Mermaid viewer, or a ```mermaid block on GitHub; or draw it as a page with
    --html.
    """
    from evolve.spec import load_experience, resolve_spec_path

    experience = load_experience(path, display=_display(resolve_spec_path(path)))
    if html is None:
        from evolve.report.graph import mermaid

        sys.stdout.write(mermaid(experience))
        return
    from evolve.report.graph import write_graph_html

    try:
        write_graph_html(experience, html)
    except OSError as exc:
        raise EvolveError(f"cannot write {html}: {exc.strerror or exc}") from None
    _err(f"wrote {html}")


def _parse_args(args_json: str | None, sets: list[str]) -> dict[str, Any]:
    from evolve.errors import UsageError

    values: dict[str, Any] = {}
    if args_json:
        try:
            values = json.loads(args_json)
        except ValueError as exc:
            raise UsageError(f"--args is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise UsageError('--args must be a JSON object, such as \'{"topic": "x"}\'')
    for item in sets:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set expects field=value, got {item!r}")
        try:
            values[name] = json.loads(raw)
        except ValueError:
            values[name] = raw  # not JSON: take it as a string
    return values


@app.command()
@friendly_errors
def run(
    path: ExperienceArgument,
    args: Annotated[
        str | None,
        typer.Option(
            "--args",
            help="Initial state as a JSON object, over the declared defaults.",
            show_default=False,
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Set one state field: field=value (value parsed as JSON, else a string). "
            "Repeatable.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model for every agent node (overrides node and runtime models).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Nodes and items in flight at once (overrides runtime.concurrency).",
            show_default=False,
        ),
    ] = None,
    api_base: Annotated[
        str | None,
        typer.Option(
            help="Base URL of an OpenAI-compatible server (vLLM, Ollama, LM Studio), e.g. "
            "http://127.0.0.1:8000/v1.",
            show_default=False,
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Stop the run cleanly once its model calls have cost this many USD.",
            show_default=False,
        ),
    ] = None,
    context_window: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="The models' context window in tokens (overrides runtime.context_window and "
            "what the server says).",
            show_default=False,
        ),
    ] = None,
    record: Annotated[
        Path | None,
        typer.Option(
            help="Record every model call of the run to this cassette (JSONL).", show_default=False
        ),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            help="Serve every model call from this cassette: no key, no network.",
            show_default=False,
        ),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="Replay from the experience's cassettes/*.jsonl: no key, no network."
        ),
    ] = False,
    record_missing: RecordMissingOption = False,
    workspace: WorkspaceOption = None,
    fail_on_evals: Annotated[
        bool,
        typer.Option(
            "--fail-on-evals",
            help="Exit 1 when the run fails a required eval (or, with none required, any eval).",
        ),
    ] = False,
    from_run: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Reuse every unchanged result of this earlier run of the experience (its "
            "arguments too, unless --args/--set are given).",
            show_default=False,
        ),
    ] = None,
    rerun: Annotated[
        list[str] | None,
        typer.Option(
            "--rerun",
            help="With --from: execute this node (and everything downstream of it) whatever "
            "is kept. Repeatable.",
            show_default=False,
        ),
    ] = None,
    no_cache: NoCacheOption = False,
    executor: Annotated[
        str | None,
        typer.Option(
            help="Where for_each items of Python tool nodes run: local, ray (a local Ray started "
            "for the run) or ray=ADDRESS (auto, ray://host:10001); overrides runtime.executor. "
            "See docs/ray.md.",
            show_default=False,
        ),
    ] = None,
    otel: Annotated[
        bool,
        typer.Option(
            "--otel",
            help="Send the run as an OpenTelemetry trace while it runs (OTLP/HTTP to "
            "OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318; on by itself when that "
            "variable is set). Needs evolve[otel].",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run an experience and record everything: the event log and the state store.

    Exit code 0 on success, 1 if the run failed or was partial (or, with --fail-on-evals, failed
    its evals), 2 for an invalid experience or bad arguments, 130 if interrupted.
    """
    from evolve.runtime.run import RunOptions, start_run
    from evolve.store.workspace import Workspace

    options = RunOptions(
        args=_parse_args(args, sets or []),
        model=model,
        concurrency=concurrency,
        api_base=api_base,
        max_cost=max_cost,
        record=record,
        replay=replay,
        offline=offline,
        context_window=context_window,
        source=from_run,
        rerun=tuple(rerun or ()),
        no_cache=no_cache,
        executor=executor,
        record_missing=record_missing,
    )
    _execute(
        lambda: start_run(path, Workspace.locate(workspace), options),
        options,
        as_json,
        fail_on_evals,
        otel,
    )


def _explain(verdicts: list[Any]) -> None:
    """What a run reusing an earlier one runs again, and why: on stderr, before it starts."""
    again = [v for v in verdicts if v.runs]
    reused = [v.node for v in verdicts if not v.runs]
    if reused:
        _err(f"reused where inputs are unchanged: {', '.join(reused)}")
    for verdict in again:
        _err(f"runs again: {verdict.node} ({verdict.why})")


def _live_trace(asked: bool) -> Any:
    """The live OpenTelemetry tracer of a run (with --otel, or OTEL_EXPORTER_OTLP_ENDPOINT set),
    or None. Asked for and not installed: an error; only set in the environment: a warning."""
    if not asked and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from evolve.otel import MissingOtel, Tracer, exporter

    try:
        return Tracer(exporter())
    except MissingOtel as exc:
        if asked:
            raise
        _err(f"warning: OTEL_EXPORTER_OTLP_ENDPOINT is set, but {exc}; no trace is sent")
        return None


def _execute(
    start: Callable[[], Any],
    options: Any,
    as_json: bool,
    fail_on_evals: bool = False,
    otel: bool = False,
) -> None:
    """Run with live progress on stderr, then print the result and exit with its code."""
    from evolve.report.progress import Progress

    options.explain = _explain
    progress = Progress(plain=not sys.stderr.isatty())
    options.listeners.append(progress)
    tracer = _live_trace(otel)
    if tracer is not None:
        options.listeners.append(tracer.feed)
    real_stdout, sys.stdout = sys.stdout, sys.stderr  # a tool's print() must not mix into results
    try:
        with progress:
            result = start()
    finally:
        sys.stdout = real_stdout
        if tracer is not None:
            tracer.close()
    log = _display(result.log_path)
    if as_json:
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "experience": result.experience,
                    "status": result.status,
                    "reason": result.reason,
                    "duration_ms": result.duration_ms,
                    "log": log,
                    "tokens": {"in": result.tokens_in, "out": result.tokens_out},
                    "cost_usd": result.cost_usd,
                    "score": result.score,
                    "evals_passed": result.evals_passed,
                    "evals": [r.to_json() for r in result.scored.results] if result.scored else [],
                    "resumed_from": options.source,
                }
            )
        )
    else:
        print(
            f"{result.status}: run {result.run_id} of {result.experience} in "
            f"{result.duration_ms / 1000:.2f}s"
            + (f" (reusing {options.source})" if options.source else "")
        )
        if result.reason:
            print(f"  reason: {result.reason}")
        if result.scored and result.scored.results:
            print(f"  evals: {_evals_line(result.scored)}")
        print(f"  log: {log}")
    code = result.exit_code
    if code == 0 and fail_on_evals and result.evals_passed is False:
        code = 1
    raise typer.Exit(code)


def _evals_line(scored: Any) -> str:
    """`score 0.44, failing: big (required), frac` or `score 1.00, all passed`."""
    score = "—" if scored.score is None else f"{scored.score:.2f}"
    if scored.passed:
        failing = [r.name for r in scored.failing]
        return f"score {score}, passed" + (
            f" (not passed: {', '.join(failing)})" if failing else ""
        )
    names = [r.name + (" (required)" if r.required else "") for r in scored.failing]
    return f"score {score}, FAILING its evals: {', '.join(names)}"


@app.command()
@friendly_errors
def resume(
    run_ref: Annotated[
        str,
        typer.Argument(
            metavar="RUN",
            help="An interrupted, failed or partial run: its id, a unique prefix, or `last`.",
            show_default=False,
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(help="Model for every agent node (default: the run's).", show_default=False),
    ] = None,
    api_base: Annotated[
        str | None,
        typer.Option(
            help="Base URL of an OpenAI-compatible server (default: the run's).",
            show_default=False,
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(min=0, help="Stop once model calls cost this many USD.", show_default=False),
    ] = None,
    record: RecordOption = None,
    replay: ReplayOption = None,
    offline: OfflineOption = False,
    no_cache: NoCacheOption = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Continue an interrupted, failed or partial run as a new run linked to it.

    Its experience, arguments and model options are the earlier run's. Succeeded nodes and items
    whose fingerprint still matches are reused, not executed; everything else runs, and what
    runs again is said first, with why. Exit codes as for `evolve run`.
    """
    from evolve.runtime.run import RunOptions, find_resumable, resume_run
    from evolve.store.workspace import Workspace

    options = RunOptions(
        model=model,
        api_base=api_base,
        max_cost=max_cost,
        record=record,
        replay=replay,
        offline=offline,
        no_cache=no_cache,
    )
    ws = Workspace.locate(workspace)
    row = find_resumable(ws, run_ref)
    if row["kind"] == "suite":
        from evolve.evals.suite import SuiteOptions, resume_suite

        suite = SuiteOptions(run=options, on_case=_case_progress)
        _suite_output(lambda: resume_suite(row, ws, suite), as_json, None, None)
        return
    _execute(lambda: resume_run(row["id"], ws, options), options, as_json)


ExperienceArgument = Annotated[
    Path,
    typer.Argument(help="The experience directory (or its experience.yaml).", show_default=False),
]
RecordMissingOption = Annotated[
    bool,
    typer.Option(
        "--record-missing",
        help="Serve model calls from the experience's cassettes (or --replay FILE) and make "
        "only the calls they miss, appending those to cassettes/recorded.jsonl (or FILE).",
    ),
]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Reuse nothing through nodes' `cache:`.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
RecordOption = Annotated[
    Path | None,
    typer.Option(help="Record every model call to this cassette (JSONL).", show_default=False),
]
ReplayOption = Annotated[
    Path | None,
    typer.Option(help="Serve every model call from this cassette.", show_default=False),
]
OfflineOption = Annotated[
    bool,
    typer.Option("--offline", help="Replay from the experience's cassettes/*.jsonl."),
]
ApiBaseOption = Annotated[
    str | None,
    typer.Option(help="Base URL of an OpenAI-compatible server.", show_default=False),
]
WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        help="The workspace folder (default: ./.evolve, or EVOLVE_WORKSPACE).", show_default=False
    ),
]
RunArgument = Annotated[
    str,
    typer.Argument(help="A run id, any unique prefix of one, or `last`.", show_default=False),
]


def _console() -> Any:
    """A console for stdout: real width on a terminal, a stable 100 columns otherwise."""
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 100, highlight=False)
    console.on_broken_pipe = _quiet_broken_pipe  # type: ignore[method-assign]  # as every command
    return console


@app.command()
@friendly_errors
def runs(
    experience: Annotated[
        str | None,
        typer.Option(help="Only runs of this experience (its name).", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    workspace: WorkspaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """List runs, newest first: status, timing, nodes, items, tokens, cost and eval score.

    A suite (from `evolve eval`) is one row with its mean score and pass rate; its case runs
    are listed by `evolve inspect SUITE`.
    """
    from evolve.store.queries import list_runs
    from evolve.store.workspace import Workspace

    rows = list_runs(Workspace.locate(workspace), experience, limit)
    if as_json:
        keep = (
            "id",
            "experience",
            "status",
            "reason",
            "started_at",
            "finished_at",
            "duration_ms",
            "nodes_succeeded",
            "nodes_failed",
            "nodes_skipped",
            "items",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "parent_run_id",
            "kind",
            "score",
            "evals_passed",
            "pass_rate",
            "cases",
            "resumed_from",
        )
        print(json.dumps([{k: r.get(k) for k in keep} for r in rows], indent=2))
        return
    if not rows:
        _err(
            f"no runs of {experience}"
            if experience
            else "no runs yet in this workspace; start one with `evolve run DIR`"
        )
        return
    from evolve.report.tree import runs_table

    _console().print(runs_table(rows))


@app.command()
@friendly_errors
def inspect(
    run_id: RunArgument,
    events: Annotated[
        bool,
        typer.Option("--events", help="Print the raw events (JSON lines) instead of the tree."),
    ] = False,
    node: Annotated[
        str | None, typer.Option(help="With --events: only this node's events.", show_default=False)
    ] = None,
    event_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            help="With --events: only this event type (a prefix ending in '.' works, e.g. node.).",
            show_default=False,
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(help="Write a self-contained HTML report to this file.", show_default=False),
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole run as JSON.")] = False,
) -> None:
    """Show what a run did: phases, nodes, items, attempts, failures and the state diff."""
    from evolve.store.workspace import Workspace

    ws = Workspace.locate(workspace)
    if events:
        from evolve.store.queries import raw_events

        for event in raw_events(ws, run_id, node, event_type):
            sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
        return
    from evolve.store.queries import inspect_run

    report = inspect_run(ws, run_id)
    if html is not None:
        from evolve.report.html import write_html

        write_html(report, html)
        _err(f"wrote {html}")
    if as_json:
        sys.stdout.writelines(report.json_chunks())
        sys.stdout.write("\n")
    elif html is None:
        from evolve.report.tree import inspection

        _console().print(inspection(report))


@app.command()
@friendly_errors
def doctor(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Rebuild from the event logs every run whose stored rows disagree with its log "
            "(a broken database is moved aside first).",
        ),
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check the workspace: the database's integrity, logs that parse, and runs whose stored
    rows disagree with their event log.

    Exit code 0 when it is healthy (or --repair mended everything found), 1 when a problem is
    left.
    """
    from evolve.store.doctor import check
    from evolve.store.workspace import Workspace

    checkup = check(Workspace.locate(workspace), repair=repair)
    if as_json:
        print(json.dumps(checkup.to_json(), ensure_ascii=False, indent=2))
    else:
        for finding in checkup.findings:
            label = "repaired" if finding.repaired else finding.severity
            print(f"{label}: {finding.subject}: {finding.message}")
        problems = sum(1 for f in checkup.findings if f.severity == "problem" and not f.repaired)
        print(
            f"{_display(checkup.workspace)}: {checkup.logs} log{'s' * (checkup.logs != 1)}, "
            f"{checkup.runs_checked} run{'s' * (checkup.runs_checked != 1)} checked, "
            + (
                "healthy"
                if checkup.healthy
                else f"{problems} problem{'s' * (problems != 1)} (evolve doctor --repair)"
            )
        )
    raise typer.Exit(0 if checkup.healthy else 1)


@app.command()
@friendly_errors
def state(
    run_id: RunArgument,
    field: Annotated[
        str | None,
        typer.Argument(help="One state field (default: all of them).", show_default=False),
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="With FIELD: every write to it, in order.")
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print a run's final state, one field of it, or one field's history of writes."""
    from evolve.errors import UsageError
    from evolve.store.queries import run_state
    from evolve.store.workspace import Workspace

    if history and field is None:
        raise UsageError("--history needs a FIELD")
    _, value = run_state(Workspace.locate(workspace), run_id, field, history)
    if as_json or not isinstance(value, str):
        print(json.dumps(value, ensure_ascii=False, indent=None if as_json else 2))
    else:
        print(value)


@app.command()
@friendly_errors
def propose(
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(
            help="Run ids (or unique prefixes, or `last`); default: the newest run.",
            show_default=False,
        ),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option(
            min=1, help="Pool the newest N runs of the same experience.", show_default=False
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model for LLM proposals (default: runtime.model, then EVOLVE_MODEL).",
            show_default=False,
        ),
    ] = None,
    no_llm: Annotated[
        bool, typer.Option("--no-llm", help="Only the deterministic proposals; no model call.")
    ] = False,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="Replay the advisor's reply from the experience's cassettes."
        ),
    ] = False,
    record_missing: Annotated[
        bool,
        typer.Option(
            "--record-missing",
            help="Serve the advisor's (and, with --verify, the re-runs') model calls from the "
            "experience's cassettes and make only the calls they miss, appending those to "
            "cassettes/recorded.jsonl.",
        ),
    ] = False,
    api_base: Annotated[
        str | None,
        typer.Option(
            help="Base URL of an OpenAI-compatible server for the advisor model.",
            show_default=False,
        ),
    ] = None,
    context_window: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="The advisor model's context window in tokens (overrides runtime.context_window "
            "and what the server says).",
            show_default=False,
        ),
    ] = None,
    record: Annotated[
        Path | None,
        typer.Option(
            help="Record the advisor's model calls to this cassette (JSONL).", show_default=False
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            min=1, help="Seconds to wait for each of the advisor's model calls (slow models)."
        ),
    ] = 600.0,
    replay: Annotated[
        Path | None,
        typer.Option(
            help="Serve the advisor's model calls from this cassette, in recorded order.",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOption = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Re-run each candidate (up to 8) on a scratch copy and rank by the measured "
            "effect. Tools run again; unchanged model calls are answered from the original "
            "run's records, new ones go to the model (with --offline, to the cassettes).",
        ),
    ] = False,
    verify_budget: Annotated[
        int | None,
        typer.Option(min=1, help="With --verify: at most N re-runs in total.", show_default=False),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="With --verify: candidates re-run at once.")
    ] = 4,
    max_cost: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="With --verify: stop starting re-runs once their model cost reaches USD.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Propose at most five improvements, each a diff that evolve has proven applies.

    Reads the spec, the prompts and tools, the whole event log and the state diff. Writes
    .evolve/evolution/<run-id>.md and .json. Nothing is applied: review, then
    `evolve diff RUN N | git apply`. With --verify each candidate is re-run first (its tools
    run again) and each proposal says what the re-run showed.
    """
    from evolve.advisor.propose import propose as make_proposals
    from evolve.advisor.verify import VerifyOptions
    from evolve.store.workspace import Workspace

    report = make_proposals(
        Workspace.locate(workspace),
        run_ids or [],
        last=last,
        model=model,
        no_llm=no_llm,
        offline=offline,
        api_base=api_base,
        record=record,
        replay=replay,
        context_window=context_window,
        timeout_s=timeout,
        record_missing=record_missing,
        verify=VerifyOptions(
            concurrency=concurrency, budget=verify_budget, max_cost=max_cost, offline=offline
        )
        if verify
        else None,
    )
    failed = _advisor_failure(report)
    _held_back(report)
    if as_json:
        print(json.dumps({**report.to_json(), "path": str(report.path)}, ensure_ascii=False))
        if failed:
            raise typer.Exit(1)
        return
    count = len(report.proposals)
    print(f"wrote {_display(report.path)}: {count} proposal{'s' * (count != 1)}. {report.llm_note}")
    for i, p in enumerate(report.proposals, 1):
        print(f"  {i}. [{p.operation}, {p.confidence}] {p.title}")
        if p.verification is not None:
            print(f"     {p.verification.line()}")
    if report.rejected:
        print(f"  ({len(report.rejected)} not proposed: see the appendix)")
    print(f"apply one from {report.apply_root}: evolve diff {report.run_ids[0]} N | git apply")
    if failed:
        raise typer.Exit(1)


def _advisor_failure(report: Any) -> bool:
    """Say on stderr why the model advisor failed; True when that makes `propose` fail (no
    proposal was made at all), False when there is nothing to say or only a warning."""
    if not report.llm_failure:
        return False
    fatal = not report.proposals
    _err(
        f"{'error' if fatal else 'warning'}: the model advisor failed: {report.llm_failure}"
        + (f"\n  fix: {report.llm_fix}" if report.llm_fix else "")
        + "\n  or: --no-llm for the deterministic proposals only, or --offline to replay the "
        "advisor's reply from the experience's cassettes (no key, no network)"
    )
    return fatal


def _held_back(report: Any) -> None:
    """Say on stderr how many ideas were not proposed again, and why."""
    if not report.repeated:
        return
    counts: dict[str, int] = {}
    for earlier in report.repeated:
        counts[earlier.status] = counts.get(earlier.status, 0) + 1
    words = {"applied": "already applied", "rejected": "rejected (ran again without it)"}
    why = ", ".join(f"{n} {words.get(s, s)}" for s, n in sorted(counts.items()))
    n = len(report.repeated)
    _err(
        f"note: {n} earlier proposal{'s' * (n != 1)} held back ({why}); "
        "the report's appendix lists them"
    )


@app.command()
@friendly_errors
def diff(
    run_id: RunArgument,
    number: Annotated[
        int | None,
        typer.Argument(help="The proposal's number (default: all of them).", show_default=False),
    ] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Print the raw diff of proposal N of a run's newest report, for `| git apply`."""
    from evolve.advisor.report import proposal_diff
    from evolve.store.workspace import Workspace

    found = proposal_diff(Workspace.locate(workspace), run_id, number)
    _err(f"# apply from {found.apply_root}")
    if not found.applies_together:
        _err(
            "# note: these proposals touch the same lines and do not apply together; "
            "apply them one at a time (evolve diff RUN N)"
        )
    sys.stdout.write(found.diff)


@app.command(name="eval")
@friendly_errors
def eval_(
    path: ExperienceArgument,
    case: Annotated[
        list[str] | None,
        typer.Option("--case", help="Only this case (by id). Repeatable.", show_default=False),
    ] = None,
    repeat: Annotated[
        int, typer.Option(min=1, help="Run every case N times, to see the noise.")
    ] = 1,
    min_score: Annotated[
        float | None,
        typer.Option(
            min=0, max=1, help="Exit 1 when the mean score is below X.", show_default=False
        ),
    ] = None,
    min_pass_rate: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="Exit 1 when the share of passing cases is below Y.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model for every agent node and judge.", show_default=False),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Cases run at once (default: cases.concurrency, else 4).",
            show_default=False,
        ),
    ] = None,
    api_base: ApiBaseOption = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            min=0, help="Stop each case run once it has cost this many USD.", show_default=False
        ),
    ] = None,
    record: RecordOption = None,
    replay: ReplayOption = None,
    offline: OfflineOption = False,
    record_missing: RecordMissingOption = False,
    workspace: WorkspaceOption = None,
    executor: Annotated[
        str | None,
        typer.Option(
            help="Where the cases' Python tools run: local, ray (a local Ray started for the "
            "suite) or ray=ADDRESS (auto, ray://host:10001), each attempt a Ray task; overrides "
            "runtime.executor. See docs/ray.md.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the suite as JSON.")] = False,
) -> None:
    """Run every case of an experience and score it with its evals: one suite run.

    Prints a table per case (status, score, failing evals with reasons, duration, tokens, cost)
    and the totals: mean score, pass rate, spread across repeats. Exit 1 below --min-score or
    --min-pass-rate, 2 for an invalid experience or cases, 130 if interrupted.
    """
    from evolve.evals.suite import SuiteOptions, run_suite
    from evolve.runtime.run import RunOptions
    from evolve.store.workspace import Workspace

    options = SuiteOptions(
        run=RunOptions(
            model=model,
            api_base=api_base,
            max_cost=max_cost,
            record=record,
            replay=replay,
            offline=offline,
            executor=executor,
            record_missing=record_missing,
        ),
        case_ids=case or [],
        repeat=repeat,
        concurrency=concurrency,
        on_case=_case_progress,
    )
    _suite_output(
        lambda: run_suite(path, Workspace.locate(workspace), options),
        as_json,
        min_score,
        min_pass_rate,
    )


def _case_progress(result: Any, done: int, total: int) -> None:
    score = "—" if result.score is None else f"{result.score:.2f}"
    verdict = "pass" if result.passed else "FAIL"
    _err(f"[{done}/{total}] {result.case_id}: {result.status}, score {score} {verdict}")


def _suite_output(
    start: Callable[[], Any], as_json: bool, min_score: float | None, min_pass_rate: float | None
) -> None:
    """Run a suite, print its cases and totals, and exit with its code."""
    from evolve.evals.suite import failed_gates

    real_stdout, sys.stdout = sys.stdout, sys.stderr  # a tool's print() must not mix into results
    try:
        result = start()
    finally:
        sys.stdout = real_stdout
    summary = result.to_json()
    gates = failed_gates(result.score, result.pass_rate, min_score, min_pass_rate)
    if as_json:
        print(json.dumps({**summary, "gates": gates}, ensure_ascii=False))
    else:
        from evolve.evals.summary import suite_totals
        from evolve.report.tree import suite_table

        console = _console()
        console.print(suite_table(summary["cases"]))
        print(suite_totals(summary))
        print(
            f"{result.status}: suite {result.suite_id} of {result.experience} in "
            f"{result.duration_ms / 1000:.2f}s"
        )
    for gate in gates:
        _err(f"gate failed: {gate}")
    if result.status == "interrupted":
        raise typer.Exit(130)
    raise typer.Exit(1 if gates else 0)


@app.command()
@friendly_errors
def compare(
    run_a: Annotated[
        str,
        typer.Argument(
            help="The baseline: a run or suite id, a prefix, or `last`.", show_default=False
        ),
    ],
    run_b: Annotated[
        str,
        typer.Argument(
            help="The candidate: a run or suite of the same experience.", show_default=False
        ),
    ],
    min_improvement: Annotated[
        float | None,
        typer.Option(help="Exit 1 unless B's score minus A's is at least D.", show_default=False),
    ] = None,
    no_regressions: Annotated[
        bool,
        typer.Option("--no-regressions", help="Exit 1 when a case that passed in A fails in B."),
    ] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print Markdown for a pull-request comment.")
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Compare the eval scores of two runs or suites of one experience (B against A).

    Score and pass-rate deltas with a paired bootstrap 95% interval over cases, per-case flips,
    per-eval and per-node deltas, and whether the spec changed. Exit 1 when a gate fails.
    """
    from evolve.evals.compare import compare as compare_runs
    from evolve.evals.compare import markdown as to_markdown
    from evolve.evals.compare import text_lines
    from evolve.store.queries import RunQueries, open_store
    from evolve.store.workspace import Workspace

    store = open_store(Workspace.locate(workspace))
    try:
        result = compare_runs(
            RunQueries(store),
            run_a,
            run_b,
            min_improvement=min_improvement,
            no_regressions=no_regressions,
        )
    finally:
        store.close()
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    elif markdown:
        sys.stdout.write(to_markdown(result))
    else:
        print("\n".join(text_lines(result)))
    for gate in result.gates:
        _err(f"gate failed: {gate}")
    raise typer.Exit(1 if result.gates else 0)


@app.command()
@friendly_errors
def init(
    directory: Annotated[
        Path | None,
        typer.Argument(help="A new (or empty) directory for the experience.", show_default=False),
    ] = None,
    template: Annotated[
        str,
        typer.Option(
            "--template",
            "-t",
            help="What to start from: tool-only, agent, cli-agent or full-pipeline.",
        ),
    ] = "agent",
    list_templates: Annotated[
        bool, typer.Option("--list-templates", help="List the templates and exit.")
    ] = False,
) -> None:
    """Create an experience from a template; it validates and runs offline at once.

    Beside experience.yaml it writes experience.schema.json, which the file's first line points
    editors at (yaml-language-server), so they complete and check it from the first keystroke.
    """
    from evolve.errors import UsageError
    from evolve.scaffold import TEMPLATES, create_experience

    if list_templates:
        width = max(len(name) for name in TEMPLATES)
        for name, about in TEMPLATES.items():
            print(f"{name:<{width}}  {about}")
        return
    if directory is None:
        raise UsageError("give a DIR for the new experience (or --list-templates)")
    written = create_experience(directory, template)
    print(
        f"created {_display(directory)} from the {template} template ({len(written)} files). Next:"
    )
    print(f"  evolve run {directory} --offline")
    print("  evolve inspect last")
    print("  evolve propose last --offline")


@app.command()
@friendly_errors
def new(
    task: Annotated[
        str,
        typer.Argument(
            help='What the experience should do, in one line: "triage GitHub issues by area".',
            show_default=False,
        ),
    ],
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="The new (or empty) directory (default: ./NAME, the name the model picks).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="The model that drafts it (default: EVOLVE_MODEL).", show_default=False),
    ] = None,
    max_rounds: Annotated[
        int,
        typer.Option(
            min=0, help="Repair rounds when the draft does not validate (its problems sent back)."
        ),
    ] = 3,
    api_base: ApiBaseOption = None,
    record: Annotated[
        Path | None,
        typer.Option(help="Record the model calls to this cassette (JSONL).", show_default=False),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(help="Serve the model calls from this cassette.", show_default=False),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="Replay evolve's recorded demo draft (whatever the task): no key."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Draft a new experience from a one-line task: a model analyses it and writes the files.

    evolve writes the files itself (only inside the new directory), validates the draft and
    sends the problems back for up to --max-rounds repairs. Review the draft before running it.
    Exit code 0 when the draft validates, 1 when it still does not (it is kept), 2 for bad usage.
    """
    import asyncio

    from evolve.authoring import draft_experience

    draft = asyncio.run(
        draft_experience(
            task,
            directory=directory,
            model=model,
            max_rounds=max_rounds,
            offline=offline,
            api_base=api_base,
            record=record,
            replay=replay,
            say=_err,
        )
    )
    shown = _display(draft.directory)
    if as_json:
        print(
            json.dumps(
                {
                    "directory": shown,
                    "name": draft.name,
                    "valid": draft.valid,
                    "files": draft.files,
                    "refused": draft.refused,
                    "problems": draft.problems,
                    "repair_rounds": draft.rounds,
                    "open_questions": draft.open_questions,
                    "next_steps": draft.next_steps,
                }
            )
        )
    else:
        _print_draft(draft, shown)
    if not draft.valid:
        raise typer.Exit(1)


def _print_draft(draft: Any, shown: str) -> None:
    if draft.valid:
        rounds = f" after {draft.rounds} repair round{'s' * (draft.rounds != 1)}"
        print(f"drafted {shown} ({len(draft.files)} files{rounds if draft.rounds else ''})")
    else:
        rounds = f"{draft.rounds} repair round{'s' * (draft.rounds != 1)}"
        print(f"the draft in {shown} still does not validate after {rounds}:")
        for problem in draft.problems:
            print(f"  {problem}")
        print(f"the draft is kept in {shown}: fix it by hand, then `evolve validate {shown}`")
    for path in draft.refused:
        print(f"  refused to write {path} (outside {shown})")
    if draft.open_questions:
        print("open questions:")
        for question in draft.open_questions:
            print(f"  - {question}")
    print("next:")
    for step in draft.next_steps:
        print(f"  - {step}")
    print(f"  evolve validate {shown}")
    print(f"  evolve run {shown}")
    print("  evolve propose last")


@app.command()
@friendly_errors
def export(
    run_id: RunArgument,
    endpoint: Annotated[
        str | None,
        typer.Argument(
            help="With --otlp: the receiver's base URL, such as http://localhost:4318 "
            "(default: OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318).",
            show_default=False,
        ),
    ] = None,
    otlp: Annotated[
        bool,
        typer.Option(
            "--otlp",
            help="Send the run as an OpenTelemetry trace over OTLP/HTTP (needs evolve[otel]).",
        ),
    ] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Export a finished (or interrupted) run from its event log: as an OpenTelemetry trace.

    The trace is the one `evolve run --otel` sends live: run -> node -> attempt -> model call
    spans, with the same times. Nested experiences' runs are included.
    """
    from evolve.otel import export_run
    from evolve.store.workspace import Workspace

    if not otlp:
        raise UsageError("say how to export: evolve export RUN --otlp [ENDPOINT]")
    sent = export_run(Workspace.locate(workspace), run_id, endpoint)
    _err(f"sent {sent.spans} spans of run {sent.run_id} to {sent.endpoint}")


@app.command()
@friendly_errors
def mcp(workspace: WorkspaceOption = None) -> None:
    """Serve evolve's commands as MCP tools over stdio, for agents in other clients.

    Tools: validate, run, runs, inspect, state, eval, propose, diff, new. Register it with an
    MCP-aware client as the command `evolve mcp`. Needs the optional SDK: pip install
    'evolve[mcp]'.
    """
    from evolve.mcp_server import serve

    serve(workspace)
