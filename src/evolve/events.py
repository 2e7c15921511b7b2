"""The event vocabulary: every type of event a run writes, declared once with its fields.

A run's log (`.evolve/runs/<run-id>.jsonl`) holds one JSON object per line. Each line has the
envelope (`v`, `seq`, `ts`, `run_id`, `type`) and the fields of its type, as declared by the
dataclasses below; a field whose value is `None` is left out of the line. Writers build these
dataclasses (never dicts with a type string), and readers compare `event["type"]` with
`EventType` members, so a type or a field exists in exactly one place. `validate` checks a
written event against the declarations, and `reference()` renders docs/events.md from them.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any, ClassVar

EVENT_VERSION = 1


class EventType(StrEnum):
    RUN_STARTED = "run.started"
    RUN_FINISHED = "run.finished"
    NODE_READY = "node.ready"
    NODE_ITEMS = "node.items"
    NODE_STARTED = "node.started"
    NODE_ACTIVITY = "node.activity"
    NODE_FINISHED = "node.finished"
    NODE_REUSED = "node.reused"
    NODE_FAILED = "node.failed"
    NODE_RETRY = "node.retry"
    NODE_TIMEOUT = "node.timeout"
    NODE_SKIPPED = "node.skipped"
    STATE_INIT = "state.init"
    STATE_WRITE = "state.write"
    SCHEMA_INVALID = "schema.invalid"
    LLM_CALL = "llm.call"
    CLI_CALL = "cli.call"
    HTTP_CALL = "http.call"
    LOOP_ITERATION = "loop.iteration"
    EVAL_RESULT = "eval.result"
    EVAL_CASE = "eval.case"


def _doc(text: str, default: Any = dataclasses.MISSING) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass(slots=True, kw_only=True)
class Event:
    """The fields every event has besides the envelope: none. Subclasses declare their own."""

    TYPE: ClassVar[EventType]

    def fields(self) -> dict[str, Any]:
        """The declared fields that have a value, in declaration order."""
        names, values = _reader(type(self))
        pairs = zip(names, values(self), strict=True)
        return {name: value for name, value in pairs if value is not None}


@dataclass(slots=True, kw_only=True)
class NodeEvent(Event):
    node_id: str = _doc("The node (or pipeline, or loop) the event is about.")
    item: int | None = _doc("The for_each or pipeline item (0-based), when there is one.", None)


@dataclass(slots=True, kw_only=True)
class RunStarted(Event):
    """The run began: what ran, with which arguments and model, and the graph as run. A suite
    run of `evolve eval` has `kind: suite`, `cases` and `repeat` instead of `args` and `graph`."""

    TYPE = EventType.RUN_STARTED
    experience: str = _doc("The experience's name.")
    version: str | None = _doc("The experience's version.", None)
    experience_dir: str = _doc("The experience's folder.")
    spec_hash: str = _doc("A hash of experience.yaml as loaded.")
    args: dict[str, Any] | None = _doc("The --args/--set values the run started with.", None)
    model: str | None = _doc("The models of its agent nodes, comma-separated.", None)
    parent_run_id: str | None = _doc(
        "For a nested experience or a suite's case: the run that started it.", None
    )
    parent_node: str | None = _doc("For a nested experience: the node that started it.", None)
    case_id: str | None = _doc("For a suite's case run: the case.", None)
    repeat: int | None = _doc(
        "For a suite's case run: which repeat (1-based); for a suite: how many repeats.", None
    )
    kind: str | None = _doc("`suite` for a suite run of `evolve eval`.", None)
    cases: list[str] | None = _doc("A suite: the ids of its cases.", None)
    resumed_from: str | None = _doc(
        "The earlier run whose results this run reuses (`evolve resume`, `evolve run --from`).",
        None,
    )
    rerun: list[str] | None = _doc("Nodes named by `--rerun`: executed whatever is kept.", None)
    options: dict[str, Any] | None = _doc(
        "How it was started, where it matters to `evolve resume`: `model` (--model), "
        "`api_base`, `replay`, `offline`, `concurrency`, `max_cost`.",
        None,
    )
    graph: dict[str, Any] | None = _doc(
        "The graph as run: `phases`, `nodes` (kind, phase, for_each), `steps` and `edges`.", None
    )


@dataclass(slots=True, kw_only=True)
class RunFinished(Event):
    """The run ended. Always written, also on fail_run, Ctrl-C and a budget stop; the state
    store has the run's final state before this line is written."""

    TYPE = EventType.RUN_FINISHED
    status: str = _doc("success, failed, partial or interrupted.")
    reason: str | None = _doc("Why it failed, was partial or interrupted.", None)
    stopped: str | None = _doc("`max_cost` when the budget stopped the run.", None)
    duration_ms: int = _doc("Wall time of the run.")
    tokens: dict[str, int] = _doc("Model tokens of the run: `{in, out}`.")
    cost_usd: float | None = _doc("Model cost of the run, when known.", None)
    score: float | None = _doc("The run's eval score (0..1); a suite: the mean score.", None)
    evals_passed: bool | None = _doc("Whether the run passed its evals.", None)
    pass_rate: float | None = _doc("A suite: the share of case runs passing their evals.", None)


@dataclass(slots=True, kw_only=True)
class NodeReady(NodeEvent):
    """Every predecessor of a step finished and every incoming `when` holds: it starts now."""

    TYPE = EventType.NODE_READY


@dataclass(slots=True, kw_only=True)
class NodeItems(NodeEvent):
    """A for_each node (or a pipeline stage) knows how many items it will run."""

    TYPE = EventType.NODE_ITEMS
    total: int = _doc("How many items.")


@dataclass(slots=True, kw_only=True)
class NodeStarted(NodeEvent):
    """An attempt of a node (or of one item) started."""

    TYPE = EventType.NODE_STARTED
    attempt: int = _doc("1 for the first try, 2 for the first retry, ...")


@dataclass(slots=True, kw_only=True)
class NodeActivity(NodeEvent):
    """A Python tool reported what it is doing (through the `_activity` callable it is given)."""

    TYPE = EventType.NODE_ACTIVITY
    attempt: int | None = _doc("The attempt reporting.", None)
    activity: str = _doc("What the tool said it is doing.")


@dataclass(slots=True, kw_only=True)
class NodeFinished(NodeEvent):
    """An attempt succeeded; or, without `attempt`, a whole for_each node, pipeline or loop
    ended with its `status` (`failed` when every item failed, or when one item failed under
    fail_run and stopped the run)."""

    TYPE = EventType.NODE_FINISHED
    attempt: int | None = _doc("The attempt that succeeded (absent for a whole node).", None)
    duration_ms: int = _doc("How long the attempt (or the whole node) took.")
    metrics: dict[str, Any] | None = _doc("What the attempt reported in `metrics`.", None)
    status: str | None = _doc("A whole node's outcome: succeeded or failed.", None)
    items: int | None = _doc("A whole for_each node: how many items it ran.", None)
    items_failed: int | None = _doc("A whole for_each node: how many items failed.", None)
    error: str | None = _doc("A whole node that failed: why.", None)
    worker: str | None = _doc(
        "The Ray node the attempt ran on (`--executor ray`; absent in a local run).", None
    )
    cpu_ms: int | None = _doc(
        "An attempt of a Python tool: the CPU time it used or queued for (not time spent waiting).",
        None,
    )
    fingerprint: str | None = _doc(
        "An attempt that succeeded: the fingerprint its result is kept under (see docs/resume.md).",
        None,
    )
    result: dict[str, Any] | None = _doc(
        "An attempt that succeeded: its kept result, `{delta, edge_output}` (`edge_output` left "
        "out when it is the delta itself); absent when the encoded result exceeds 64 KiB, which "
        "is then committed to the state store before this line.",
        None,
    )


@dataclass(slots=True, kw_only=True)
class NodeReused(NodeEvent):
    """A node (or one item of it) was not executed: the result an earlier run kept for the
    same fingerprint was applied instead (its writes follow as `state.write` events)."""

    TYPE = EventType.NODE_REUSED
    from_run: str = _doc("The run that executed the node and kept the result.")
    fingerprint: str = _doc("The fingerprint that matched (see docs/resume.md).")
    cached: bool | None = _doc("true: found through the node's `cache:`, in any earlier run.", None)


@dataclass(slots=True, kw_only=True)
class NodeFailed(NodeEvent):
    """An attempt failed; or, without `attempt`, a node failed as a whole (its for_each source
    is not a list, or its items' writes could not be merged into state)."""

    TYPE = EventType.NODE_FAILED
    attempt: int | None = _doc("The attempt that failed (absent for a node-level failure).", None)
    error_type: str = _doc("What kind of failure (timeout, rate_limit, tool_error, ...).")
    error: str = _doc("The error message.")
    duration_ms: int | None = _doc("How long the failed attempt took.", None)
    worker: str | None = _doc(
        "The Ray node the attempt ran on, when known (`--executor ray`; absent in a local run).",
        None,
    )


@dataclass(slots=True, kw_only=True)
class NodeRetry(NodeEvent):
    """A failed attempt will be tried again after `delay_ms`."""

    TYPE = EventType.NODE_RETRY
    attempt: int = _doc("The attempt that failed.")
    delay_ms: int = _doc("The wait before the next attempt.")
    error: str = _doc("Why the attempt failed.")


@dataclass(slots=True, kw_only=True)
class NodeTimeout(NodeEvent):
    """An attempt ran into its `timeout_ms` (a `node.failed` with error_type timeout follows)."""

    TYPE = EventType.NODE_TIMEOUT
    attempt: int = _doc("The attempt that timed out.")
    timeout_ms: int = _doc("The limit it hit.")


@dataclass(slots=True, kw_only=True)
class NodeSkipped(NodeEvent):
    """A step did not run (a predecessor failed or was skipped, a `when` was false), or a node
    or item failed under `on_error: skip` (its reason starts with `failed`)."""

    TYPE = EventType.NODE_SKIPPED
    reason: str = _doc("Why.")


@dataclass(slots=True, kw_only=True)
class StateInit(Event):
    """The state the run starts from: the declared defaults and the run's arguments. With the
    `state.write` values after it, the log holds the run's whole state (`evolve doctor --repair`
    rebuilds the store's state from them)."""

    TYPE = EventType.STATE_INIT
    values: dict[str, Any] = _doc("Each field that has a value at the start, and its value.")


@dataclass(slots=True, kw_only=True)
class StateWrite(NodeEvent):
    """A node's write was merged into a state field (a fan-out's writes are one merge)."""

    TYPE = EventType.STATE_WRITE
    field: str = _doc("The state field.")
    writes: int | None = _doc("How many items wrote it, when more than one.", None)
    reused_from: str | None = _doc("A reused result's write: the run that made it.", None)
    value_preview: str = _doc("The new value, shortened to 200 characters.")
    value: Any = _doc(
        "The new value in full; absent when `appended` gives it, or when it is null.", None
    )
    appended: list[Any] | None = _doc(
        "When the new value is the old array with items added at its end: those items (a log "
        "of an `array_append` field stays linear in its writes).",
        None,
    )


@dataclass(slots=True, kw_only=True)
class SchemaInvalid(NodeEvent):
    """An agent's reply did not meet its output schema."""

    TYPE = EventType.SCHEMA_INVALID
    attempt: int = _doc("The attempt.")
    errors: list[str] = _doc("What was wrong with the reply.")
    final: bool = _doc("false: a repair turn follows; true: the attempt fails.")


@dataclass(slots=True, kw_only=True)
class LlmCall(NodeEvent):
    """One model call of an agent node (a repair turn is a second call)."""

    TYPE = EventType.LLM_CALL
    attempt: int = _doc("The attempt that made the call.")
    model: str = _doc("The model that answered.")
    tokens_in: int | None = _doc("Prompt tokens.", None)
    tokens_out: int | None = _doc("Completion tokens.", None)
    cost_usd: float | None = _doc("The call's cost, when known.", None)
    duration_ms: int = _doc("How long the call took (0 when replayed).")
    replayed: bool = _doc("Served from a cassette.")
    key: str | None = _doc("The call's cassette key.", None)
    mode: str | None = _doc("The structured output mode that answered (absent: no schema).", None)
    refused_modes: list[str] | None = _doc(
        "`mode: reason` for each structured output mode the server refused first.", None
    )
    finish_reason: str | None = _doc(
        "Why the reply ended, as the provider says (`stop`; `length`: cut at max_tokens).", None
    )


@dataclass(slots=True, kw_only=True)
class CliCall(NodeEvent):
    """One run of a cli-agent node's command (a repair turn is a second run)."""

    TYPE = EventType.CLI_CALL
    attempt: int = _doc("The attempt that ran it.")
    provider: str | None = _doc("claude-code, codex or gemini; absent for a plain command.", None)
    argv: list[str] = _doc("The command as run, the prompt shown as `<prompt>`.")
    turn: int = _doc("1, or 2 for the repair turn.")
    exit_code: int | None = _doc("The command's exit code.", None)
    duration_ms: int = _doc("How long it ran (0 when replayed).")
    replayed: bool = _doc("Served from a cassette.")
    key: str | None = _doc("The call's cassette key.", None)
    files_changed: list[dict[str, str]] = _doc(
        "Files the command changed in its workdir: `{path, change}`, change being added, "
        "modified or deleted."
    )


@dataclass(slots=True, kw_only=True)
class HttpCall(NodeEvent):
    """One GET of a dataset node with an http source."""

    TYPE = EventType.HTTP_CALL
    attempt: int = _doc("The attempt that fetched.")
    url: str = _doc("The URL.")
    status: int | None = _doc("The HTTP status.", None)
    duration_ms: int = _doc("How long the fetch took (0 when replayed).")
    bytes: int = _doc("The body's length in characters.")
    replayed: bool = _doc("Served from a cassette.")
    key: str | None = _doc("The call's cassette key.", None)


@dataclass(slots=True, kw_only=True)
class LoopIteration(NodeEvent):
    """A loop's body ran once more."""

    TYPE = EventType.LOOP_ITERATION
    iteration: int = _doc("1, 2, ...")
    until_met: bool = _doc("Whether `until` holds after this iteration.")
    body: str = _doc("The body node.")


@dataclass(slots=True, kw_only=True)
class EvalResult(Event):
    """One eval of the experience scored the run's final state (just before `run.finished`)."""

    TYPE = EventType.EVAL_RESULT
    eval: str = _doc("The eval's name.")
    kind: str = _doc("expr, impl or judge.")
    case_id: str | None = _doc("The case scored, in a suite's case run.", None)
    score: float = _doc("0..1.")
    passed: bool = _doc("Whether it passed.")
    required: bool = _doc("Whether the run must pass it.")
    weight: float = _doc("Its weight in the run's score.")
    reason: str | None = _doc("Why (a judge's reason, an error).", None)
    error: bool | None = _doc("true when the eval itself could not be computed.", None)


@dataclass(slots=True, kw_only=True)
class EvalCase(Event):
    """In a suite's log: one case run finished."""

    TYPE = EventType.EVAL_CASE
    case_id: str = _doc("The case.")
    repeat: int = _doc("Which repeat (1-based).")
    case_run_id: str | None = _doc(
        "The case run (the envelope's `run_id` is the suite's); absent if it could not start.",
        None,
    )
    status: str = _doc("The case run's status.")
    score: float | None = _doc("Its score.", None)
    passed: bool | None = _doc("Whether it passed its evals.", None)
    failing: list[Any] | None = _doc("The evals it failed.", None)
    duration_ms: int | None = _doc("How long the case run took.", None)
    tokens_in: int | None = _doc("Its prompt tokens.", None)
    tokens_out: int | None = _doc("Its completion tokens.", None)
    cost_usd: float | None = _doc("Its model cost.", None)
    error: str | None = _doc("Why the case run could not run or be scored.", None)
    workers: list[str] | None = _doc(
        "The Ray nodes the case run's attempts ran on (`--executor ray`; absent in a local suite).",
        None,
    )


EVENTS: dict[EventType, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        RunStarted,
        RunFinished,
        NodeReady,
        NodeItems,
        NodeStarted,
        NodeActivity,
        NodeFinished,
        NodeReused,
        NodeFailed,
        NodeRetry,
        NodeTimeout,
        NodeSkipped,
        StateInit,
        StateWrite,
        SchemaInvalid,
        LlmCall,
        CliCall,
        HttpCall,
        LoopIteration,
        EvalResult,
        EvalCase,
    )
}

ENVELOPE: dict[str, tuple[Any, str]] = {
    "v": (int, "The event format version (1)."),
    "seq": (int, "1, 2, ... in the order written."),
    "ts": (str, "When, as ISO-8601 UTC with milliseconds."),
    "run_id": (str, "The run."),
    "type": (str, "One of the types below."),
}


@cache
def _names(cls: type[Event]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@cache
def _reader(cls: type[Event]) -> tuple[tuple[str, ...], Callable[[Event], tuple[Any, ...]]]:
    """The declared field names of a type, and a function reading their values in one call
    (an event is written for every attempt: one C-level read beats a getattr per field)."""
    names = _names(cls)
    if len(names) > 1:
        return names, operator.attrgetter(*names)
    return names, lambda event: tuple(getattr(event, name) for name in names)


@cache
def _hints(cls: type[Event]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {name: hints[name] for name in _names(cls)}


def _accepts(hint: Any, value: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arm, value) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_accepts(inner, v) for v in value)
    if origin is dict:
        _, inner = typing.get_args(hint) or (str, Any)
        return isinstance(value, dict) and all(_accepts(inner, v) for v in value.values())
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def validate(event: dict[str, Any]) -> list[str]:
    """What is wrong with a written event: an unknown type, a field its type does not declare,
    a declared field that is missing or has the wrong type. Empty when it is well-formed."""
    problems = [
        f"envelope field '{name}' is missing or not {hint.__name__}"
        for name, (hint, _) in ENVELOPE.items()
        if not _accepts(hint, event.get(name))
    ]
    try:
        cls = EVENTS[EventType(event.get("type"))]
    except ValueError:
        return [*problems, f"undeclared event type {event.get('type')!r}"]
    hints = _hints(cls)
    for name, value in event.items():
        if name in ENVELOPE:
            continue
        if name not in hints:
            problems.append(f"{event['type']}: undeclared field '{name}'")
        elif not _accepts(hints[name], value):
            problems.append(f"{event['type']}: field '{name}' is not {hints[name]}: {value!r}")
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in event:
            problems.append(f"{event['type']}: required field '{f.name}' is missing")
    return problems


_JSON_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any"}


def _type_name(hint: Any) -> str:
    """A declared type as JSON names it: `string`, `integer`, `array of string`, `object`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None))
    if origin is list:
        return "array of " + _type_name(typing.get_args(hint)[0])
    if origin is dict:
        inner = typing.get_args(hint)[1]
        return "object" if inner is Any else f"object of {_type_name(inner)}"
    return _JSON_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def reference() -> str:
    """docs/events.md, rendered from the declarations above."""
    lines = [
        "# Events",
        "",
        "<!-- Generated from src/evolve/events.py by `python -m evolve.events`; "
        "tests/test_events.py fails when this file and the code differ. -->",
        "",
        "Every run writes `.evolve/runs/<run-id>.jsonl`: one JSON object per line, written and",
        "flushed line by line, in `seq` order. A crash can tear at most the last line, which",
        "readers skip. Fields whose value is null are left out. Read a log with `jq`, e.g.",
        "",
        "```sh",
        "jq -c 'select(.type == \"node.failed\") | {node_id, item, error_type, error}' \\",
        "  .evolve/runs/r-abc12345.jsonl",
        "```",
        "",
        "## Every event",
        "",
        "| field | type | meaning |",
        "|---|---|---|",
        *(f"| `{n}` | {_type_name(h)} | {d} |" for n, (h, d) in ENVELOPE.items()),
    ]
    for kind, cls in EVENTS.items():
        doc = " ".join((cls.__doc__ or "").split())
        lines += ["", f"## `{kind}`", "", doc, "", "| field | type | meaning |", "|---|---|---|"]
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            optional = f.default is not dataclasses.MISSING
            name = f"`{f.name}`" + ("?" if optional else "")
            lines.append(f"| {name} | {_type_name(hints[f.name])} | {f.metadata.get('doc', '')} |")
    lines += [
        "",
        "A field marked `?` is present only when it has a value.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference(), end="")
