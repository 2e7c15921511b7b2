"""on_error and timeout_ms: retry counts, backoff delays, then-policies, timeouts of every kind."""

from __future__ import annotations

import os
import random
import shutil
import time

import pytest

from evolve.runtime.policies import retry_delay_ms
from evolve.spec.model import OnError
from helpers import build, events, run, spec, tool

FLAKY = """
from pathlib import Path

def run(inputs):
    counter = Path(inputs["counter"])
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n <= inputs["fail_times"]:
        raise ConnectionError(f"flaky {n}")
    return {"state_delta": {"n": n}}
"""


def flaky_experience(tmp_path, fail_times, on_error):
    node = tool(
        "f",
        "tools/flaky.py",
        writes=["n"],
        on_error=on_error,
        args={"counter": str(tmp_path / "count"), "fail_times": fail_times},
    )
    return build(
        tmp_path / "x", spec([node], state={"n": {"type": "integer"}}), {"tools/flaky.py": FLAKY}
    )


def test_retry_until_success_counts_attempts_and_backs_off(tmp_path):
    exp = flaky_experience(
        tmp_path, 2, {"policy": "retry", "attempts": 4, "backoff": "linear", "base_ms": 50}
    )
    result = run(exp, tmp_path / "ws")
    assert result.status == "success" and result.state["n"] == 3
    started = [e["attempt"] for e in events(result, "node.started")]
    assert started == [1, 2, 3]
    retries = events(result, "node.retry")
    assert [r["attempt"] for r in retries] == [1, 2]
    assert 40 <= retries[0]["delay_ms"] <= 60 and 80 <= retries[1]["delay_ms"] <= 120
    assert "flaky 1" in retries[0]["error"]


def test_retries_exhausted_then_skip(tmp_path):
    exp = flaky_experience(
        tmp_path, 9, {"policy": "retry", "attempts": 3, "base_ms": 1, "then": "skip"}
    )
    result = run(exp, tmp_path / "ws")
    assert result.status == "partial"
    assert len(events(result, "node.failed")) == 3
    assert len(events(result, "node.retry")) == 2
    assert "failed (on_error skip)" in events(result, "node.skipped")[0]["reason"]


def test_retries_exhausted_then_fail_run_by_default(tmp_path):
    exp = flaky_experience(tmp_path, 9, {"policy": "retry", "attempts": 2, "base_ms": 1})
    result = run(exp, tmp_path / "ws")
    assert result.status == "failed"
    assert "failed after 2 attempts" in result.reason


@pytest.mark.parametrize(
    "backoff, expected", [("linear", [100, 200, 300]), ("exponential", [100, 200, 400])]
)
def test_backoff_shapes_with_jitter(backoff, expected):
    policy = OnError(policy="retry", attempts=4, backoff=backoff, base_ms=100)
    rng = random.Random(7)
    for attempt, base in enumerate(expected, start=1):
        delays = {retry_delay_ms(policy, attempt, rng) for _ in range(50)}
        assert min(delays) >= base * 0.8 and max(delays) <= base * 1.2
        assert len(delays) > 1  # jittered, not constant


ASYNC_SLOW = "import asyncio\n\nasync def run(inputs):\n    await asyncio.sleep(5)\n"
SYNC_SLOW = "import time\n\ndef run(inputs):\n    time.sleep(1.5)\n"
SCRIPT_SLOW = '#!/bin/sh\necho $$ > "$(dirname "$0")/pid"\nexec sleep 30\n'
NODE_SLOW = (
    "export default async function (inputs) {\n"
    "  await new Promise((r) => setTimeout(r, 30000));\n  return {};\n}\n"
)


@pytest.mark.parametrize(
    "impl, source",
    [
        ("tools/slow.py", ASYNC_SLOW),
        ("tools/slow_sync.py", SYNC_SLOW),
        ("tools/slow.sh", SCRIPT_SLOW),
        pytest.param(
            "tools/slow.mjs",
            NODE_SLOW,
            marks=pytest.mark.skipif(
                shutil.which("node") is None, reason="Node.js is not installed"
            ),
        ),
    ],
)
def test_timeouts_fail_the_attempt_at_the_deadline(tmp_path, impl, source):
    node = tool("slow", impl, timeout_ms=300, on_error={"policy": "skip"})
    exp = build(tmp_path / "x", spec([node]), {impl: source})
    result = run(exp, tmp_path / "ws")
    assert result.status == "partial"  # the tool would succeed if its deadline had not fired
    timeout = events(result, "node.timeout")
    assert len(timeout) == 1 and timeout[0]["timeout_ms"] == 300
    failed = events(result, "node.failed")
    assert failed[0]["error_type"] == "timeout"
    if impl.endswith(".sh"):
        pid = int((exp / "tools" / "pid").read_text())
        with pytest.raises(ProcessLookupError):
            for _ in range(50):  # the process group was killed; give the kernel a moment
                os.kill(pid, 0)
                time.sleep(0.02)


def test_subprocess_tools_speak_json_and_fail_clearly(tmp_path):
    ok = '#!/bin/sh\nread line\necho \'{"state_delta": {"t": "hi"}}\'\n'
    bad_json = "#!/bin/sh\necho 'not json'\n"
    bad_exit = "#!/bin/sh\necho 'oops' >&2\nexit 3\n"
    nodes = [
        tool("ok", "tools/ok.sh", writes=["t"]),
        tool("bj", "tools/bj.sh", on_error={"policy": "skip"}),
        tool("be", "tools/be.sh", on_error={"policy": "skip"}),
    ]
    exp = build(
        tmp_path / "x",
        spec(nodes, state={"t": {"type": "string"}}),
        {"tools/ok.sh": ok, "tools/bj.sh": bad_json, "tools/be.sh": bad_exit},
    )
    result = run(exp, tmp_path / "ws")
    assert result.state["t"] == "hi"
    errors = {e["node_id"]: (e["error_type"], e["error"]) for e in events(result, "node.failed")}
    assert errors["bj"] == ("bad_output", "bj.sh printed output that is not JSON: 'not json'")
    assert errors["be"] == ("tool_error", "be.sh exited with status 3: oops")


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_node_tools_get_the_inputs_object(tmp_path):
    source = (
        "export default async function (inputs) {\n"
        "  return { state_delta: { t: `${inputs.greeting} ${inputs.$item}` } };\n}\n"
    )
    node = tool(
        "js", "tools/t.mjs", args={"greeting": "hi"}, writes=["t"], for_each={"source": "$.names"}
    )
    state = {"t": {"type": "string"}, "names": {"type": "array", "default": ["ann"]}}
    result = run(
        build(tmp_path / "x", spec([node], state=state), {"tools/t.mjs": source}), tmp_path / "ws"
    )
    assert result.status == "success", result.reason
    assert result.state["t"] == "hi ann"
