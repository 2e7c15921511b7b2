"""The typed, immutable form of an experience that the runtime consumes.

Built only by `evolve.spec.loader.load_experience`, after every check has passed, so code that
holds an `Experience` may rely on it: ids are unique, every reference resolves, every file exists
inside the experience directory, and every expression is already parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from evolve.spec.expressions import Expression

NodeKind = Literal["tool", "agent", "dataset", "experience", "cli-agent", "skill"]
MergeRule = Literal["last_wins", "array_append", "set_once"]
MODEL_KINDS = ("agent", "skill")  # node kinds that call the run's model

DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT_MS = 300_000


@dataclass(frozen=True)
class StateField:
    name: str
    type: str
    merge: MergeRule = "last_wins"
    default: Any = None
    has_default: bool = False
    description: str = ""
    schema: dict[str, Any] = field(default_factory=dict)  # the JSON Schema every write must meet


@dataclass(frozen=True)
class OnError:
    policy: Literal["fail_run", "skip", "retry"] = "fail_run"
    attempts: int = 1
    backoff: Literal["linear", "exponential"] = "exponential"
    base_ms: int = 100
    then: Literal["fail_run", "skip"] = "fail_run"


@dataclass(frozen=True)
class ForEach:
    source: Expression  # a `$.path` to an array in state
    concurrency: int | None = None


@dataclass(frozen=True)
class DatasetSource:
    type: Literal["file", "sqlite", "http"]
    path: Path | None = None  # resolved, inside the experience directory (file and sqlite)
    uri: str = ""  # as written (file and sqlite)
    format: str | None = None
    query: str | None = None
    url: str | None = None  # http
    headers: dict[str, str] = field(default_factory=dict)  # http; ${NAME} read from the env


@dataclass(frozen=True)
class CliAgent:
    """How a cli-agent node runs its CLI: a known provider, or an explicit argv."""

    provider: str | None  # claude-code | codex | gemini, or None with `command`
    base: Path  # the experience directory: a relative workdir is relative to it
    command: tuple[str, ...] = ()
    workdir: str = "."  # as written: a path inside the experience, `$.field`, or an args key
    output_format: Literal["text", "json"] = "text"
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cache:
    """`cache:` on a node: reuse its results across runs by fingerprint, for `ttl_s` seconds."""

    ttl_s: int | None = None  # None: no expiry


@dataclass(frozen=True)
class Skill:
    """An Agent Skill folder: SKILL.md (front matter + body) and its resource files."""

    directory: Path  # resolved, inside the experience directory
    name: str
    description: str
    body: str  # SKILL.md without its front matter: the system prompt


@dataclass(frozen=True)
class Node:
    id: str
    kind: NodeKind
    phase: str | None = None
    description: str = ""
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    on_error: OnError = OnError()
    for_each: ForEach | None = None
    timeout_ms: int | None = None  # None: the runtime default
    frozen: bool = False
    impl: Path | None = None  # tool file / child experience dir, resolved
    impl_text: str | None = None  # as written
    function: str | None = None  # for `file.py:function`
    args: dict[str, Any] = field(default_factory=dict)
    prompt: Path | None = None
    system: Path | None = None
    model: str | None = None
    schema: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    structured_output: str | None = None  # None: runtime.structured_output
    source: DatasetSource | None = None
    cli: CliAgent | None = None
    skill: Skill | None = None
    cache: Cache | None = None


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    when: Expression | None = None


@dataclass(frozen=True)
class Pipeline:
    id: str
    items: Expression
    stages: tuple[str, ...]
    concurrency: int | None = None


@dataclass(frozen=True)
class Loop:
    id: str
    body: str
    until: Expression
    max_iters: int


@dataclass(frozen=True)
class Phase:
    id: str
    description: str = ""


EvalKind = Literal["expr", "impl", "judge"]


@dataclass(frozen=True)
class Judge:
    prompt: Path  # resolved, inside the experience directory
    model: str | None = None


@dataclass(frozen=True)
class Eval:
    """One named check on the final state of a run, scored in [0, 1]."""

    name: str
    kind: EvalKind
    description: str = ""
    expression: Expression | None = None
    impl: Path | None = None
    function: str = "run"
    judge: Judge | None = None
    weight: float = 1.0
    threshold: float | None = None  # None: 1 for a boolean result, 0.5 otherwise
    required: bool = False
    # reads $case (an expression path or a judge placeholder): a plain run has no case, so the
    # check is scored only in `evolve eval`
    reads_case: bool = False


@dataclass(frozen=True)
class Cases:
    path: Path  # resolved, inside the experience directory
    uri: str  # as written
    format: str
    concurrency: int | None = None


@dataclass(frozen=True)
class Runtime:
    model: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    structured_output: str = "auto"  # how agent nodes ask for JSON (evolve.llm.formats)
    context_window: int | None = None  # tokens; None: ask the server, then litellm
    executor: str = "local"  # local | ray: where for_each items of Python tools run


@dataclass(frozen=True)
class Experience:
    name: str
    version: str
    description: str
    directory: Path
    spec_path: Path
    spec_hash: str  # sha256 of experience.yaml and every file it references
    runtime: Runtime
    state: dict[str, StateField]
    phases: tuple[Phase, ...]
    nodes: dict[str, Node]
    edges: tuple[Edge, ...]
    pipelines: dict[str, Pipeline]
    loops: dict[str, Loop]
    evals: tuple[Eval, ...] = ()
    cases: Cases | None = None
    files: tuple[Path, ...] = ()  # every file the spec references (prompts, tools, data...)
    # experience.yaml as plain data, as it was loaded (readers compare versions with it)
    data: Any = field(default=None, compare=False, repr=False)

    def file_digests(self) -> dict[str, str]:
        """A short sha256 per file of this version (experience.yaml and what it references),
        keyed by path inside the experience: what `evolve compare` diffs between versions."""
        import hashlib

        digests = {}
        for path in (self.spec_path, *self.files):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            digests[str(path.relative_to(self.directory))] = hashlib.sha256(data).hexdigest()[:16]
        return digests

    @cached_property
    def steps(self) -> tuple[str, ...]:
        """Ids of the graph's steps: top-level nodes, pipelines and loops (edges join these)."""
        owned = {s for p in self.pipelines.values() for s in p.stages}
        owned |= {loop.body for loop in self.loops.values()}
        top = tuple(n for n in self.nodes if n not in owned)
        return top + tuple(self.pipelines) + tuple(self.loops)

    @cached_property
    def _incoming(self) -> dict[str, tuple[Edge, ...]]:
        found: dict[str, list[Edge]] = {}
        for edge in self.edges:
            found.setdefault(edge.target, []).append(edge)
        return {k: tuple(v) for k, v in found.items()}

    @cached_property
    def _outgoing(self) -> dict[str, tuple[Edge, ...]]:
        found: dict[str, list[Edge]] = {}
        for edge in self.edges:
            found.setdefault(edge.source, []).append(edge)
        return {k: tuple(v) for k, v in found.items()}

    def predecessors(self, step: str) -> tuple[Edge, ...]:
        return self._incoming.get(step, ())

    def successors(self, step: str) -> tuple[Edge, ...]:
        return self._outgoing.get(step, ())
