"""`evolve propose --no-llm` on a run of about 100,000 events, and `--verify` on five candidates.

Builds the run for real (bench/bigrun.py: 50,000 items, every 97th failing with a transient error
under on_error skip), then times the command over a few subprocess runs with its peak memory
(max RSS). Target here: at most 3 s and 300 MB.

Then `propose --no-llm --verify` on an experience with five nodes whose timeouts are too short
(five candidates, each re-run): its wall time with the candidates re-run 5 at a time and one at a
time, and the sum of the re-runs' own durations. Verification runs concurrently when the wall
time is well under that sum.

Usage: python -m bench.propose [--items N] [--repeat N] [--verify-only]   (from the project root)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.bigrun import big_run, evolve_command, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--verify-only", action="store_true", help="only the --verify part")
    args = parser.parse_args()
    if not args.verify_only:
        big(args)
    verify_bench()


FIVE_SLOW = """\
name: five-slow
version: 0.1.0
state: {schema: {}}
graph:
  nodes:
""" + "".join(
    f"    - {{id: n{i}, kind: tool, impl: tools/slow.py, timeout_ms: 300, "
    f"on_error: {{policy: skip}}}}\n"
    for i in range(5)
)
SLOW_TOOL = "import asyncio\n\nasync def run(inputs):\n    await asyncio.sleep(0.4)\n"


def verify_bench() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "five-slow"
        (root / "tools").mkdir(parents=True)
        (root / "experience.yaml").write_text(FIVE_SLOW)
        (root / "tools" / "slow.py").write_text(SLOW_TOOL)
        env = {**os.environ, "EVOLVE_WORKSPACE": str(Path(tmp) / "ws")}
        subprocess.run([*evolve_command(), "run", str(root)], env=env, capture_output=True)
        walls = {}
        for concurrency in (5, 1):
            command = [
                *evolve_command(),
                "propose",
                "last",
                "--no-llm",
                "--verify",
                "--concurrency",
                str(concurrency),
                "--json",
            ]
            began = time.monotonic()
            made = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            report = json.loads(made.stdout)
            verified = report["verified"]
            better = sum(p["verification"]["verdict"] == "better" for p in report["proposals"])
            phase = verified["wall_seconds"]
            walls[concurrency] = phase
            print(
                f"propose --verify --concurrency {concurrency}: command "
                f"{time.monotonic() - began:5.2f} s, verification {phase:5.2f} s for "
                f"{verified['reruns']} re-runs taking {verified['rerun_seconds']:5.2f} s in sum "
                f"(verification / sum {phase / verified['rerun_seconds']:.2f}); "
                f"{len(report['proposals'])} proposals, {better} verified better"
            )
        print(f"verification, concurrency 5 vs 1: wall ratio {walls[5] / walls[1]:.2f}")


def big(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        result = big_run(Path(tmp), workspace, args.items)
        with result.log_path.open() as log:
            events = sum(1 for _ in log)
        print(f"built run {result.run_id}: {events:,} events ({result.status})")
        env = {**os.environ, "EVOLVE_WORKSPACE": str(workspace)}
        command = [*evolve_command(), "propose", result.run_id, "--no-llm"]
        seconds, peak_mb = measure(command, env, args.repeat)
        print(
            f"evolve propose --no-llm     median {seconds:5.2f} s   peak {peak_mb:6.1f} MB"
            "   (target <= 3 s, <= 300 MB)"
        )
        made = subprocess.run(
            [*command, "--json"], env=env, capture_output=True, text=True, check=True
        )
        titles = [p["title"] for p in json.loads(made.stdout)["proposals"]]
        print(f"proposals: {titles}")


if __name__ == "__main__":
    main()
