"""`evolve inspect --json` and `evolve runs` on a run of about 100,000 events.

Builds the run for real (bench/bigrun.py: a fan-out over 50,000 items, two events each, with the
event log and the state store on), then times each command over a few subprocess runs and reports
its peak memory (max RSS). Targets here: at most 2 s and 300 MB each; neither may import litellm.

Usage: python -m bench.inspect [--items N] [--repeat N]   (from the project root)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bigrun import big_run, evolve_command, measure

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        began = time.perf_counter()
        result = big_run(Path(tmp), workspace, args.items)
        built = time.perf_counter() - began
        with result.log_path.open() as log:
            events = sum(1 for _ in log)
        print(
            f"built run {result.run_id}: {events:,} events, "
            f"{result.log_path.stat().st_size / 1e6:.1f} MB log, in {built:.1f} s"
        )
        env = {**os.environ, "EVOLVE_WORKSPACE": str(workspace)}
        for name, command in [
            ("evolve inspect last --json", ["inspect", "last", "--json"]),
            ("evolve inspect last", ["inspect", "last"]),
            ("evolve runs", ["runs"]),
        ]:
            seconds, peak_mb = measure(evolve_command() + command, env, args.repeat)
            print(
                f"{name:28} median {seconds:5.2f} s   peak {peak_mb:6.1f} MB"
                "   (target <= 2 s, <= 300 MB)"
            )
        probe = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True
        )
        print(f"litellm imported by inspect: {probe.stdout.strip()}")


if __name__ == "__main__":
    main()
