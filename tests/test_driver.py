"""The run's driver thread: it makes quick sync tool calls itself, and a call that runs long moves
off it, so deadlines, the calls queued behind it and Ctrl-C all still hold."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evolve.store.log import read_events
from helpers import build, events, run, spec, tool

# one function for every node: its first call goes to a worker thread (nothing is known of it
# yet), and each later one to the driver while the calls before it were quick
TOOL = """
import asyncio
import os
import threading
import time


def run(inputs):
    with open(inputs["trace"], "a") as f:
        f.write(threading.current_thread().name + "\\n")
    if inputs.get("sleep"):
        time.sleep(inputs["sleep"])
        with open(inputs["trace"], "a") as f:
            f.write("slept\\n")
    if inputs.get("after"):  # wait for another call to open the gate (at most 10 s)
        for _ in range(2000):
            if os.path.exists(inputs["after"]):
                with open(inputs["trace"], "a") as f:
                    f.write("gate-seen\\n")
                break
            time.sleep(0.005)
    if inputs.get("open"):
        open(inputs["open"], "w").close()
    if inputs.get("own_loop"):  # a sync tool may run async code of its own
        return {"state_delta": {"seen": asyncio.run(asyncio.sleep(0, result="async"))}}
    return {}
"""


def chain(root: Path, trace: Path, last: dict, size: int = 6, **node: object) -> Path:
    """`size` nodes in a line, all calling TOOL; the last one with `last` as extra args."""
    nodes = [
        tool(f"n{i}", "tools/t.py", args={"trace": str(trace), **(last if i == size - 1 else {})})
        for i in range(size)
    ]
    nodes[-1].update(node)
    edges = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(size - 1)]
    state = {"seen": {"type": "string"}}
    return build(root, spec(nodes, edges, state=state), {"tools/t.py": TOOL})


def threads(trace: Path) -> list[str]:
    return trace.read_text().split()


def test_quick_calls_after_the_first_are_made_by_the_driver_thread(tmp_path):
    trace = tmp_path / "trace"
    result = run(chain(tmp_path / "x", trace, {}), tmp_path / "ws")
    assert result.status == "success"
    names = threads(trace)
    assert names[0] == "evolve-tool"  # nothing known of the function yet: a worker
    assert "evolve-run" in names[1:]  # quick: made between turns of the loop, no hand-over


def test_a_quick_tool_that_then_blocks_times_out_on_time_and_the_run_ends(tmp_path):
    trace = tmp_path / "trace"
    experience = chain(tmp_path / "x", trace, {"sleep": 6}, timeout_ms=300)
    result = run(experience, tmp_path / "ws")
    assert result.status == "failed"
    assert threads(trace)[-1] == "evolve-run"  # the blocking call, made by the driver
    ended = [e for e in events(result) if e["type"] == "node.failed"]
    assert ended and ended[-1]["node_id"] == "n5" and ended[-1]["error_type"] == "timeout"
    assert "slept" not in threads(trace)  # the run ended while the call still slept


def test_calls_queued_behind_a_blocked_call_are_still_made(tmp_path):
    """Item 0 waits for item 1 to open a gate; both were queued for the driver at once."""
    trace, gate = tmp_path / "trace", str(tmp_path / "gate")
    warm = tool("warm", "tools/t.py", args={"trace": str(trace)})
    gated = tool(
        "gated",
        "tools/t.py",
        args={"trace": str(trace), "after": "$.after", "open": "$.open"},
        for_each={"source": "$.items"},
    )
    state = {
        "items": {"type": "array", "default": [0, 1]},
        "after": {"type": "string", "default": gate},
        "open": {"type": "string", "default": gate},
    }
    # both items get both args; only the order they are made in matters: item 0 is made
    # first and waits for the gate, which item 1 opens (item 0 opens it too, once through)
    document = spec([warm, gated], [{"from": "warm", "to": "gated"}], state=state)
    experience = build(
        tmp_path / "x",
        document,
        {
            "tools/t.py": TOOL.replace(
                'if inputs.get("after"):', 'if inputs.get("after") and inputs["$index"] == 0:'
            )
        },
    )
    result = run(experience, tmp_path / "ws")
    assert result.status == "success"
    assert "gate-seen" in threads(trace)  # item 0 did not just give up waiting: item 1 ran
    assert "evolve-run" in threads(trace)[1:]


def test_a_sync_tool_made_by_the_driver_may_run_its_own_event_loop(tmp_path):
    trace = tmp_path / "trace"
    experience = chain(tmp_path / "x", trace, {"own_loop": True}, writes=["seen"])
    result = run(experience, tmp_path / "ws")
    assert result.status == "success", result.reason
    assert result.state["seen"] == "async"
    assert threads(trace)[-1] == "evolve-run"


@pytest.mark.slow
def test_ctrl_c_while_the_driver_is_blocked_in_a_call_interrupts_the_run_at_once(tmp_path):
    trace = tmp_path / "trace"
    experience = chain(tmp_path / "x", trace, {"sleep": 30})
    workspace = tmp_path / "ws"
    proc = subprocess.Popen(
        [sys.executable, "-m", "evolve", "run", str(experience), "--workspace", str(workspace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the last node's call is under way
        if trace.exists() and len(threads(trace)) == 6:
            break
        time.sleep(0.01)
    assert threads(trace)[-1] == "evolve-run"
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=20)  # well before the 30 s the call sleeps
    assert "slept" not in threads(trace)  # the run ended while the call still slept
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    log = next((workspace / "runs").glob("*.jsonl"))
    finished = [e for e in read_events(log) if e["type"] == "run.finished"]
    assert len(finished) == 1 and finished[0]["status"] == "interrupted"


def fan_out(root: Path, trace: Path, items: int, first: float, rest: float) -> Path:
    """A warm-up call, then `items` calls queued together: item 0 sleeps `first`, the others
    `rest` (seconds)."""
    body = TOOL.replace(
        '    if inputs.get("sleep"):',
        '    if inputs.get("$index") is not None:\n'
        f'        inputs["sleep"] = {first} if inputs["$index"] == 0 else {rest}\n'
        '    if inputs.get("sleep"):',
    )
    warm = tool("warm", "tools/t.py", args={"trace": str(trace)})
    fan = tool("fan", "tools/t.py", args={"trace": str(trace)}, for_each={"source": "$.items"})
    state = {"items": {"type": "array", "default": list(range(items))}}
    document = spec([warm, fan], [{"from": "warm", "to": "fan"}], state=state)
    document["runtime"] = {"concurrency": items}
    return build(root, document, {"tools/t.py": body})


def test_a_driver_taken_over_while_its_successor_makes_a_call_leaves_the_loop_driven(tmp_path):
    """Item 0 outlasts the takeover; it returns while the new driver makes item 1's call."""
    experience = fan_out(tmp_path / "x", tmp_path / "trace", 8, first=0.03, rest=0.015)
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.update(r=run(experience, tmp_path / "ws")))
    thread.daemon = True
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the run hung: nothing drove its loop"
    assert box["r"].status == "success"  # type: ignore[attr-defined]


def test_calls_queued_together_go_to_workers_once_one_of_them_took_long(tmp_path):
    trace = tmp_path / "trace"
    experience = fan_out(tmp_path / "x", trace, 8, first=0.002, rest=0.002)
    result = run(experience, tmp_path / "ws")
    assert result.status == "success"
    names = [n for n in threads(trace) if n.startswith("evolve-")]
    # the warm-up's worker, then the driver for item 0 (2 ms: not quick any more), then the
    # items queued with it go to workers rather than one after another on the driver
    assert names[1] == "evolve-run"
    assert names[2:] == ["evolve-tool"] * 7


LATE = """
import asyncio


def run(inputs):
    if not inputs.get("late"):
        return {}

    async def late():  # a quick sync function that now returns a coroutine
        await asyncio.sleep(0.5)
        open(inputs["late"], "w").close()  # a side effect after the attempt's deadline
        return {}

    return late()
"""


def test_a_coroutine_a_quick_function_returns_is_cancelled_at_the_deadline(tmp_path):
    marker = tmp_path / "late"
    nodes = [tool(f"n{i}", "tools/t.py") for i in range(5)]
    nodes[-1].update(args={"late": str(marker)}, timeout_ms=200)
    edges = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(4)]
    result = run(build(tmp_path / "x", spec(nodes, edges), {"tools/t.py": LATE}), tmp_path / "ws")
    assert result.status == "failed"
    time.sleep(1)  # long enough for the coroutine to have written, had it run on
    assert not marker.exists()
