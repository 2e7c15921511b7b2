"""`evolve inspect --html` on a large fan-out: how long the page takes next to reading the run.

Builds a real run (bench/bigrun.py: a fan-out over N items, every 97th failing once), then times,
in this process, reading the run (`inspect_run`: the store's rows and the fold of its event log)
and rendering its page (`render_html`), each the median of a few repeats. Prints both, their
ratio and the page's size. The page should cost less than reading the run it shows (ratio < 1),
and stay under 1 MB however many items the run had (the timeline draws at most 500 of them).

Usage: python -m bench.report [--items N] [--repeat N]   (from the project root)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bigrun import big_run
from evolve.report.html import render_html
from evolve.store.queries import inspect_run
from evolve.store.workspace import Workspace


def median_seconds(work: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace(Path(tmp) / "ws")
        big_run(Path(tmp), workspace.root, args.items)
        render_html(inspect_run(workspace, "last"))  # first use: templates compiled once
        read, report = median_seconds(lambda: inspect_run(workspace, "last"), args.repeat)
        render, page = median_seconds(lambda: render_html(report), args.repeat)
    print(f"run of {args.items:,} items, {report.view.events:,} events")
    for label, figure in [
        ("read the run (inspect_run)", f"median {read * 1000:7.1f} ms"),
        ("render the page (render_html)", f"median {render * 1000:7.1f} ms"),
        ("render / read", f"{render / read:14.2f}    (target < 1)"),
        ("page size", f"{len(page) / 1e6:14.2f} MB (target < 1 MB)"),
    ]:
        print(f"{label:31} {figure}")


if __name__ == "__main__":
    main()
