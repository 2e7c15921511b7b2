"""Throughput of the runtime with the event log and state store on, as in a real run.

Prints three figures:
  chain     a 1,000-node chain of trivial Python tools   -> node executions per second
  fan-out   one for_each node over 5,000 trivial items    -> items per second
  sleeping  for_each over 200 items sleeping 50 ms, concurrency 20 -> wall time vs the ideal 0.5 s

Each line also gives the CPU seconds the process spent on the run itself (all threads, from the
`run.started` line to the `run.finished` line) and the rate per CPU second: steadier than wall
time on a machine that other work shares.

With `--baseline DIR` (a checkout of an earlier evolve, e.g. a worktree of 7a1eb51), the chain
and the fan-out are then run by both, in fresh processes taking turns (`--rounds` of each; three
runs per process after a first that warms up), and each side's median run is printed with the
ratio: on a shared machine taking turns spreads a busy spell over both.

Usage: python -m bench.engine [--repeat N] [--baseline DIR [--rounds N]]
       (best of N, default 3; each figure its own best)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from evolve.runtime.run import RunOptions, start_run
from evolve.store.workspace import Workspace

TRIVIAL = "def run(inputs):\n    return {'state_delta': {}}\n"
SLEEPY = "import asyncio\n\nasync def run(inputs):\n    await asyncio.sleep(0.05)\n    return {}\n"


def experience(root: Path, nodes: list[dict], edges: list[dict], state: dict, tool: str) -> Path:
    root.mkdir(parents=True)
    (root / "tools").mkdir()
    (root / "tools" / "t.py").write_text(tool)
    document = {
        "name": "bench",
        "version": "0.1.0",
        "runtime": {"concurrency": 20, "timeout_ms": 60000},
        "state": {"schema": state},
        "graph": {"nodes": nodes, "edges": edges},
    }
    (root / "experience.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return root


def fan_out(root: Path, items: int) -> Path:
    """One for_each node over `items` trivial items, the list a state default."""
    node = {"id": "f", "kind": "tool", "impl": "tools/t.py", "for_each": {"source": "$.items"}}
    state = {"items": {"type": "array", "default": list(range(items))}}
    return experience(root, [node], [], state, TRIVIAL)


def timed(path: Path, workspace: Path) -> tuple[float, float, float]:
    """(seconds the run itself took, seconds including loading and validating the spec, CPU
    seconds of the run itself)."""
    cpu: dict[str, float] = {}

    def clock(event: dict) -> None:
        if event["type"] in ("run.started", "run.finished"):
            cpu[event["type"]] = time.process_time()

    began = time.perf_counter()
    result = start_run(path, Workspace(workspace), RunOptions(listeners=[clock]))
    elapsed = time.perf_counter() - began
    if result.status != "success":
        sys.exit(f"benchmark run failed: {result.reason}")
    return result.duration_ms / 1000, elapsed, cpu["run.finished"] - cpu["run.started"]


def best(path: Path, workspace: Path, repeat: int) -> tuple[float, float, float]:
    """Each figure's best (lowest) over `repeat` runs."""
    runs = [timed(path, workspace) for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs), min(r[2] for r in runs)


# run by each side in a fresh process: only the API every evolve since 7a1eb51 has
TURN = """
import json, sys
from pathlib import Path
from evolve.runtime.run import RunOptions, start_run
from evolve.store.workspace import Workspace
workspace = Workspace(Path(sys.argv[1]))
seconds = {}
for name, path in json.loads(sys.argv[2]).items():
    runs = [start_run(Path(path), workspace, RunOptions()) for _ in range(4)]
    if any(r.status != "success" for r in runs):
        sys.exit(f"{name}: {[r.reason for r in runs if r.status != 'success'][0]}")
    seconds[name] = [r.duration_ms / 1000 for r in runs[1:]]
print(json.dumps(seconds))
"""


def against(
    baseline: Path, paths: dict[str, Path], units: dict[str, int], rounds: int
) -> list[str]:
    """The chain and the fan-out run by this checkout and by `baseline`, taking turns: the
    lines that say how they compare."""
    sides = {"now": Path(__file__).resolve().parents[1] / "src", "before": baseline / "src"}
    seconds: dict[str, dict[str, list[float]]] = {side: {n: [] for n in paths} for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for turn in range(rounds):
            for side, src in sides.items():
                done = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        TURN,
                        str(Path(tmp) / f"{side}-{turn}"),
                        json.dumps({n: str(p) for n, p in paths.items()}),
                    ],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(src)},
                )
                if done.returncode != 0:
                    sys.exit(f"{side} failed:\n{done.stderr[-2000:]}")
                for name, runs in json.loads(done.stdout.strip().splitlines()[-1]).items():
                    seconds[side][name] += runs
    lines = [f"\nagainst {baseline.name}: median run itself, {rounds} turns of 3 runs each side"]
    for name, unit in units.items():
        now, before = (statistics.median(seconds[side][name]) for side in sides)
        verdict = "not worse" if now <= before * 1.02 else "WORSE"
        lines.append(
            f"{name:8} {baseline.name} {unit / before:7,.0f}/s, now {unit / now:7,.0f}/s: "
            f"{before / now:.2f}x  {verdict}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier evolve")
    parser.add_argument("--rounds", type=int, default=6, help="turns with --baseline")
    args = parser.parse_args()
    repeat = args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        chain_nodes = [{"id": f"n{i}", "kind": "tool", "impl": "tools/t.py"} for i in range(1000)]
        chain_edges = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(999)]
        chain = experience(tmp_path / "chain", chain_nodes, chain_edges, {}, TRIVIAL)
        fan = fan_out(tmp_path / "fan", 5000)
        sleepy = experience(
            tmp_path / "sleepy",
            [
                {
                    "id": "s",
                    "kind": "tool",
                    "impl": "tools/t.py",
                    "for_each": {"source": "$.items", "concurrency": 20},
                }
            ],
            [],
            {"items": {"type": "array", "default": list(range(200))}},
            SLEEPY,
        )
        ws = tmp_path / "ws"
        chain_s, chain_wall, chain_cpu = best(chain, ws, repeat)
        fan_s, fan_wall, fan_cpu = best(fan, ws, repeat)
        sleepy_s, sleepy_wall, sleepy_cpu = best(sleepy, ws, repeat)
        compared: list[str] = []
        if args.baseline is not None:
            paths, units = {"chain": chain, "fan-out": fan}, {"chain": 1000, "fan-out": 5000}
            compared = against(args.baseline.resolve(), paths, units, args.rounds)
    print("figures are for the run itself (run.started to run.finished); 'wall' adds loading and")
    print("validating experience.yaml and opening the store; 'cpu' is the run's CPU seconds\n")
    print(
        f"chain    1,000 trivial nodes   {chain_s:6.3f} s  {1000 / chain_s:7.0f} node executions/s"
        f"  (target >= 2,500/s)   wall {chain_wall:.3f} s = {1000 / chain_wall:.0f}/s"
        f"   cpu {chain_cpu:.3f} s = {1000 / chain_cpu:.0f}/CPU-s"
    )
    print(
        f"fan-out  5,000 trivial items   {fan_s:6.3f} s  {5000 / fan_s:7.0f} items/s"
        f"            (target >= 6,000/s)   wall {fan_wall:.3f} s = {5000 / fan_wall:.0f}/s"
        f"   cpu {fan_cpu:.3f} s = {5000 / fan_cpu:.0f}/CPU-s"
    )
    print(
        f"sleeping 200 x 50 ms, conc 20  {sleepy_s:6.3f} s  {sleepy_s / 0.5:7.2f} x the ideal 0.5 s"
        f"  (target <= 1.15x)     wall {sleepy_wall:.3f} s = {sleepy_wall / 0.5:.2f}x"
        f"   cpu {sleepy_cpu:.3f} s"
    )
    for line in compared:
        print(line)


if __name__ == "__main__":
    main()
