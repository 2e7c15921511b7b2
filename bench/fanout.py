"""Fan-out at scale, and tools in a chain: throughput and memory of the run itself.

Each case runs in a fresh process, with the event log and the state store on, as in a real run;
its memory is the peak RSS during `start_run` over the RSS before it (on Linux the peak is reset
first, so the loading done before it does not hide the run's; elsewhere the process's peak).
Items come from a data file through a dataset node, as they would in use:
  fan-out     one for_each node over 50,000 trivial items: items per CPU second of the run
              itself (process CPU time, every thread, from run.started to run.finished; target
              >= 10,000/s; items per wall second is printed too, but on a busy machine it
              measures the other processes as well) and the run's memory per item (target
              < 1.5 KB)
  reads       N items each reading (`reads:`) an N-element list field, N = 2,000 and 8,000:
              the run's memory for each; linear memory means the second is about 4x the first
              (each item holding a copy makes it about 16x)
  sync/async  a 1,000-node chain of sync Python tools next to the same chain of async ones,
              run itself, wall, median of N interleaved (target: sync / async <= 1.3)

Usage: python -m bench.fanout [--items N] [--repeat N]   (from the project root)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

TRIVIAL = "def run(inputs):\n    return {'state_delta': {}}\n"
ASYNC = "async def run(inputs):\n    return {'state_delta': {}}\n"
READER = "def run(inputs):\n    return {'state_delta': {}}\n"

CHILD = """
import json, resource, sys, time
from pathlib import Path
from evolve.runtime.run import RunOptions, start_run
from evolve.spec import load_experience
from evolve.store.workspace import Workspace
path, workspace = Path(sys.argv[1]), Path(sys.argv[2])
load_experience(path)  # imports done and the spec checked once: not the run's memory
cpu = {}
def rss_kb(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
try:  # the peak so far is the loader's: start the peak afresh (Linux), from the RSS now
    Path("/proc/self/clear_refs").write_text("5")
    before = rss_kb("VmRSS")
except OSError:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def clock(event):
    if event["type"] in ("run.started", "run.finished"):
        cpu[event["type"]] = time.process_time()  # every thread of the process
result = start_run(path, Workspace(workspace), RunOptions(listeners=[clock]))
peak = rss_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"status": result.status, "reason": result.reason,
                  "seconds": result.duration_ms / 1000, "grew_kb": peak - before,
                  "cpu": cpu["run.finished"] - cpu["run.started"]}))
"""


def experience(root: Path, document: dict, tool: str) -> Path:
    (root / "tools").mkdir(parents=True)
    (root / "tools" / "t.py").write_text(tool)
    (root / "experience.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return root


def fan_out(root: Path, items: int, reads: bool) -> Path:
    """A dataset node loading `items` integers from a file, then a for_each node over them."""
    node = {"id": "f", "kind": "tool", "impl": "tools/t.py", "for_each": {"source": "$.items"}}
    if reads:
        node["reads"] = ["items"]
    document = {
        "name": "fan",
        "version": "0.1.0",
        "runtime": {"concurrency": 8, "timeout_ms": 60000},
        "state": {"schema": {"items": {"type": "array"}}},
        "graph": {
            "nodes": [
                {
                    "id": "load",
                    "kind": "dataset",
                    "writes": ["items"],
                    "source": {"type": "file", "uri": "data/items.json"},
                },
                node,
            ],
            "edges": [{"from": "load", "to": "f"}],
        },
    }
    path = experience(root, document, READER if reads else TRIVIAL)
    (path / "data").mkdir()
    (path / "data" / "items.json").write_text(json.dumps(list(range(items))))
    return path


def chain(root: Path, nodes: int, tool: str) -> Path:
    document = {
        "name": "chain",
        "version": "0.1.0",
        "runtime": {"concurrency": 8, "timeout_ms": 60000},
        "graph": {
            "nodes": [{"id": f"n{i}", "kind": "tool", "impl": "tools/t.py"} for i in range(nodes)],
            "edges": [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(nodes - 1)],
        },
    }
    return experience(root, document, tool)


def measured(path: Path, workspace: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(workspace)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"benchmark run failed:\n{done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["status"] != "success":
        sys.exit(f"benchmark run {figures['status']}: {figures['reason']}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ws = root / "ws"
        big = fan_out(root / "fan", args.items, reads=False)
        runs = [measured(big, ws) for _ in range(args.repeat)]
        rate = args.items / statistics.median(r["cpu"] for r in runs)
        wall = args.items / statistics.median(r["seconds"] for r in runs)
        per_item = statistics.median(r["grew_kb"] for r in runs) * 1024 / args.items
        print(
            f"fan-out {args.items:,} trivial items   {rate:8,.0f} items per CPU second"
            f" (target >= 10,000)  {'MET' if rate >= 10_000 else 'NOT MET'}"
            f"   ({wall:,.0f} per wall second)"
        )
        print(
            f"        run memory (peak RSS) {per_item:8,.0f} bytes per item (target < 1,536)"
            f"  {'MET' if per_item < 1536 else 'NOT MET'}"
        )
        grew = {}
        for n in (2000, 8000):
            grew[n] = measured(fan_out(root / f"reads{n}", n, reads=True), ws)["grew_kb"] / 1024
            print(f"reads   {n:,} items reading a {n:,}-element list: run memory {grew[n]:.1f} MB")
        growth = grew[8000] / max(grew[2000], 0.1)
        print(
            f"        4x the items and the list: memory {growth:.1f}x (linear: about 4x; "
            f"a copy per item: about 16x)  {'MET' if growth <= 6 else 'NOT MET'}"
        )
        sync = chain(root / "sync", 1000, TRIVIAL)
        asynchronous = chain(root / "async", 1000, ASYNC)
        times: dict[str, list[float]] = {"sync": [], "async": []}
        for _ in range(args.repeat):
            times["sync"].append(measured(sync, ws)["seconds"])
            times["async"].append(measured(asynchronous, ws)["seconds"])
        ratio = statistics.median(times["sync"]) / statistics.median(times["async"])
        print(
            f"chain   1,000 sync tools {statistics.median(times['sync']):.3f} s, async "
            f"{statistics.median(times['async']):.3f} s: sync / async {ratio:.2f}"
            f" (target <= 1.3)  {'MET' if ratio <= 1.3 else 'NOT MET'}"
        )


if __name__ == "__main__":
    main()
