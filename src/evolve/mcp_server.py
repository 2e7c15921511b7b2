"""`evolve mcp`: a stdio MCP server, so an agent in another tool can validate, run and evolve
experiences.

Built on the official `mcp` Python SDK (the optional extra `evolve[mcp]`); this module is imported
only by the `mcp` command, and `serve` says how to install the SDK when it is missing. Each tool
calls the same core function as the command of the same name and returns a structured result
(its JSON Schema is the tool's output schema); an `EvolveError` becomes a tool error with the
message a person would see on the command line. `run` reports each finished node, and `eval`
each finished case, as an MCP progress notification. Paths are relative to the server's working
directory, and the workspace is `./.evolve` there (or EVOLVE_WORKSPACE), as for the command line.

No `from __future__ import annotations` here: the SDK reads each tool's annotations at runtime to
build its input and output schemas, and the result models are local to `build_server`.
"""

from pathlib import Path
from typing import Annotated, Any

from evolve import __version__
from evolve.errors import EvolveError, UsageError

INSTALL_HINT = (
    "evolve mcp needs the MCP Python SDK, which is not installed: pip install 'evolve[mcp]'"
)

TOOLS = ("validate", "run", "runs", "inspect", "state", "eval", "propose", "diff", "new")


def _sdk() -> Any:
    try:
        from mcp.server import mcpserver
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return mcpserver


def build_server(workspace: Path | None = None) -> Any:
    """The MCP server with evolve's tools registered (the SDK imported here, not before)."""
    mcpserver = _sdk()
    from pydantic import BaseModel, Field

    from evolve.store.workspace import Workspace

    server = mcpserver.MCPServer(
        "evolve",
        version=__version__,
        instructions=(
            "evolve runs LLM agent workflows described in experience.yaml, records every run, "
            "and proposes reviewable diffs. The loop: validate -> run -> inspect -> propose -> "
            "diff (the user applies it with git apply) -> run again."
        ),
    )
    ToolError = _tool_error()

    def ws() -> Workspace:
        return Workspace.locate(workspace)

    def guard(call: Any) -> Any:
        try:
            return call()
        except EvolveError as exc:
            raise ToolError(str(exc)) from None

    class Problem(BaseModel):
        file: str
        line: int
        col: int
        message: str
        json_path: str

    class Validated(BaseModel):
        valid: bool = Field(description="true when every experience is valid")
        experiences: list[dict[str, Any]] = Field(
            description="name, version, nodes, edges, state_fields of each valid experience"
        )
        problems: list[Problem] = Field(description="every problem, located file:line:col")

    class RunOutcome(BaseModel):
        run_id: str
        experience: str
        status: str = Field(description="success, partial, failed or interrupted")
        reason: str | None
        duration_ms: int
        log: str
        tokens_in: int
        tokens_out: int
        cost_usd: float | None
        state: dict[str, Any] = Field(description="the run's final state")

    class RunList(BaseModel):
        runs: list[dict[str, Any]]

    class Inspected(BaseModel):
        run: dict[str, Any] = Field(description="the run as `evolve inspect --json` prints it")

    class StateValue(BaseModel):
        run_id: str
        value: Any = Field(description="the final state, one field, or one field's history")

    class Proposed(BaseModel):
        path: str = Field(description="the markdown report written")
        report: dict[str, Any] = Field(description="as `evolve propose --json` prints it")

    class Diff(BaseModel):
        run_id: str
        apply_root: str = Field(description="run `git apply` in this directory")
        diff: str
        applies_together: bool

    class Evaluated(BaseModel):
        suite: dict[str, Any] = Field(
            description="as `evolve eval --json` prints it: score, pass_rate, cases..."
        )
        gates: list[str] = Field(description="each gate that failed; empty when all hold")

    class Drafted(BaseModel):
        directory: str
        valid: bool
        files: list[str]
        refused: list[str]
        problems: list[str]
        repair_rounds: int
        open_questions: list[str]
        next_steps: list[str]

    Path_ = Annotated[str, Field(description="an experience directory or its experience.yaml")]
    RunRef = Annotated[str, Field(description="a run id, a unique prefix of one, or 'last'")]

    @server.tool()
    def validate(paths: list[Path_]) -> Validated:
        """Check experiences without running them: YAML, keys, types, references, cycles,
        expressions, files, prompt placeholders. Problems are located as file:line:col."""
        from evolve.errors import SpecError
        from evolve.spec import load_experience

        found: list[Problem] = []
        valid: list[dict[str, Any]] = []
        for path in paths:
            try:
                exp = load_experience(path)
            except SpecError as exc:
                found += [Problem(**p.__dict__) for p in exc.problems]
                continue
            valid.append(
                {
                    "file": str(exp.spec_path),
                    "name": exp.name,
                    "version": exp.version,
                    "nodes": len(exp.nodes),
                    "edges": len(exp.edges),
                    "state_fields": len(exp.state),
                }
            )
        return Validated(valid=not found, experiences=valid, problems=found)

    @server.tool()
    async def run(
        path: Path_,
        ctx: mcpserver.Context,
        offline: Annotated[
            bool, Field(description="replay the experience's cassettes/: no key, no network")
        ] = False,
        args: Annotated[
            dict[str, Any] | None, Field(description="initial state over the defaults")
        ] = None,
        model: Annotated[str | None, Field(description="model for every agent node")] = None,
        replay: Annotated[str | None, Field(description="a cassette to replay")] = None,
        max_cost: Annotated[float | None, Field(description="stop at this many USD")] = None,
    ) -> RunOutcome:
        """Run an experience and record everything (event log and state store). Each finished
        node is reported as a progress notification."""
        import anyio
        import anyio.to_thread

        from evolve.events import EventType
        from evolve.runtime.run import RunOptions, start_run

        report = _reporter(ctx)
        done = 0

        def progress(event: dict[str, Any]) -> None:
            nonlocal done
            if event.get("type") != EventType.NODE_FINISHED or event.get("item") is not None:
                return
            done += 1
            message = f"{event.get('node_id')} finished ({event.get('duration_ms', 0)} ms)"
            report(done, None, message)

        options = RunOptions(
            args=args or {},
            model=model,
            offline=offline,
            replay=Path(replay) if replay else None,
            max_cost=max_cost,
            listeners=[progress],
        )
        try:
            result = await anyio.to_thread.run_sync(lambda: start_run(path, ws(), options))
        except EvolveError as exc:
            raise ToolError(str(exc)) from None
        return RunOutcome(
            run_id=result.run_id,
            experience=result.experience,
            status=result.status,
            reason=result.reason,
            duration_ms=result.duration_ms,
            log=str(result.log_path),
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=result.cost_usd,
            state=result.state,
        )

    @server.tool()
    def runs(
        experience: Annotated[str | None, Field(description="only runs of this name")] = None,
        limit: Annotated[int, Field(ge=1, description="how many, newest first")] = 20,
    ) -> RunList:
        """List runs, newest first: status, timing, node counts, tokens and cost."""
        from evolve.store.queries import list_runs

        return RunList(runs=guard(lambda: list_runs(ws(), experience, limit)))

    @server.tool()
    def inspect(run_id: RunRef) -> Inspected:
        """What a run did: phases, nodes, items, attempts, failures and the state diff."""
        from evolve.store.queries import inspect_run

        return Inspected(run=guard(lambda: inspect_run(ws(), run_id).to_json()))

    @server.tool()
    def state(
        run_id: RunRef,
        field: Annotated[str | None, Field(description="one state field")] = None,
        history: Annotated[bool, Field(description="with field: every write to it")] = False,
    ) -> StateValue:
        """A run's final state, one field of it, or one field's history of writes."""
        from evolve.store.queries import run_state

        if history and field is None:
            raise ToolError("history needs a field")
        resolved, value = guard(lambda: run_state(ws(), run_id, field, history))
        return StateValue(run_id=resolved, value=value)

    @server.tool(name="eval")
    async def eval_(
        path: Path_,
        ctx: mcpserver.Context,
        offline: Annotated[
            bool, Field(description="replay the experience's cassettes/: no key, no network")
        ] = False,
        case: Annotated[list[str] | None, Field(description="only these case ids")] = None,
        repeat: Annotated[int, Field(ge=1, description="run every case N times")] = 1,
        model: Annotated[str | None, Field(description="model for agents and judges")] = None,
        min_score: Annotated[float | None, Field(ge=0, le=1, description="gate")] = None,
        min_pass_rate: Annotated[float | None, Field(ge=0, le=1, description="gate")] = None,
    ) -> Evaluated:
        """Run every case of an experience and score it with its evals (one suite run). Each
        finished case is reported as a progress notification."""
        import anyio
        import anyio.to_thread

        from evolve.evals.suite import SuiteOptions, failed_gates, run_suite
        from evolve.runtime.run import RunOptions

        report = _reporter(ctx)

        def progress(result: Any, done: int, total: int) -> None:
            message = f"{result.case_id}: {result.status}, score {result.score}"
            report(done, total, message)

        options = SuiteOptions(
            run=RunOptions(model=model, offline=offline),
            case_ids=case or [],
            repeat=repeat,
            on_case=progress,
        )
        try:
            result = await anyio.to_thread.run_sync(lambda: run_suite(path, ws(), options))
        except EvolveError as exc:
            raise ToolError(str(exc)) from None
        gates = failed_gates(result.score, result.pass_rate, min_score, min_pass_rate)
        return Evaluated(suite=result.to_json(), gates=gates)

    @server.tool()
    def propose(
        run_ids: Annotated[
            list[str] | None, Field(description="runs (default: the newest)")
        ] = None,
        offline: Annotated[
            bool, Field(description="replay the advisor's reply from the cassettes")
        ] = False,
        no_llm: Annotated[bool, Field(description="deterministic proposals only")] = False,
        model: Annotated[str | None, Field(description="the advisor's model")] = None,
        last: Annotated[int | None, Field(ge=1, description="pool the newest N runs")] = None,
    ) -> Proposed:
        """Propose at most five improvements, each a diff evolve has proven applies. Nothing is
        applied: read the report, then get a diff with the `diff` tool."""
        from evolve.advisor.propose import propose as make

        report = guard(
            lambda: make(
                ws(), run_ids or [], last=last, model=model, no_llm=no_llm, offline=offline
            )
        )
        return Proposed(path=str(report.path), report=report.to_json())

    @server.tool()
    def diff(
        run_id: RunRef,
        number: Annotated[int | None, Field(ge=1, description="proposal N (default: all)")] = None,
    ) -> Diff:
        """The raw diff of proposal N (or all) of a run's newest report, for `git apply`."""
        from evolve.advisor.report import proposal_diff

        found = guard(lambda: proposal_diff(ws(), run_id, number))
        return Diff(
            run_id=found.run_id,
            apply_root=found.apply_root,
            diff=found.diff,
            applies_together=found.applies_together,
        )

    @server.tool()
    async def new(
        task: Annotated[str, Field(description="what the experience should do, in one line")],
        directory: Annotated[str | None, Field(description="the new directory")] = None,
        model: Annotated[str | None, Field(description="the model that drafts it")] = None,
        max_rounds: Annotated[int, Field(ge=0, description="repair rounds")] = 3,
        offline: Annotated[bool, Field(description="replay the recorded demo draft")] = False,
    ) -> Drafted:
        """Draft a new experience from a one-line task (analysis, files, validation, repair
        rounds). The result is a draft to review; nothing outside its directory is touched."""
        from evolve.authoring import draft_experience

        try:
            draft = await draft_experience(
                task,
                directory=Path(directory) if directory else None,
                model=model,
                max_rounds=max_rounds,
                offline=offline,
            )
        except EvolveError as exc:
            raise ToolError(str(exc)) from None
        return Drafted(
            directory=str(draft.directory),
            valid=draft.valid,
            files=draft.files,
            refused=draft.refused,
            problems=draft.problems,
            repair_rounds=draft.rounds,
            open_questions=draft.open_questions,
            next_steps=draft.next_steps,
        )

    return server


def _tool_error() -> type[Exception]:
    from mcp.server.mcpserver.exceptions import ToolError

    return ToolError


def serve(workspace: Path | None = None) -> None:
    """Serve over stdin/stdout until the client closes the connection."""
    import anyio

    server = build_server(workspace)
    anyio.run(server.run_stdio_async)


def _reporter(ctx: Any) -> Any:
    """`report(done, total, message)`: a progress notification sent from any thread (a run's
    listeners run on its driver thread, which is not one of anyio's), waiting until it is sent."""
    import asyncio

    loop = asyncio.get_running_loop()

    def report(done: float, total: float | None, message: str) -> None:
        asyncio.run_coroutine_threadsafe(ctx.report_progress(done, total, message), loop).result()

    return report
