"""evolve next to LangGraph on the same 1,000-node chain of trivial Python functions.

Each side is timed as a user meets it, in this process, wall time, median of N, interleaved (one
of each in turn, so a busy spell weighs on both alike):
  evolve                 `start_run`: load and validate experience.yaml, run, and record every
                         event (JSONL log) and attempt (SQLite state store)
  LangGraph (memory)     build the StateGraph, compile it with InMemorySaver, invoke
  LangGraph (no saver)   the same, compiled without a checkpointer
  LangGraph + SQLite     the same, compiled with SqliteSaver on a file
Targets (on wall time): evolve at least 2x faster than LangGraph in memory and at least 10x
faster than LangGraph with SqliteSaver. CPU time (process_time: every thread of this process) is
printed beside it: on a busy machine, wall time also measures the other processes.

Installs nothing. Run it in a virtual environment holding evolve and LangGraph, e.g.
  python -m venv /tmp/lg && /tmp/lg/bin/pip install -e . langgraph langgraph-checkpoint-sqlite
  /tmp/lg/bin/python -m bench.anchor_langgraph [--nodes N] [--repeat N]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from bench.load import chain
from evolve.runtime.run import RunOptions, start_run
from evolve.store.workspace import Workspace


class State(TypedDict, total=False):
    out: int


def _step(state: State) -> dict[str, Any]:
    return {}


def langgraph_chain(nodes: int, saver: Any) -> Callable[[], Any]:
    """Build, compile and invoke a chain of `nodes` trivial nodes (a fresh thread each time)."""
    from langgraph.graph import END, START, StateGraph

    counter = [0]

    def work() -> Any:
        graph = StateGraph(State)
        for i in range(nodes):
            graph.add_node(f"n{i}", _step)
        graph.add_edge(START, "n0")
        for i in range(nodes - 1):
            graph.add_edge(f"n{i}", f"n{i + 1}")
        graph.add_edge(f"n{nodes - 1}", END)
        app = graph.compile(checkpointer=saver)
        counter[0] += 1
        config = {"recursion_limit": nodes + 10, "configurable": {"thread_id": str(counter[0])}}
        return app.invoke({}, config)

    return work


def evolve_chain(path: Path, workspace: Path) -> Callable[[], Any]:
    def work() -> Any:
        result = start_run(path, Workspace(workspace), RunOptions())
        if result.status != "success":
            sys.exit(f"evolve run failed: {result.reason}")
        return result

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    try:
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:
        sys.exit(
            "LangGraph is not installed here: run this in a virtual environment with "
            "`pip install langgraph langgraph-checkpoint-sqlite` (see the module docstring)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        connection = sqlite3.connect(root / "lg.sqlite", check_same_thread=False)
        sides = {
            "evolve": evolve_chain(chain(root / "chain", args.nodes), root / "ws"),
            "LangGraph (memory)": langgraph_chain(args.nodes, InMemorySaver()),
            "LangGraph (no saver)": langgraph_chain(args.nodes, None),
            "LangGraph + SQLite": langgraph_chain(args.nodes, SqliteSaver(connection)),
        }
        for work in sides.values():  # first use: imports and caches warm on both sides
            work()
        times: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.repeat):
            for name, work in sides.items():
                began, began_cpu = time.perf_counter(), time.process_time()
                work()
                times[name].append(time.perf_counter() - began)
                cpu[name].append(time.process_time() - began_cpu)
        connection.close()
    versions = ", ".join(
        f"{p} {importlib.metadata.version(p)}"
        for p in ("evolve", "langgraph", "langgraph-checkpoint-sqlite")
    )
    print(f"{versions}; Python {platform.python_version()}, {platform.machine()}")
    print(f"{args.nodes:,}-node chain, median of {args.repeat} interleaved runs\n")
    ours = statistics.median(times["evolve"])
    ours_cpu = statistics.median(cpu["evolve"])
    print(f"{'':22} {'wall':>8} {'CPU':>8} {'wall x':>7} {'CPU x':>7}")
    for name in sides:
        wall, used = statistics.median(times[name]), statistics.median(cpu[name])
        print(f"{name:22} {wall:7.3f}s {used:7.3f}s {wall / ours:7.1f} {used / ours_cpu:7.1f}")
    print()
    for name, target in [
        ("LangGraph (memory)", 2.0),
        ("LangGraph (no saver)", None),
        ("LangGraph + SQLite", 10.0),
    ]:
        ratio = statistics.median(times[name]) / ours
        verdict = ""
        if target is not None:
            verdict = f"  (target >= {target:g}x)  {'MET' if ratio >= target else 'NOT MET'}"
        print(f"evolve vs {name:22} {ratio:5.1f}x faster{verdict}")


if __name__ == "__main__":
    main()
