"""`evolve inspect --json` and `evolve runs` on a run of about 100,000 events.

Builds the run for real (a fan-out over 50,000 items, two events each, with the event log and
the state store on), then times each command over a few subprocess runs and reports its peak
memory (max RSS). Targets here: at most 2 s and 300 MB each; neither may import litellm.

Usage: python bench/inspect.py [--items N] [--repeat N]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the stdlib module `inspect`, which asyncio imports: keep its folder off
# the import path so that `import inspect` finds the stdlib one.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import os
import statistics
import subprocess
import tempfile
import time

import yaml

from evolve.runtime.run import RunOptions, start_run
from evolve.store.workspace import Workspace

TOOL = "def run(inputs):\n    return {'state_delta': {'out': [inputs['$index']]}}\n"
MEASURE = """
import resource, subprocess, sys, time
began = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
elapsed = time.perf_counter() - began
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(elapsed, peak_kb, done.returncode, done.stderr.decode()[-300:].replace(chr(10), ' '))
"""


PROBE = """
import contextlib, io, runpy, sys
sys.argv = ["evolve", "inspect", "last", "--json"]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        runpy.run_module("evolve", run_name="__main__")
    except SystemExit:
        pass
print("litellm" in sys.modules)
"""


def build(root: Path, items: int) -> Path:
    (root / "tools").mkdir(parents=True)
    (root / "tools" / "t.py").write_text(TOOL)
    document = {
        "name": "big",
        "version": "0.1.0",
        "runtime": {"concurrency": 8},
        "state": {
            "schema": {
                "items": {"type": "array", "default": list(range(items))},
                "out": {"type": "array", "merge": "array_append", "default": []},
            }
        },
        "graph": {
            "nodes": [
                {
                    "id": "fan",
                    "kind": "tool",
                    "impl": "tools/t.py",
                    "writes": ["out"],
                    "for_each": {"source": "$.items"},
                }
            ]
        },
    }
    (root / "experience.yaml").write_text(yaml.safe_dump(document))
    return root


def measure(command: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    times, peaks = [], []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", MEASURE, *command],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split(maxsplit=3)
        if out[2] != "0":
            sys.exit(f"{' '.join(command)} failed: {out[3] if len(out) > 3 else ''}")
        times.append(float(out[0]))
        peaks.append(int(out[1]) / 1024)
    return statistics.median(times), max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workspace = root / "ws"
        began = time.perf_counter()
        result = start_run(build(root / "big", args.items), Workspace(workspace), RunOptions())
        built = time.perf_counter() - began
        with result.log_path.open() as log:
            events = sum(1 for _ in log)
        print(
            f"built run {result.run_id}: {events:,} events, "
            f"{result.log_path.stat().st_size / 1e6:.1f} MB log, in {built:.1f} s"
        )
        evolve = Path(sys.executable).with_name("evolve")
        base = [str(evolve)] if evolve.exists() else [sys.executable, "-m", "evolve"]
        env = {**os.environ, "EVOLVE_WORKSPACE": str(workspace)}
        for name, command in [
            ("evolve inspect last --json", ["inspect", "last", "--json"]),
            ("evolve inspect last", ["inspect", "last"]),
            ("evolve runs", ["runs"]),
        ]:
            seconds, peak_mb = measure(base + command, env, args.repeat)
            print(
                f"{name:28} median {seconds:5.2f} s   peak {peak_mb:6.1f} MB"
                f"   (target <= 2 s, <= 300 MB)"
            )
        probe = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True
        )
        print(f"litellm imported by inspect: {probe.stdout.strip()}")


if __name__ == "__main__":
    main()
