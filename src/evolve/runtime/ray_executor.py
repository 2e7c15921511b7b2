"""The Ray executor: `for_each` items of Python tool nodes, and every Python tool attempt of an
`evolve eval` case run, run as Ray tasks (docs/ray.md).

Only the call of the tool's function moves to a Ray worker. The driver (the `evolve` process)
keeps everything else: the scheduler, the policies (retries, backoff and timeouts are evolve's:
every task is submitted with `max_retries=0`), the event log and the state store, so a run has one
writer and the same records as a local run, plus the Ray node id of each attempt (`worker` on
`node.finished` and `node.failed`).

The experience directory is the Ray job's runtime-env working dir (`.evolve`, `.git`, `.venv`
and `__pycache__` left out; Ray takes a local directory at the job level only), so a tool is
loaded on the worker by its path relative to it; a tool outside it cannot run on Ray. When
the attempt's await is cancelled (its timeout, a Ctrl-C, the run stopping) the task is cancelled
with `force=True`, which kills its worker process; a worker that dies fails that attempt only
(`error_type: worker_died`, retryable). A tool that raises fails its attempt with the same
message and error type as in a local run. `ray` is imported here only, when the executor is
chosen; a missing install is a `UsageError` naming the extra.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolve.errors import UsageError
from evolve.runtime.attempt import AttemptError

if TYPE_CHECKING:
    from evolve.spec.model import Experience

EXCLUDES = [".evolve", ".git", ".venv", "__pycache__", "*.pyc"]
MISSING_RAY = (
    "the Ray executor needs Ray, which is not installed: pip install 'evolve[ray]' "
    "(or run with --executor local)"
)


@dataclass(frozen=True)
class ExecutorChoice:
    """`--executor local`, `ray`, or `ray=ADDRESS` (`auto`, `ray://host:10001`, `host:6379`)."""

    kind: str = "local"  # local | ray
    address: str | None = None  # None: start a local Ray for the run

    @classmethod
    def parse(cls, text: str) -> ExecutorChoice:
        kind, _, address = text.strip().partition("=")
        if kind not in ("local", "ray") or (kind == "local" and address):
            raise UsageError(
                f"--executor {text!r}: expected local, ray, or ray=ADDRESS "
                "(auto, ray://host:port, or host:port)"
            )
        if kind == "ray" and _ == "=" and not address:
            raise UsageError(f"--executor {text!r}: ray= needs an address (or say just ray)")
        return cls(kind, address or None)


_EXECUTORS: dict[str | None, RayExecutor] = {}
_JOINED: list[RayExecutor] = []  # the executor this process's Ray connection belongs to (0 or 1)


def executor_for(experience: Experience, option: str | None) -> RayExecutor | None:
    """The executor a run uses: `--executor` over `runtime.executor`; None for local. One per
    address per process, so a suite's case runs and child runs share one Ray connection."""
    choice = ExecutorChoice.parse(option or experience.runtime.executor)
    if choice.kind == "local":
        return None
    if choice.address not in _EXECUTORS:
        _EXECUTORS[choice.address] = RayExecutor(choice.address)
    return _EXECUTORS[choice.address]


class RayExecutor:
    """Submits tool calls to Ray and awaits them on the run's event loop."""

    def __init__(self, address: str | None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus  # a local Ray started for the run: its CPUs (None: all)
        self.directory: Path | None = None  # the working dir shipped to every worker
        self._ray: Any = None
        self._task: Any = None

    def connect(self, directory: Path) -> None:
        """Join the cluster at `address` (or start a local Ray) with `directory` as the job's
        working dir. Joined once per process and directory: another experience directory
        reconnects (between runs, never during one)."""
        directory = directory.resolve()
        if self._ray is not None and self.directory == directory and self in _JOINED:
            return
        try:
            import ray
        except ImportError:
            raise UsageError(MISSING_RAY) from None
        if ray.is_initialized():
            ray.shutdown()  # one connection a process: another executor's (or directory's) ends
        _JOINED.clear()
        env = {"working_dir": str(directory), "excludes": EXCLUDES}
        try:
            ray.init(
                address=self.address,
                num_cpus=self.num_cpus if self.address is None else None,
                runtime_env=env,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local Ray"
            raise UsageError(f"cannot connect to {where}: {_reason(exc)}") from None
        self._ray, self.directory = ray, directory
        self._task = ray.remote(_run_tool).options(max_retries=0, num_cpus=1)
        _JOINED.append(self)

    def cpus(self) -> int:
        """The CPUs of the cluster joined (0 before `connect`)."""
        if self._ray is None:
            return 0
        return int(self._ray.cluster_resources().get("CPU", 0))

    def shutdown(self) -> None:
        """Leave the cluster (and stop a local Ray started for the run)."""
        if self._ray is not None and self in _JOINED:
            self._ray.shutdown()
            _JOINED.clear()
        self._ray = self.directory = self._task = None

    async def call(
        self, path: Path, function: str, inputs: dict[str, Any]
    ) -> tuple[Any, str | None]:
        """Call `function` of the tool at `path` on a worker: (its result, the worker's node)."""
        from evolve.runtime.tools import tool_error

        if self._ray is None or self.directory is None:
            raise AttemptError("the Ray executor is not connected", "ray_error", retryable=False)
        try:
            relative = path.resolve().relative_to(self.directory).as_posix()
        except ValueError:
            raise AttemptError(
                f"{path.name} is outside the experience directory {self.directory}, so Ray "
                "cannot ship it",
                "unsupported",
                retryable=False,
            ) from None
        ref = self._task.remote(relative, function, inputs)
        try:
            reply = await ref
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                self._ray.cancel(ref, force=True)
                raise
            raise self._failure(path, function, exc) from None
        if "raised" in reply:
            raise tool_error(reply["raised"], reply["error_type"]).on_worker(reply["worker"])
        return reply["result"], reply["worker"]

    def _failure(self, path: Path, function: str, exc: BaseException) -> AttemptError:
        errors = self._ray.exceptions
        if isinstance(exc, errors.WorkerCrashedError | errors.NodeDiedError):
            return AttemptError(f"{path.name}:{function}: the Ray worker died", "worker_died")
        if isinstance(exc, errors.RuntimeEnvSetupError):
            return AttemptError(
                f"{path.name}:{function}: Ray could not set up the task: {exc}",
                "runtime_env",
                retryable=False,
            )
        return AttemptError(f"{path.name}:{function}: Ray failed: {exc}", "ray_error")


def _reason(exc: BaseException) -> str:
    """Why Ray refused, in one line: the innermost cause, and when its text carries a traceback
    (a refused token arrives so), the exception line that ends it; two sentences at most."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if "Traceback (most recent call last)" in str(exc):
        lines = [line for line in lines if not line.startswith(" ")][-1:]
    line = lines[0].strip() if lines else type(exc).__name__
    return ". ".join(line.split(". ")[:2])[:400]


def _run_tool(relative: str, function: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """On the worker (cwd: the shipped experience directory): load the tool and call it."""
    import ray

    from evolve.runtime.tools import error_type_of

    worker = ray.get_runtime_context().get_node_id()
    path = Path(relative).resolve()
    name = f"{path.name}:{function}"
    try:
        module = _load(path)
    except Exception as exc:
        message = f"importing {path.name} failed: {type(exc).__name__}: {exc}"
        return _raised(message, "tool_error", worker)
    try:
        func = getattr(module, function, None)
        if not callable(func):
            return _raised(f"{path.name} has no function '{function}'", "tool_error", worker)
        result = func({**inputs, "_activity": _no_activity})
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
    except SystemExit as exc:
        return _raised(f"{name} called sys.exit({exc.code!r})", "tool_error", worker)
    except Exception as exc:
        return _raised(f"{name} raised {type(exc).__name__}: {exc}", error_type_of(exc), worker)
    return {"result": result, "worker": worker}


def _raised(message: str, error_type: str, worker: str) -> dict[str, Any]:
    return {"raised": message, "error_type": error_type, "worker": worker}


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _no_activity(_: str) -> None:
    """On a worker a tool's `_activity` reports go nowhere (the driver holds the log)."""


_MODULES: dict[tuple[str, float], Any] = {}


def _load(path: Path) -> Any:
    key = (str(path), path.stat().st_mtime)
    if key not in _MODULES:
        spec = importlib.util.spec_from_file_location(f"evolve_tool_{abs(hash(key))}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        _MODULES[key] = module
    return _MODULES[key]
