"""Calling a tool node's code: a Python function in process, a `.mjs`/`.js` module under `node`,
or any other executable speaking JSON on stdin/stdout.

Every call takes one `inputs` dict and returns the tool's raw result. Subprocesses run with an
explicit argv (never a shell) in a new process group, and are killed as a group when the attempt's
deadline passes. A Python function, sync or async, runs in a worker thread (an async one on that
thread's own event loop) so the deadline can fire even when the tool blocks; the attempt is failed
at the deadline even though Python cannot stop the thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import inspect
import json
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from evolve import jsonvalue
from evolve.runtime.attempt import AttemptError
from evolve.runtime.driver import Driver
from evolve.runtime.failures import error_type_of

_NODE_RUNNER = Path(__file__).with_name("node_runner.mjs")


def tool_error(
    message: str, error_type: str = "tool_error", *, retryable: bool = True
) -> AttemptError:
    """A tool attempt that failed: it raised, exited non-zero, or printed something not JSON."""
    return AttemptError(message, error_type, retryable=retryable)


class _DaemonThreads:
    """Worker threads for Python tools that never keep the process alive nor stall the run.

    Sync and async tools both run here, never on the run's own event loop: an `async def` tool
    that blocks (a `time.sleep`, a CPU loop) would otherwise freeze every deadline of the run.
    Each worker has an event loop of its own for async tools. At the deadline the attempt fails
    and an async tool's task is cancelled; a tool blocked in sync code runs on, unseen.
    asyncio's default executor is joined at exit, so one tool stuck past its deadline would hold
    the whole command open. These workers are daemon threads, and a new one starts whenever
    none is idle, so a stuck tool never blocks the next one either.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # one token per worker about to wait for a job; deque appends and pops are atomic, so
        # neither side ever blocks on the other to count them
        self._idle: collections.deque[None] = collections.deque()
        # per function (by id: a callable need not be hashable): whether its last call took
        # 0.5 ms or more, or was async (unknown: assume so); it decides which CPU clock a call
        # reads and whether the loop's driver makes the next call (see `call`)
        self._long: dict[int, bool] = {}

    def quick_now(self, func: Any) -> bool:
        return self._long.get(id(func), True) is False

    def moved(self, func: Any) -> None:
        self._long[id(func)] = True

    def call(
        self, func: Any, arg: Any, on_cpu: Callable[[int], None] | None = None
    ) -> asyncio.Future[Any]:
        """Call `func(arg)` off the loop; its result, as a future. A sync function whose last
        call was quick (under 0.5 ms) is called by the loop's driver between two turns of the
        loop, when `driver.drive` runs it (see there); any other, by a worker thread."""
        loop = asyncio.get_running_loop()
        if self.quick_now(func):
            driver = Driver.of(loop)
            if driver is not None:
                future = driver.call(self, func, arg, on_cpu)
                if future is not None:
                    return future
        return self.submit(loop, func, arg, on_cpu)

    def submit(
        self,
        loop: asyncio.AbstractEventLoop,
        func: Any,
        arg: Any,
        on_cpu: Callable[[int], None] | None = None,
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = loop.create_future()
        try:
            self._idle.pop()
        except IndexError:  # every worker is busy: one more
            threading.Thread(target=self._work, daemon=True, name="evolve-tool").start()
        self._jobs.put((func, arg, future, _Mailbox.of(loop), on_cpu))
        return future

    def make(
        self, loop: asyncio.AbstractEventLoop, func: Any, arg: Any, on_cpu: Any
    ) -> tuple[Any, BaseException | None] | asyncio.Future[Any]:
        """A call made by the loop's driver, timed on the CPU clock alone, as a quick call is.
        What it returns is awaited by a worker, on its own loop and cancelled with the attempt,
        if it is awaitable (this function used to return a plain value)."""
        began, cpu = time.perf_counter(), time.thread_time()
        try:
            result, error = func(arg), None
            if inspect.isawaitable(result):
                self._long[id(func)] = True
                return self.submit(loop, lambda _: result, None, on_cpu)
        except BaseException as exc:
            result, error = None, exc
        long = time.perf_counter() - began >= 0.0005
        self._long[id(func)] = long or self._long.get(id(func), False)
        if on_cpu is not None:
            on_cpu(round((time.thread_time() - cpu) * 1000) if long else 0)
        return result, error

    def _work(self) -> None:
        own_loop: asyncio.AbstractEventLoop | None = None
        clock = _CpuClock()
        while True:
            func, arg, future, mailbox, on_cpu = self._jobs.get()
            began, cpu = time.perf_counter(), clock.read(self._long.get(id(func), True))
            awaited = False
            try:
                result, error = func(arg), None
                if inspect.isawaitable(result):
                    awaited = True
                    own_loop = own_loop or asyncio.new_event_loop()
                    result = _run_awaitable(own_loop, result, future, mailbox)
            except BaseException as exc:
                result, error = None, exc
            # a call shorter than 0.5 ms used less: it counts 0, and the function's next call
            # reads only the CPU clock (a fan-out of short calls reads no file per call) and,
            # unless it is async, is made by the loop's driver
            long = time.perf_counter() - began >= 0.0005
            self._long[id(func)] = long or awaited
            if on_cpu is not None:
                on_cpu(round(clock.since(cpu)) if long else 0)
            self._idle.append(None)  # before the result: its caller's next call finds us idle
            mailbox.post(future, result, error)
            # held while waiting for the next job, these would keep the run's loop alive
            func = arg = future = mailbox = on_cpu = result = error = None


class _CpuClock:
    """The calling thread's CPU demand in ms: time on a CPU plus, on Linux, time it waited on a
    run queue for one (from /proc/thread-self/schedstat), so a busy machine does not make work
    that computes look like work that waits. Elsewhere, or when the caller does not ask for the
    queue (reading that file costs more than a short tool call), the thread's CPU time."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self.fd = None

    def read(self, queued_too: bool) -> tuple[bool, float]:
        """A reading (whether it has the run-queue time, ms): with the run-queue time when
        `queued_too` (and known)."""
        if queued_too and self.fd is not None:
            try:
                on_cpu, waiting = os.pread(self.fd, 64, 0).split()[:2]
                return True, (int(on_cpu) + int(waiting)) / 1e6
            except (OSError, ValueError):
                self.fd = None
        return False, time.thread_time() * 1000

    def since(self, reading: tuple[bool, float]) -> float:
        """Milliseconds from `reading` to now, on the same clock."""
        queued_too, now = self.read(reading[0])
        return now - reading[1] if queued_too == reading[0] else 0.0  # the file went away


def _run_awaitable(
    own_loop: asyncio.AbstractEventLoop,
    awaitable: Any,
    future: asyncio.Future[Any],
    mailbox: _Mailbox,
) -> Any:
    """Run an async tool on its worker's loop; when the attempt ends first, cancel it there."""
    task = own_loop.create_task(_awaited(awaitable))

    def cancel(_: asyncio.Future[Any]) -> None:
        if future.cancelled():
            own_loop.call_soon_threadsafe(task.cancel)

    run_loop = mailbox.loop
    if run_loop is not None:
        with contextlib.suppress(RuntimeError):  # closed: the run is over
            run_loop.call_soon_threadsafe(future.add_done_callback, cancel)
    return own_loop.run_until_complete(task)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class _Mailbox:
    """Results that worker threads hand back to one event loop. Results that finish while the
    loop is busy wake it once, not once each: a wake-up is a syscall on both sides and a
    hand-over of the GIL, which on a fan-out of short tools cost more than the tools."""

    _boxes: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the box is the loop's: it must not keep it alive
        self._done: collections.deque[tuple[Any, Any, BaseException | None]] = collections.deque()
        self._lock = threading.Lock()
        self._waking = False

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Mailbox:
        box = cls._boxes.get(loop)
        if box is None:
            box = cls._boxes.setdefault(loop, cls(loop))
        return box

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop()

    def post(self, future: Any, result: Any, error: BaseException | None) -> None:
        """Hand a result back (from a worker thread); wakes the loop unless a wake is pending.
        A result for a loop that is gone (its run ended while the tool overran its deadline)
        is dropped: nobody waits for it, and keeping it would keep the loop."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            return
        # the future by weak reference: the box lives as long as its loop (`_boxes`), and a
        # future holds its loop, so a strong one left here would keep the loop forever
        self._done.append((weakref.ref(future), result, error))
        with self._lock:
            wake, self._waking = not self._waking, True
        if wake:
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # it closed meanwhile
                self._done.clear()

    def _drain(self) -> None:
        with self._lock:  # first: a result posted from here on wakes the loop again
            self._waking = False
        while self._done:
            future, result, error = self._done.popleft()
            waiting = future()
            if waiting is not None:  # else the attempt is over: nobody waits for it
                _settle(waiting, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_THREADS = _DaemonThreads()


@cache
def _load_module(path: Path, mtime: float) -> Any:
    name = f"evolve_tool_{abs(hash((str(path), mtime)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise tool_error(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # let a tool import its neighbours
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def python_function(path: Path, function: str) -> Any:
    try:
        module = _load_module(path, path.stat().st_mtime)
    except AttemptError:
        raise
    except Exception as exc:
        raise tool_error(f"importing {path.name} failed: {type(exc).__name__}: {exc}") from exc
    func = getattr(module, function, None)
    if not callable(func):
        raise tool_error(f"{path.name} has no function '{function}'")
    return func


async def call_python(
    path: Path,
    function: str,
    inputs: dict[str, Any],
    loaded: dict[Any, Any] | None = None,
    on_cpu: Callable[[int], None] | None = None,
    submitted: Callable[[], Any] | None = None,
) -> Any:
    """Call a Python tool; `loaded` caches the function for a run (files don't change mid-run,
    and a stat per call is a real cost on a 5,000-item fan-out). `on_cpu` receives the CPU
    milliseconds the call used (its worker thread's own CPU time). `submitted` runs once the
    call is handed to a worker, while the worker wakes up."""
    key = (path, function)
    func = loaded.get(key) if loaded is not None else None
    if func is None:
        func = python_function(path, function)
        if loaded is not None:
            loaded[key] = func
    done = _THREADS.call(func, inputs, on_cpu)
    if submitted is not None:
        submitted()
    try:
        return await done
    except asyncio.CancelledError:
        raise
    except SystemExit as exc:  # a tool may not end evolve: it ends its own attempt
        raise tool_error(f"{path.name}:{function} called sys.exit({exc.code!r})") from None
    except Exception as exc:
        raise tool_error(
            f"{path.name}:{function} raised {type(exc).__name__}: {exc}", error_type_of(exc)
        ) from exc


def command_for(path: Path) -> list[str]:
    if path.suffix in (".mjs", ".js"):
        node = shutil.which("node")
        if node is None:
            raise tool_error(
                f"{path.name} needs Node.js, but `node` is not on PATH",
                "missing_runtime",
                retryable=False,
            )
        return [node, str(_NODE_RUNNER), str(path)]
    return [str(path)]


async def call_process(path: Path, inputs: dict[str, Any]) -> Any:
    """Run `path` with the inputs as JSON on stdin; its stdout must be one JSON value.

    Its stdin, stdout and stderr are temporary files, not pipes: the tool is done when it exits,
    even if a background child it started still holds them open.
    """
    with (
        tempfile.TemporaryFile() as stdin,
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
    ):
        stdin.write(json.dumps(inputs, default=str).encode())
        stdin.seek(0)
        proc = await asyncio.create_subprocess_exec(
            *command_for(path),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=path.parent,
            start_new_session=True,
        )
        try:
            await proc.wait()
        except BaseException:
            _kill_group(proc)
            await proc.wait()
            raise
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise tool_error(
            f"{path.name} exited with status {proc.returncode}"
            + (": " + " | ".join(tail) if tail else "")
        )
    text = out.decode(errors="replace").strip()
    if not text:
        return None
    try:
        return jsonvalue.loads(text)
    except ValueError:
        raise tool_error(
            f"{path.name} printed output that is not JSON: {text[:120]!r}", "bad_output"
        ) from None


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
