"""Loading experience.yaml: what it costs, and whether it stays linear in the number of nodes.

Writes chains of 1,000, 5,000 and 20,000 trivial tool nodes and loads each (`load_experience`:
parse with locations, JSON Schema shape check, semantic checks, build), CPU time, median of N.
Prints the time per node at each size and the largest / smallest of those (target: flat within
1.5x). For scale, the 1,000-node chain is also checked in the same run by one validator for the
whole JSON Schema (the shipped schema with its `unevaluatedProperties` and per-kind if/then), as
loading did before per-kind validators: what that one check alone costs, everything else equal.

With `--baseline DIR` (a checkout of an earlier evolve, e.g. a worktree of 7a1eb51), the 1,000-
and 5,000-node chains are also loaded by that checkout's code and by this one, each in a fresh
process, interleaved, and the ratio printed (target: >= 5x cheaper than 7a1eb51). 7a1eb51 refuses
the 20,000-node chain (it capped a document at 100,000 values).

Usage: python -m bench.load [--repeat N] [--baseline DIR]   (default 5)
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
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from evolve.spec import loader
from evolve.spec.loader import load_experience

TRIVIAL = "def run(inputs):\n    return {'state_delta': {}}\n"


def chain(root: Path, size: int) -> Path:
    """An experience of `size` tool nodes in a line."""
    root.mkdir(parents=True)
    (root / "tools").mkdir()
    (root / "tools" / "t.py").write_text(TRIVIAL)
    document = {
        "name": "chain",
        "version": "0.1.0",
        "runtime": {"concurrency": 20, "timeout_ms": 60000},
        "state": {"schema": {}},
        "graph": {
            "nodes": [{"id": f"n{i}", "kind": "tool", "impl": "tools/t.py"} for i in range(size)],
            "edges": [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(size - 1)],
        },
    }
    (root / "experience.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return root


def cpu_median(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.process_time()
        work()
        times.append(time.process_time() - began)
    return statistics.median(times)


def whole_schema_problems(data: dict[str, Any], loc: Any) -> list[Any]:
    """The shape check as one validator of the whole shipped schema (the earlier load path)."""
    validator = _whole()
    problems: list[Any] = []
    for error in validator.iter_errors(data):
        problems += loader._describe(error, loc, data)
    return problems


_WHOLE: list[Any] = []


def _whole() -> Any:
    import jsonschema

    if not _WHOLE:
        _WHOLE.append(jsonschema.Draft202012Validator(json.loads(loader.schema_text())))
    return _WHOLE[0]


LOAD_IN_A_PROCESS = """
import statistics, sys, time
from evolve.spec.loader import load_experience
path, repeat = sys.argv[1], int(sys.argv[2])
load_experience(path)  # imports and validators first
times = []
for _ in range(repeat):
    began = time.process_time()
    load_experience(path)
    times.append(time.process_time() - began)
print(statistics.median(times))
"""


def load_cpu(src: Path, path: Path, repeat: int) -> float:
    """Median CPU seconds of loading `path` with the evolve in `src`, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", LOAD_IN_A_PROCESS, str(path), str(repeat)],
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout)


def against(baseline: Path, sizes: dict[int, Path], repeat: int) -> None:
    here = Path(__file__).resolve().parents[1] / "src"
    for size in (1000, 5000):
        times: dict[str, list[float]] = {"now": [], "baseline": []}
        for _ in range(3):  # interleaved, so a busy spell weighs on both alike
            times["now"].append(load_cpu(here, sizes[size], repeat))
            times["baseline"].append(load_cpu(baseline / "src", sizes[size], repeat))
        now, before = statistics.median(times["now"]), statistics.median(times["baseline"])
        print(
            f"load {size:6,}-node chain: {baseline.name} {before:.3f} s, now {now:.3f} s CPU:"
            f" {before / now:.1f}x cheaper   (target >= 5x)"
            f"  {'MET' if before / now >= 5 else 'NOT MET'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier evolve")
    args = parser.parse_args()
    repeat = args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {n: chain(Path(tmp) / f"c{n}", n) for n in (1000, 5000, 20000)}
        load_experience(sizes[1000])  # first use: imports and validators built once
        per_node: dict[int, float] = {}
        for size, path in sizes.items():
            runs = repeat if size <= 5000 else max(1, repeat // 2)
            seconds = cpu_median(lambda p=path: load_experience(p), runs)
            per_node[size] = seconds / size
            print(
                f"load {size:6,}-node chain   {seconds:7.3f} s CPU   "
                f"{per_node[size] * 1e6:6.1f} us per node"
            )
        spread = max(per_node.values()) / min(per_node.values())
        print(
            f"time per node, largest / smallest: {spread:.2f}x"
            f"   (target <= 1.5x)  {'MET' if spread <= 1.5 else 'NOT MET'}"
        )
        _whole()
        times: dict[str, list[float]] = {"now": [], "before": []}
        for _ in range(repeat * 2):  # interleaved, so a busy spell weighs on both alike
            times["now"].append(cpu_median(lambda: load_experience(sizes[1000]), 1))
            with mock.patch.object(loader, "schema_problems", whole_schema_problems):
                times["before"].append(cpu_median(lambda: load_experience(sizes[1000]), 1))
        now, before = statistics.median(times["now"]), statistics.median(times["before"])
        print(
            f"1,000-node chain: whole-schema validator {before:.3f} s, load path {now:.3f} s:"
            f" {before / now:.1f}x   (that check alone swapped; the 5x target is the whole"
            " load against 7a1eb51: --baseline)"
        )
        if args.baseline is not None:
            against(args.baseline.resolve(), sizes, repeat)


if __name__ == "__main__":
    main()
