"""A run's cost as its workspace fills: the same 5,000-item fan-out run N times in one workspace.

Every run keeps a result per item (`node_results`) next to the rows of every earlier run. An
index that takes those rows in random order (as one led by the fingerprint did) makes each run
dearer than the last; rows that go in by run keep the cost flat. Prints the run itself (wall,
`run.started` to `run.finished`) of the first runs and of the last ones, and their ratio
(target: the last within 1.15x of the first).

Usage: python -m bench.workspace [--runs N]   (from the project root; default 40)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.engine import fan_out
from evolve.runtime.run import RunOptions, start_run
from evolve.store.workspace import Workspace

ITEMS = 5000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    runs = max(parser.parse_args().runs, 6)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fan = fan_out(root / "fan", ITEMS)
        workspace = Workspace(root / "ws")
        seconds = []
        for _ in range(runs):
            result = start_run(fan, workspace, RunOptions())
            if result.status != "success":
                raise SystemExit(f"benchmark run failed: {result.reason}")
            seconds.append(result.duration_ms / 1000)
    first, last = statistics.median(seconds[:3]), statistics.median(seconds[-3:])
    ratio = last / first
    print(
        f"{ITEMS:,}-item fan-out, {runs} runs in one workspace ({runs * ITEMS:,} kept results): "
        f"first runs {first:.3f} s, last runs {last:.3f} s (medians of 3)"
    )
    print(f"last / first {ratio:.2f} (target <= 1.15)  {'MET' if ratio <= 1.15 else 'NOT MET'}")


if __name__ == "__main__":
    main()
