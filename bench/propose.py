"""`evolve propose --no-llm` on a run of about 100,000 events.

Builds the run for real (bench/bigrun.py: 50,000 items, every 97th failing with a transient error
under on_error skip), then times the command over a few subprocess runs with its peak memory
(max RSS). Target here: at most 3 s and 300 MB.

Usage: python -m bench.propose [--items N] [--repeat N]   (from the project root)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from bench.bigrun import big_run, evolve_command, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
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
