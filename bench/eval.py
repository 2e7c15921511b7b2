"""Throughput of `evolve eval`: a suite of N cases of a three-node tool experience with one
`expr` eval, with the event logs and the state store on, as in a real suite.

Prints cases per second for 250, 500 and 1,000 cases, and the cost per case at each size, so a
cost that grows faster than the number of cases shows as a rising per-case time in one run.
Target: at least 100 cases/s at 1,000 cases.

Usage: python -m bench.eval [--repeat N]   (best of N per size, default 3: machines are noisy)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from evolve.evals.suite import SuiteOptions, run_suite
from evolve.store.workspace import Workspace

SIZES = (250, 500, 1000)
TARGET = 100.0
LOAD = "def run(inputs):\n    return {'state_delta': {'text': 'word ' * inputs['_state']['n']}}\n"
SPLIT = (
    "def run(inputs):\n    return {'state_delta': {'words': inputs['_state']['text'].split()}}\n"
)
COUNT = "def run(inputs):\n    return {'state_delta': {'count': len(inputs['_state']['words'])}}\n"


def experience(root: Path, cases: int) -> Path:
    (root / "tools").mkdir(parents=True)
    (root / "data").mkdir()
    for name, text in (("load", LOAD), ("split", SPLIT), ("count", COUNT)):
        (root / "tools" / f"{name}.py").write_text(text)
    document = {
        "name": "bench-eval",
        "version": "0.1.0",
        "state": {
            "schema": {
                "n": {"type": "integer", "default": 1},
                "text": {"type": "string", "default": ""},
                "words": {"type": "array", "default": []},
                "count": {"type": "integer", "default": 0},
            }
        },
        "graph": {
            "nodes": [
                {
                    "id": "load",
                    "kind": "tool",
                    "impl": "tools/load.py",
                    "reads": ["n"],
                    "writes": ["text"],
                },
                {
                    "id": "split",
                    "kind": "tool",
                    "impl": "tools/split.py",
                    "reads": ["text"],
                    "writes": ["words"],
                },
                {
                    "id": "count",
                    "kind": "tool",
                    "impl": "tools/count.py",
                    "reads": ["words"],
                    "writes": ["count"],
                },
            ],
            "edges": [{"from": "load", "to": "split"}, {"from": "split", "to": "count"}],
        },
        "evals": [{"name": "counted", "expr": "$.count == $case.expect.count", "required": True}],
        "cases": {"source": "data/cases.jsonl", "concurrency": 8},
    }
    (root / "experience.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    lines = [
        json.dumps({"id": f"c{i}", "args": {"n": i % 7}, "expect": {"count": i % 7}})
        for i in range(cases)
    ]
    (root / "data" / "cases.jsonl").write_text("\n".join(lines) + "\n")
    return root


def measure(tmp: Path, cases: int) -> float:
    """Seconds for one suite of `cases` cases, from loading the spec to the last row written."""
    path = experience(tmp / f"x{cases}", cases)
    began = time.perf_counter()
    result = run_suite(path, Workspace(tmp / f"ws{cases}"), SuiteOptions())
    elapsed = time.perf_counter() - began
    if result.status != "success" or result.pass_rate != 1.0 or len(result.cases) != cases:
        sys.exit(f"benchmark suite went wrong: {result.status}, pass rate {result.pass_rate}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            best = min(measure(Path(tmp) / f"r{r}", size) for r in range(repeat))
            rates[size] = size / best
            print(
                f"{size:>5} cases: {best:6.2f} s  {rates[size]:7.1f} cases/s  "
                f"{best / size * 1000:6.2f} ms/case"
            )
    growth = (1000 / rates[1000]) / (250 / rates[250])
    print(f"cost of 1,000 cases / cost of 250 cases: {growth:.2f} (linear: 4.00)")
    verdict = "meets" if rates[1000] >= TARGET else "misses"
    print(f"1,000 cases: {rates[1000]:.1f} cases/s, {verdict} the target of {TARGET:.0f} cases/s")


if __name__ == "__main__":
    main()
