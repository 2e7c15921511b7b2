"""The Ray executor (docs/ray.md): for_each items of Python tools, and the Python tools of every
case of `evolve eval`, run as Ray tasks; a run (or a suite) records the same final state, case
results and event types as with the local executor, plus each attempt's worker node.

Without Ray installed only the missing-extra message is checked (in CI, where the test extra
brings Ray, a missing Ray fails instead). With it, the tests run on a real local Ray started here
(num_cpus=2, once for the module: the tests on it keep their experiences, one YAML file each, in
one directory, which is the Ray job's working dir, so Ray starts once) and on a one-node cluster
started with `ray start --head` and joined by address. The Rays run with token authentication
from a token in the environment (nothing is written to ~/.ray) and without usage statistics.
Each fixture stops the Ray it started, even when a test fails, and checks with `ps` that no Ray
process it started is left. The head node is stopped by the pids of its own processes (found by
its --temp-dir), not with `ray stop`, which stops every Ray of the user on the machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.helpers import events, run, spec, tool
from typer.testing import CliRunner

from evolve.cli import app
from evolve.evals.suite import SuiteOptions, SuiteResult, run_suite
from evolve.runtime import ray_executor
from evolve.runtime.ray_executor import RayExecutor
from evolve.runtime.run import RunOptions
from evolve.store.log import read_events
from evolve.store.workspace import Workspace
from evolve.store.writer import StateStore
from fakes import EchoModel

# CI (which sets CI=true) installs the test extra, which brings Ray: there a missing Ray fails the
# tests instead of skipping them
HAS_RAY = importlib.util.find_spec("ray") is not None or bool(os.environ.get("CI"))
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (pip install evolve[ray])")
runner = CliRunner()

TOOL = """\
import os
import signal
import time


def run(inputs):
    x = inputs["$item"]
    if x in inputs.get("bad", []):
        raise ValueError(f"bad item {x}")
    if x in inputs.get("dies", []):
        os._exit(3)
    if x in inputs.get("slow", []):
        time.sleep(60)
    return {"state_delta": {"ys": [x * x]}, "metrics": {"x": x}}
"""


def fan_out(root: Path, *, name: str = "experience", executor: str | None = None, **args) -> Path:
    """`root/NAME.yaml`: one for_each node over xs squaring each item, its tool told (by `args`)
    which items raise, kill their worker or sleep past the timeout."""
    node = tool(
        "sq",
        "tools/sq.py",
        args=args,
        writes=["ys"],
        for_each={"source": "$.xs"},
        on_error={"policy": "skip"},
        timeout_ms=10_000,  # generous: a loaded machine starts Ray workers slowly
    )
    state = {
        "xs": {"type": "array", "default": [1, 2, 3, 4, 5, 6]},
        "ys": {"type": "array", "merge": "array_append", "default": []},
    }
    document = spec([node], state=state)
    if executor:
        document["runtime"] = {"executor": executor}
    (root / "tools").mkdir(parents=True, exist_ok=True)
    (root / "tools" / "sq.py").write_text(TOOL)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def attempts(result) -> list[dict]:
    return [e for e in events(result) if "attempt" in e and e["type"].startswith("node.")]


def test_a_missing_ray_is_one_clear_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.setattr("evolve.runtime.ray_executor._EXECUTORS", {})
    experience = fan_out(tmp_path / "x")
    workspace = tmp_path / "ws"
    out = runner.invoke(
        app, ["run", str(experience), "--executor", "ray", "--workspace", str(workspace)]
    )
    assert out.exit_code == 2, out.output
    assert "pip install 'evolve[ray]'" in out.output
    assert "Traceback" not in out.output
    assert not list(workspace.rglob("r-*.jsonl"))  # nothing was started, so nothing recorded


def test_runtime_executor_ray_in_the_yaml_needs_ray_too(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr("evolve.runtime.ray_executor._EXECUTORS", {})
    experience = fan_out(tmp_path / "x", executor="ray")
    out = runner.invoke(app, ["run", str(experience), "--workspace", str(tmp_path / "ws")])
    assert out.exit_code == 2 and "evolve[ray]" in out.output
    local = runner.invoke(
        app, ["run", str(experience), "--executor", "local", "--workspace", str(tmp_path / "ws")]
    )
    assert local.exit_code == 0, local.output  # --executor local wins: Ray is never imported
    assert "evolve[ray]" not in local.output


def test_eval_with_the_ray_executor_needs_ray_too(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr("evolve.runtime.ray_executor._EXECUTORS", {})
    experience = fan_out(tmp_path / "x")
    workspace = str(tmp_path / "ws")
    out = runner.invoke(
        app, ["eval", str(experience), "--executor", "ray=auto", "--workspace", workspace]
    )
    assert out.exit_code == 2 and "evolve[ray]" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("bad", ["remote", "local=x", "ray="])
def test_a_malformed_executor_is_a_usage_error(tmp_path, bad):
    experience = fan_out(tmp_path / "x")
    out = runner.invoke(
        app, ["run", str(experience), "--executor", bad, "--workspace", str(tmp_path)]
    )
    assert out.exit_code == 2 and "--executor" in out.output and "Traceback" not in out.output


def test_a_refused_connection_is_told_in_one_line_without_ray_s_traceback():
    # how Ray 2.60 refuses a client without the cluster's token: a ConnectionError caused by a
    # RuntimeError whose text is the traceback of the AuthenticationError
    inner = RuntimeError(
        "Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
        '  File "python/ray/includes/common.pxi", line 119, in ray._raylet.check_status\n'
        "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token "
        "is missing or incorrect. Note: RAY_AUTH_MODE is currently 'disabled' (not 'token'). "
        "Ensure that the token for the cluster is available in a local file.\n"
    )
    refused = ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6379")
    refused.__cause__ = inner
    assert ray_executor._reason(refused) == (
        "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token "
        "is missing or incorrect. Note: RAY_AUTH_MODE is currently 'disabled' (not 'token')"
    )
    assert ray_executor._reason(ConnectionError("no cluster at x:1\nmore")) == "no cluster at x:1"


# -- on a real Ray ---------------------------------------------------------------------------

ADD = """\
import time


def run(inputs):
    n = inputs["_state"]["n"]
    if n < 0:
        raise ValueError(f"no count for {n}")
    return {"state_delta": {"count": n + 1}}


def hang(inputs):
    time.sleep(60)
"""
CHECKS = """\
def close(state, case, run):
    off = state["count"] - case["expect"]["count"]
    return {"score": max(0.0, 1 - abs(off) / 10), "reason": f"off by {off}"}
"""
CASES = [
    {"id": "a", "args": {"n": 1}, "expect": {"count": 2}},
    {"id": "b", "args": {"n": 2}, "expect": {"count": 3}},
    {"id": "c", "args": {"n": 4}, "expect": {"count": 4}},  # off by one: fails `exact`
    {"id": "raises", "args": {"n": -1}, "expect": {"count": 5}},  # its tool raises
    {"id": "slow", "args": {"n": 100}, "expect": {"count": 0}},  # its `hang` times out
]
SUITE = """\
name: counter
version: 0.1.0
runtime: {{model: fake/echo}}
state:
  schema:
    n: {{type: integer, default: 0}}
    count: {{type: integer, default: 0}}
    note: {{type: string, default: ""}}
graph:
  nodes:
    - {{id: add, kind: tool, impl: tools/add.py, reads: [n], writes: [count], timeout_ms: 10000}}
    - {{id: hang, kind: tool, impl: 'tools/add.py:hang', timeout_ms: 2000}}
{agent}
evals:
  - {{name: exact, expr: '$.count == $case.expect.count', required: true}}
  - {{name: close, impl: 'evals/checks.py:close', weight: 2}}
cases: {{source: {cases}}}
"""
# the timeouts: `add` (every case) is given time for a Ray worker to start on a loaded machine;
# `hang` (after the rest, for the slow case only) times out however soon its worker starts
AGENT = """\
    - {id: say, kind: agent, prompt: prompts/say.md, reads: [count], writes: [note]}
  edges:
    - {from: add, to: say}
    - {from: say, to: hang, when: '$.n >= 100'}
"""
NO_AGENT = """\
  edges:
    - {from: add, to: hang, when: '$.n >= 100'}
"""


@pytest.fixture(scope="module")
def ray_env() -> Iterator[None]:
    """Token authentication with a token of the test's own (in the environment, so neither the
    test nor Ray writes ~/.ray), for the local Ray, the head node and every process joining
    them; no usage statistics. Restored at the end of the module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "token")
        patch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        yield


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The directory of the experiences run on the module's Rays: every tool they use is in it
    before the first run ships it (a test adds its own YAML file, which only the driver reads)."""
    root = tmp_path_factory.mktemp("ray-home")
    files = {
        "tools/sq.py": TOOL,
        "tools/add.py": ADD,
        "evals/checks.py": CHECKS,
        "prompts/say.md": "Say {{ count }}.",
        "data/cases.jsonl": "".join(json.dumps(c) + "\n" for c in CASES),
        "data/quick.jsonl": "".join(json.dumps(c) + "\n" for c in CASES[:4]),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "suite.yaml").write_text(SUITE.format(agent=AGENT, cases="data/cases.jsonl"))
    (root / "tools-suite.yaml").write_text(
        SUITE.format(agent=NO_AGENT, cases="data/quick.jsonl").replace(
            "runtime: {model: fake/echo}\n", ""
        )
    )
    return root


def _ray_cli() -> list[str]:
    return [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


def _ours() -> set[int]:
    """The live processes descending from this one: a local Ray's, while it runs (so another
    Ray on the machine, say another test session's, is never taken for ours)."""
    listing = subprocess.run(["ps", "-eo", "pid,ppid,stat"], capture_output=True, text=True)
    rows = [line.split() for line in listing.stdout.splitlines()[1:]]
    live = [(int(pid), int(ppid)) for pid, ppid, stat in rows if not stat.startswith("Z")]
    found, grew = {os.getpid()}, True
    while grew:
        children = {pid for pid, ppid in live if ppid in found} - found
        found |= children
        grew = bool(children)
    return found - {os.getpid()}


@pytest.fixture(scope="module")
def local_ray(ray_env) -> Iterator[set[int]]:
    """The local Ray a run starts for itself (`--executor ray`), held at num_cpus=2 and shut
    down at the end of the module, leaving no process behind. Yields the set of its processes
    noted before something else stops it (joining another cluster ends it)."""
    if not HAS_RAY:
        pytest.skip("Ray is not installed")
    executor = RayExecutor(None, num_cpus=2)
    saved = dict(ray_executor._EXECUTORS)
    ray_executor._EXECUTORS.clear()
    ray_executor._EXECUTORS[None] = executor
    noted: set[int] = set()
    try:
        yield noted
    finally:
        noted |= _ours()
        executor.shutdown()
        ray_executor._EXECUTORS.clear()
        ray_executor._EXECUTORS.update(saved)
        _settled(noted)


def _settled(pids: set[int]) -> None:
    """Ray's processes exit a moment after it stops: wait for them, then none may be left."""
    for _ in range(60):
        if not _alive(pids):
            break
        time.sleep(0.5)
    left = _alive(pids)
    assert not left, f"Ray processes left running: {sorted(left)}"


def _compare_with_local(home: Path, tmp_path: Path, executor: str) -> None:
    path = fan_out(home, name=f"bad-{tmp_path.name}", bad=[4])
    local = run(path, tmp_path / "wa")
    remote = run(path, tmp_path / "wb", executor=executor)
    failures = [(e.get("item"), e["error_type"], e["error"]) for e in events(remote, "node.failed")]
    assert local.status == remote.status == "partial", failures
    assert remote.state == local.state, failures
    assert remote.state["ys"] == [1, 4, 9, 25, 36]
    assert [e["type"] for e in events(remote)] != []
    assert sorted({e["type"] for e in events(remote)}) == sorted({e["type"] for e in events(local)})
    workers = {e.get("worker") for e in attempts(remote) if e["type"] != "node.started"}
    assert None not in workers and len(workers) == 1  # one Ray node, named on every attempt end
    assert all("worker" not in e for e in events(local))
    failed = [e for e in events(remote, "node.failed") if "attempt" in e]
    assert [(f["item"], f["error"]) for f in failed] == [
        (f["item"], f["error"]) for f in events(local, "node.failed") if "attempt" in f
    ]
    assert "ValueError: bad item 4" in failed[0]["error"]


@needs_ray
@pytest.mark.slow
def test_a_run_on_local_ray_matches_the_local_executor(home, tmp_path, local_ray):
    _compare_with_local(home, tmp_path, "ray")


@needs_ray
@pytest.mark.slow
def test_a_timeout_cancels_the_task_and_a_dying_worker_fails_its_attempt_only(
    home, tmp_path, local_ray
):
    result = run(fan_out(home, name="slow", slow=[2], dies=[5]), tmp_path / "ws", executor="ray")
    assert result.status == "partial"
    failures = [(e.get("item"), e["error_type"], e["error"]) for e in events(result, "node.failed")]
    assert result.state["ys"] == [1, 9, 16, 36], failures
    timeouts = events(result, "node.timeout")
    assert [(t["item"], t["timeout_ms"]) for t in timeouts] == [(1, 10_000)]
    died = [e for e in events(result, "node.failed") if e.get("error_type") == "worker_died"]
    assert [e["item"] for e in died] == [4]
    store = StateStore.open(tmp_path / "ws" / "state.sqlite")
    try:
        rows = list(store.db["node_runs"].rows_where("run_id = ?", [result.run_id]))
    finally:
        store.close()
    by_item = {(r["item"], r["attempt"]): r["status"] for r in rows}
    assert by_item[(1, 1)] == "timeout" and by_item[(4, 1)] == "failed"
    assert by_item[(0, 1)] == by_item[(5, 1)] == "succeeded"


def _case_logs(workspace: Path, suite: SuiteResult) -> dict[str, list[dict]]:
    where = Workspace(workspace)
    return {c.case_id: list(read_events(where.log_path(c.run_id))) for c in suite.cases}


def _without_run(case: dict) -> dict:
    """A case result without what differs between any two runs (ids, times, where it ran)."""
    return {k: v for k, v in case.items() if k not in ("run_id", "duration_ms", "workers")}


@needs_ray
@pytest.mark.slow
def test_a_suite_on_local_ray_matches_the_local_executor_case_for_case(home, tmp_path, local_ray):
    path = home / "suite.yaml"
    here, there = EchoModel(), EchoModel()
    local = run_suite(path, Workspace(tmp_path / "wa"), SuiteOptions(), here)
    options = SuiteOptions(run=RunOptions(executor="ray"))
    remote = run_suite(path, Workspace(tmp_path / "wb"), options, there)

    # the same scores and case results, a raising and a timed-out tool failing their case only
    assert local.status == remote.status == "partial"
    assert (remote.score, remote.pass_rate) == (local.score, local.pass_rate)
    assert [_without_run(c.to_json()) for c in remote.cases] == [
        _without_run(c.to_json()) for c in local.cases
    ]
    by_case = {c.case_id: c for c in remote.cases}
    assert [c.case_id for c in remote.cases if c.passed] == ["a", "b"]
    assert by_case["c"].status == "success" and not by_case["c"].passed
    assert by_case["raises"].status == "failed"
    assert "ValueError: no count for -1" in (by_case["raises"].error or "")
    assert by_case["slow"].status == "failed"
    assert "timed out after 2000 ms" in (by_case["slow"].error or "")

    # the model calls were this process's (the driver's): one per case whose `add` succeeded
    assert sorted(c.messages[-1]["content"] for c in there.calls) == [
        "Say 101.",
        "Say 2.",
        "Say 3.",
        "Say 5.",
    ]
    assert len(here.calls) == 4

    # the same event types, in the suite's log and in the case runs' logs
    def types(log: Path) -> set[str]:
        return {e["type"] for e in read_events(log)}

    assert types(remote.log_path) == types(local.log_path)
    local_cases, remote_cases = (
        _case_logs(tmp_path / "wa", local),
        _case_logs(tmp_path / "wb", remote),
    )
    for case_id, log in remote_cases.items():
        assert {e["type"] for e in log} == {e["type"] for e in local_cases[case_id]}, case_id

    # plus where each attempt ran: every tool attempt that ended was a Ray task, named on its
    # event, and each case's `eval.case` names the nodes it ran on (absent in a local suite)
    (node,) = {w for c in remote.cases for w in c.workers or []}
    for case_id, log in remote_cases.items():
        ended = [
            e
            for e in log
            if e.get("node_id") == "add"
            and e["type"] in ("node.finished", "node.failed")
            and "attempt" in e
        ]
        assert [e["worker"] for e in ended] == [node], case_id
        assert by_case[case_id].workers == [node]
        hung = [e for e in log if e.get("node_id") == "hang" and e["type"] == "node.failed"]
        # cancelled at its timeout: no reply came, so where it ran is not known
        expected = [("timeout", None)] if case_id == "slow" else []
        assert [(e["error_type"], e.get("worker")) for e in hung] == expected, case_id
        said = [e for e in log if e.get("node_id") == "say" and "attempt" in e]
        assert all("worker" not in e for e in said)  # agent nodes run on the driver
    suite_log = list(read_events(remote.log_path))
    named = {e["case_id"]: e.get("workers") for e in suite_log if e["type"] == "eval.case"}
    assert named == {case_id: [node] for case_id in ("a", "b", "c", "raises", "slow")}
    assert all("workers" not in e for e in read_events(local.log_path))
    for log in local_cases.values():
        assert all("worker" not in e for e in log)


def _started_under(temp_dir: str) -> list[int]:
    """The live processes of the Ray whose --temp-dir is `temp_dir`, and their children."""
    listing = subprocess.run(
        ["ps", "-ww", "-eo", "pid,ppid,stat,args"], capture_output=True, text=True
    )
    rows = [line.split(None, 3) for line in listing.stdout.splitlines()[1:]]
    rows = [
        (int(pid), int(ppid), args)
        for pid, ppid, stat, *rest in rows
        if not stat.startswith("Z")  # a zombie is gone, only not yet reaped
        for args in [rest[0] if rest else ""]
    ]
    ours = {pid for pid, _, args in rows if temp_dir in args and "ps -ww" not in args}
    grew = True
    while grew:
        children = {pid for pid, ppid, _ in rows if ppid in ours} - ours
        ours |= children
        grew = bool(children)
    return sorted(ours)


def _alive(pids: set[int]) -> set[int]:
    listing = subprocess.run(["ps", "-eo", "pid,stat"], capture_output=True, text=True).stdout
    rows = [line.split() for line in listing.splitlines()[1:]]
    return {int(pid) for pid, stat in rows if int(pid) in pids and not stat.startswith("Z")}


def _stop(temp_dir: str) -> set[int]:
    """Stop the head node started under `temp_dir`: its own processes, by pid, each remembered
    from the first look (a child whose parent died is no longer found under it). `ray stop`
    would stop every Ray of this user on the machine, other people's included. Returns them."""
    ours: set[int] = set()
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 40)):  # some agents ignore TERM
        ours |= set(_started_under(temp_dir))
        for pid in _alive(ours):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        for _ in range(grace):
            if not _alive(ours):
                return ours
            time.sleep(0.5)
    return ours


@pytest.fixture(scope="module")
def head_node(local_ray) -> Iterator[str]:
    """A one-node cluster from `ray start --head`, stopped at the end with nothing left, also
    when `ray start` or a test fails."""
    local_ray |= _ours()  # the local Ray ends when a run joins this cluster: note its processes
    temp_dir = tempfile.mkdtemp(prefix="evhead")
    port = "6391"
    address = f"127.0.0.1:{port}"
    start = [*_ray_cli(), "start", "--head", "--num-cpus=2", f"--port={port}"]
    start += ["--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    try:
        subprocess.run(start, check=True, capture_output=True, timeout=180)
        ray_executor._EXECUTORS[address] = RayExecutor(address)
        yield address
    finally:
        ray_executor._EXECUTORS.pop(address, RayExecutor(None)).shutdown()
        head = _stop(temp_dir)
        assert _started_under(temp_dir) == []
        _settled(head)


@needs_ray
@pytest.mark.slow
def test_a_run_joined_to_a_head_node_by_address_matches_the_local_executor(
    home, tmp_path, head_node
):
    _compare_with_local(home, tmp_path, f"ray={head_node}")
    out = runner.invoke(
        app,
        ["run", str(fan_out(home)), "--executor", f"ray={head_node}", "--json"],
        env={"EVOLVE_WORKSPACE": str(tmp_path / "wc")},
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["status"] == "success"


@needs_ray
@pytest.mark.slow
def test_evolve_eval_joined_to_a_head_node_runs_its_cases_there(home, tmp_path, head_node):
    def evaluate(*extra: str) -> dict:
        args = ["eval", str(home / "tools-suite.yaml"), "--json", *extra]
        out = runner.invoke(app, [*args, "--workspace", str(tmp_path / "ws")])
        assert out.exit_code == 0, out.output  # partial: no gate was asked for
        return json.loads(out.stdout)

    local = evaluate()
    remote = evaluate("--executor", f"ray={head_node}")
    assert remote["status"] == local["status"] == "partial"
    assert (remote["score"], remote["pass_rate"]) == (local["score"], local["pass_rate"])
    assert [_without_run(c) for c in remote["cases"]] == [_without_run(c) for c in local["cases"]]
    assert all("workers" not in c for c in local["cases"])
    (node,) = {w for c in remote["cases"] for w in c["workers"]}
    assert [c["workers"] for c in remote["cases"]] == [[node]] * 4


@needs_ray
@pytest.mark.slow
def test_ctrl_c_cancels_the_outstanding_tasks_and_the_run_ends_interrupted(
    home, tmp_path, head_node
):
    experience = fan_out(home, name="all-slow", slow=[1, 2, 3, 4, 5, 6])
    workspace = tmp_path / "ws"
    command = [sys.executable, "-m", "evolve", "run", str(experience)]
    command += ["--executor", f"ray={head_node}", "--workspace", str(workspace)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # until every item's attempt has started (or the command ended)
            logs = list(workspace.glob("runs/r-*.jsonl"))
            text = logs[0].read_text("utf-8") if logs else ""
            if text.count('"node.started"') == 6 or proc.poll() is not None:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    finished = [json.loads(line) for line in text.splitlines() if '"run.finished"' in line]
    assert finished == []  # read before the interrupt: no item had ended
    log = [json.loads(line) for line in logs[0].read_text("utf-8").splitlines()]
    assert log[-1]["type"] == "run.finished" and log[-1]["status"] == "interrupted"
    assert not [e for e in log if e["type"] == "node.finished" and "attempt" in e]
