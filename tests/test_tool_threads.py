"""The worker threads that run Python tools: results come back whole and in any number, and a
fan-out of short calls reads no per-call file for its CPU clock."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
import weakref
from pathlib import Path

import pytest

from evolve.runtime import tools


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "t.py"
    path.write_text(body)
    return path


def test_many_results_finishing_together_each_reach_their_caller(tmp_path):
    path = _write(tmp_path, "def run(inputs):\n    return {'state_delta': {'n': inputs['n']}}\n")

    async def main() -> list[object]:
        loaded: dict = {}
        calls = [tools.call_python(path, "run", {"n": n}, loaded) for n in range(300)]
        return await asyncio.gather(*calls)

    results = asyncio.run(main())
    assert [r["state_delta"]["n"] for r in results] == list(range(300))


def test_a_tool_error_reaches_its_own_caller_only(tmp_path):
    body = (
        "def run(inputs):\n    if inputs['n'] == 3:\n        raise ValueError('three')\n"
        "    return {}\n"
    )
    path = _write(tmp_path, body)

    async def main() -> list[object]:
        calls = [tools.call_python(path, "run", {"n": n}, {}) for n in range(6)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert [isinstance(r, Exception) for r in results] == [False, False, False, True, False, False]
    assert "ValueError: three" in str(results[3])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="schedstat is Linux only")
def test_short_calls_read_only_the_cpu_clock_and_long_ones_the_run_queue_too(tmp_path, monkeypatch):
    reads: list[int] = []
    real = os.pread

    def counted(fd: int, n: int, offset: int) -> bytes:
        reads.append(fd)
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", counted)
    short = _write(tmp_path, "def run(inputs):\n    return {}\n")
    slow = tmp_path / "slow.py"
    slow.write_text("import time\n\ndef run(inputs):\n    time.sleep(0.003)\n    return {}\n")
    spent: list[int] = []

    async def one_at_a_time(path: Path, count: int) -> None:
        for _ in range(count):
            await tools.call_python(path, "run", {}, {}, spent.append)

    before = len(reads)
    asyncio.run(one_at_a_time(short, 200))
    assert len(reads) - before <= 1  # the first call (nothing says it is short yet), no more
    assert spent[-200:] == [0] * 200  # short calls count 0
    asyncio.run(one_at_a_time(slow, 4))
    before = len(reads)
    asyncio.run(one_at_a_time(slow, 4))
    # after a long call the function's next one is measured with the queue: two reads each
    assert len(reads) - before == 8
    assert all(ms >= 0 for ms in spent[-4:])


UNHASHABLE = """
from dataclasses import dataclass


@dataclass
class Runner:  # a dataclass with __eq__ is not hashable
    def __call__(self, inputs):
        return {"state_delta": {"ok": True}}


run = Runner()
"""


def test_a_tool_that_is_an_unhashable_callable_still_answers(tmp_path):
    path = _write(tmp_path, UNHASHABLE)

    async def main() -> object:
        return await asyncio.wait_for(tools.call_python(path, "run", {}, {}), 10)

    assert asyncio.run(main()) == {"state_delta": {"ok": True}}


def test_a_result_arriving_after_its_run_ended_does_not_keep_the_run_alive(tmp_path):
    path = _write(
        tmp_path, "import time\n\ndef run(inputs):\n    time.sleep(0.3)\n    return [0] * 10**6\n"
    )
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def overrun() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tools.call_python(path, "run", {}, {}), 0.05)

    asyncio.run(overrun())  # ends while the tool still runs
    time.sleep(0.6)  # the tool finishes and hands its result to a closed loop
    gc.collect()
    assert loops[0]() is None


def test_every_attempt_has_one_started_line_before_its_end_even_when_the_tool_cannot_load(
    tmp_path,
):
    from evolve.runtime.run import RunOptions, start_run
    from evolve.store.log import read_events
    from evolve.store.workspace import Workspace
    from helpers import build, spec, tool

    broken = tool("broken", "tools/broken.py", on_error={"policy": "skip"})
    fine = tool("fine", "tools/fine.py", for_each={"source": "$.items"})
    state = {"items": {"type": "array", "default": [1, 2, 3]}}
    files = {
        "tools/broken.py": "raise ImportError('nope')\n\ndef run(i):\n    return {}\n",
        "tools/fine.py": "def run(i):\n    return {}\n",
    }
    root = build(tmp_path / "x", spec([broken, fine], state=state), files)
    result = start_run(root, Workspace(tmp_path / "ws"), RunOptions())
    events = list(read_events(result.log_path))
    for node, item in [("broken", None), ("fine", 0), ("fine", 1), ("fine", 2)]:
        mine = [
            e["type"]
            for e in events
            if e.get("node_id") == node and e.get("item") == item and e.get("attempt")
        ]
        assert mine[0] == "node.started" and mine.count("node.started") == len(
            [t for t in mine if t in ("node.finished", "node.failed")]
        ), (node, item, mine)
