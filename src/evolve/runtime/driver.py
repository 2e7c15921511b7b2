"""The thread a run's event loop runs on, which also runs the run's quick sync tool calls.

A sync Python tool cannot simply be called on the event loop's thread: while it runs, no deadline
of the run can fire, nor Ctrl-C. So each call went to a worker thread and its result came back:
two thread wake-ups, which on a small VM cost about 50 µs, more than a short tool itself (a
quarter of a 1,000-node chain's run).

`drive(coro)` runs the loop on a daemon thread, the *driver*, while the calling thread waits for
it (and, on the main thread, passes SIGINT/SIGTERM on to it). Between two turns of the loop, with
nothing of the loop on its stack, the driver makes the calls it was handed (`Driver.call`): sync
tool calls known to be quick. A watchdog looks in when the call being made would be due to move:
when it is still running after `TAKEOVER_S`, or a signal comes while one runs, a new thread
becomes the driver. The loop goes on there, the attempt's deadline fires on time, and the slow
call finishes on the old thread as if it had been handed to a worker from the start; its result
is delivered (or dropped, when its attempt is over). A call stuck for good leaves a daemon thread
behind, as a stuck worker does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

T = TypeVar("T")

TAKEOVER_S = 0.02  # a call the driver makes that runs longer than this moves off the loop
_PARK_S = 1.0  # with no call for this long, the watchdog sleeps until the next one
_TURN_S = 0.005  # calls made between two turns of the loop, at most this long in all
_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# a call's (result, error), or the future of a worker it handed itself to
Outcome = tuple[Any, BaseException | None] | asyncio.Future[Any]


class Caller(Protocol):
    """What makes the calls a driver is handed (`tools._DaemonThreads`)."""

    def quick_now(self, func: Any) -> bool:
        """Whether a call of `func` is still quick (else a worker makes it: `submit`)."""

    def make(self, loop: asyncio.AbstractEventLoop, func: Any, arg: Any, on_cpu: Any) -> Outcome:
        """Make the call, here and now."""

    def moved(self, func: Any) -> None:
        """A call of `func` ran too long and was moved off the loop."""

    def submit(
        self, loop: asyncio.AbstractEventLoop, func: Any, arg: Any, on_cpu: Any
    ) -> asyncio.Future[Any]:
        """Have a worker make the call."""


@dataclass(slots=True)
class _Call:
    caller: Caller
    func: Any
    arg: Any
    on_cpu: Any
    future: asyncio.Future[Any]


class Driver:
    """Runs one loop on its driver thread (see the module docstring)."""

    _drivers: ClassVar[dict[asyncio.AbstractEventLoop, Driver]] = {}  # while `drive` runs them

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self.loop, self.task = loop, task
        self._calls: collections.deque[_Call] = collections.deque()
        self._lock = threading.Lock()
        self._running: _Call | None = None  # the call being made now, and since when
        self._since = time.monotonic()
        self._closing = False
        self._on_signal: list[Callable[[], Any]] = []
        self._finished = threading.Event()
        self._wake = threading.Event()  # the watchdog's, while parked
        self._parked = False
        self.crash: BaseException | None = None
        self._drivers[loop] = self

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Driver | None:
        """The driver running `loop`, if `drive` runs it."""
        return cls._drivers.get(loop)

    # -- on the loop -----------------------------------------------------------------------------

    def call(self, caller: Caller, func: Any, arg: Any, on_cpu: Any) -> asyncio.Future[Any] | None:
        """Have the driver make `func(arg)` through `caller` after this turn of the loop; its
        result, as a future. When its turn comes, a call that is no longer quick (one like it
        just took long) goes to a worker instead: calls queued together are not made one after
        another. None: the loop is closing, and the caller must make the call some other way."""
        if self._closing:
            return None
        future = self.loop.create_future()
        self._calls.append(_Call(caller, func, arg, on_cpu, future))
        self.loop.stop()  # the turn ends once its callbacks have run
        return future

    def on_signal(self, callback: Callable[[], Any]) -> Callable[[], None]:
        """Run `callback` on the loop on SIGINT/SIGTERM (when `drive` was called on the main
        thread); returns what undoes it."""
        self._on_signal.append(callback)
        return lambda: self._on_signal.remove(callback)

    # -- driver threads --------------------------------------------------------------------------

    def start(self) -> None:
        self.task.add_done_callback(lambda _: self.loop.stop())
        self._new_driver()
        threading.Thread(target=self._watch, daemon=True, name="evolve-watchdog").start()

    def _new_driver(self) -> None:
        threading.Thread(target=self._drive, daemon=True, name="evolve-run").start()

    def _drive(self) -> None:
        try:
            if not self._turns():
                return  # another thread drives now
        except BaseException as exc:  # out of the loop itself: for the waiting thread to raise
            self.crash = exc
        try:
            self._close()  # also after a crash, as asyncio.run does
        except BaseException as exc:
            self.crash = self.crash or exc
        with self._lock:  # so the watchdog cannot park after this
            self._finished.set()
            self._wake.set()

    def _turns(self) -> bool:
        """Turns of the loop, and the calls handed over between them, until the work is done;
        False when this thread stopped driving (a call it made took too long)."""
        loop = self.loop
        while not self.task.done():
            if self._calls:  # left by a driver that was taken over: made after one turn
                loop.stop()
            loop.run_forever()
            ends = time.monotonic() + _TURN_S
            while self._calls:
                if not self._make(self._calls.popleft()):
                    return False
                if self._calls and time.monotonic() > ends:
                    loop.stop()  # one turn of the loop (its timers, its I/O) before the rest
                    break
        return True

    def _make(self, call: _Call) -> bool:
        """Make one call; False if it was taken over meanwhile (its result then goes through
        the loop's thread-safe door, like a worker thread's)."""
        if call.future.cancelled():  # its attempt ended while the call waited
            return True
        caller = call.caller
        if not caller.quick_now(call.func):
            _relay(caller.submit(self.loop, call.func, call.arg, call.on_cpu), call.future)
            return True
        with self._lock:
            self._running, self._since = call, time.monotonic()
            if self._parked:
                self._parked = False
                self._wake.set()
        outcome = caller.make(self.loop, call.func, call.arg, call.on_cpu)
        with self._lock:
            mine = self._running is call
            if mine:  # else it is another driver's call now, or none
                self._running = None
        if mine:
            _settle(call.future, outcome)
            return True
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for it
            self.loop.call_soon_threadsafe(_settle, call.future, outcome)
        return False

    def _take_over(self) -> bool:
        """Move the call being made off the loop (holding the lock); True if there was one, and
        then the caller starts a new driver once it has let go of the lock."""
        call, self._running = self._running, None
        if call is None:
            return False
        call.caller.moved(call.func)
        return True

    def _watch(self) -> None:
        """Look in when the call being made would be due to move (`TAKEOVER_S` after it
        began), not on a fast tick: each look takes the GIL from the driver."""
        due = time.monotonic() + TAKEOVER_S
        while not self._finished.wait(max(due - time.monotonic(), 0.001)):
            moved = False
            with self._lock:
                now = time.monotonic()
                if self._running is not None:
                    due = self._since + TAKEOVER_S
                    if now >= due:
                        moved = self._take_over()
                        due = now + TAKEOVER_S
                elif now - self._since > _PARK_S and not self._finished.is_set():
                    self._parked = True  # no call for a while: sleep till the next one
                    self._wake.clear()
                    due = now + TAKEOVER_S
                else:
                    due = now + TAKEOVER_S
            if moved:
                self._new_driver()
            elif self._parked:
                self._wake.wait()
                due = time.monotonic() + TAKEOVER_S

    def _close(self) -> None:
        """What `asyncio.run` does once its work is done: cancel what is left, finish async
        generators and the default executor, close the loop. Calls go elsewhere from here."""
        self._closing = True
        loop = self.loop
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    # -- the waiting thread ----------------------------------------------------------------------

    def signalled(self, signum: int, frame: Any) -> None:
        """SIGINT/SIGTERM: run the callbacks on the loop, and move a call being made off it.
        With no callback (before the run listens, or once it has ended), what the signal does
        by default: SIGINT raises KeyboardInterrupt, SIGTERM ends the process."""
        if not self._on_signal:
            default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, default)
            signal.raise_signal(signum)
            return
        for callback in list(self._on_signal):
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(callback)
        if self._lock.acquire(blocking=False):  # else the watchdog moves it, in 20 ms at most
            try:
                moved = self._take_over()
            finally:
                self._lock.release()
            if moved:
                self._new_driver()

    def wait(self) -> None:
        self._finished.wait()  # interrupted by a signal, its handler runs, and it waits on


def _relay(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    """`target` gets `source`'s outcome; cancelling `target` cancels `source`."""

    def done(_: asyncio.Future[Any]) -> None:
        if target.cancelled():
            return
        if source.cancelled():
            target.cancel()
        elif source.exception() is not None:
            target.set_exception(source.exception())  # type: ignore[arg-type]
        else:
            target.set_result(source.result())

    source.add_done_callback(done)
    target.add_done_callback(lambda _: source.cancel() if target.cancelled() else None)


def _settle(future: asyncio.Future[Any], outcome: Outcome) -> None:
    if isinstance(outcome, asyncio.Future):
        _relay(outcome, future)
        return
    if future.cancelled():
        return
    result, error = outcome
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Like `asyncio.run(coro)`, with the loop on a driver thread (see the module docstring).
    On the main thread, SIGINT and SIGTERM run the callbacks given to `Driver.on_signal`."""
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(coro)  # in this thread's context, as asyncio.run would
    except BaseException:
        loop.close()
        raise
    driver = Driver(loop, task)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in _SIGNALS:
            previous[sig] = signal.signal(sig, driver.signalled)
    try:
        driver.start()
        driver.wait()
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: installed from C, which Python cannot put back
                signal.signal(sig, handler)
        Driver._drivers.pop(loop, None)
    if driver.crash is not None:
        raise driver.crash
    return task.result()


def drive_until_interrupted(work: Coroutine[Any, Any, T], interrupted: Callable[[], T]) -> T:
    """`drive(work)`; on SIGINT/SIGTERM, `work` is cancelled (so what it runs records itself as
    interrupted) and `interrupted()` is returned instead. A run and a suite of runs go so."""
    return drive(_until_interrupted(work, interrupted))


async def _until_interrupted(work: Coroutine[Any, Any, T], interrupted: Callable[[], T]) -> T:
    driver = Driver.of(asyncio.get_running_loop())
    assert driver is not None  # `drive` runs this
    task = asyncio.ensure_future(work)
    undo = driver.on_signal(task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return interrupted()
    finally:
        undo()
