"""The Ray executor against the local one on CPU-bound Python items (docs/ray.md).

One for_each node over N items (default 2,000), each about 20 ms of pure-Python work (a loop
calibrated on this machine first), run twice with the event log and the state store on:
  local   the default executor: the tool runs in threads of the `evolve` process, so pure-Python
          work is serialized by the GIL (about one core, whatever the concurrency)
  ray     `--executor ray` on a local Ray started for the run with --cpus CPUs (default 2):
          items are Ray tasks in worker processes, so they use every CPU
It prints items/s of each and the ratio ray/local, measured in the same process one after the
other, and the per-task overhead of Ray: (ray wall x CPUs - the items' CPU time) / items (each
item measures its own CPU time, on its worker thread), the time a
task costs beyond its own work (submit, schedule, ship arguments and result, record). Then what
one driver can do whatever the cluster: the driver's own CPU time per item on Ray (scheduling,
submitting, awaiting, recording: work no worker takes off it) and the rate of N trivial items
(no work) on Ray. A cluster of M machines of C cores gives about
min(M x C / (work + overhead), 1 / driver CPU per item) items/s.

Usage: python -m bench.ray [--items N] [--work-ms MS] [--cpus N]   (from the project root)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

TOOL = """\
import time


def run(inputs):
    started = time.thread_time()
    total = 0
    for i in range(inputs["loops"]):
        total += i * i % 7
    return {"state_delta": {}, "metrics": {"total": total, "cpu_s": time.thread_time() - started}}
"""


def calibrate(work_ms: float) -> int:
    """How many loop turns of TOOL take `work_ms` here (best of a few, in this process)."""
    namespace: dict = {}
    exec(TOOL, namespace)
    loops, best = 200_000, float("inf")
    for _ in range(5):
        started = time.perf_counter()
        namespace["run"]({"loops": loops})
        best = min(best, time.perf_counter() - started)
    return max(1, int(loops * work_ms / 1000 / best))


def experience(root: Path, items: int, loops: int, concurrency: int, name: str) -> Path:
    """`root/NAME.yaml` (with the tool beside it): one for_each node over `items` items."""
    (root / "tools").mkdir(parents=True, exist_ok=True)
    (root / "tools" / "work.py").write_text(TOOL)
    spec = {
        "name": "bench-ray",
        "version": "0.1.0",
        "runtime": {"concurrency": concurrency, "timeout_ms": 600_000},
        "state": {"schema": {"xs": {"type": "array", "default": list(range(items))}}},
        "graph": {
            "nodes": [
                {
                    "id": "work",
                    "kind": "tool",
                    "impl": "tools/work.py",
                    "args": {"loops": loops},
                    "reads": ["xs"],
                    "for_each": {"source": "$.xs"},
                }
            ],
            "edges": [],
        },
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def timed(path: Path, workspace: Path, executor: str | None) -> tuple[float, float, float]:
    """(wall seconds, this process's CPU seconds, the items' own CPU seconds) of a run of `path`:
    the items' work is measured by the tool itself, since a calibration on a machine shared with
    other work is only as good as the moment it was made."""
    from evolve.runtime.run import RunOptions, start_run
    from evolve.store.log import read_events
    from evolve.store.workspace import Workspace

    started, cpu = time.perf_counter(), time.process_time()
    result = start_run(path, Workspace(workspace), RunOptions(executor=executor))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if result.status != "success":
        raise SystemExit(f"{executor or 'local'} run {result.status}: {result.reason}")
    work = sum(
        (event.get("metrics") or {}).get("cpu_s", 0.0)
        for event in read_events(result.log_path)
        if event["type"] == "node.finished" and "attempt" in event
    )
    return elapsed, cpu, work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--cpus", type=int, default=2)
    options = parser.parse_args()
    from evolve.runtime import ray_executor

    loops = calibrate(options.work_ms)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # runtime.concurrency: enough items in flight to keep every Ray CPU busy
        concurrency = 4 * options.cpus  # enough items in flight to keep every Ray CPU busy
        path = experience(root, options.items, loops, concurrency, "work")
        trivial = experience(root, options.items, 0, concurrency, "trivial")  # same directory
        executor = ray_executor.RayExecutor(None, num_cpus=options.cpus)
        ray_executor._EXECUTORS[None] = executor
        try:
            executor.connect(root)  # Ray's start-up is not the items' cost
            timed(path, root / "warm", "ray")  # workers started and the tool imported once
            ray, driver_cpu, work = timed(path, root / "ray", "ray")
            bare, bare_cpu, _ = timed(trivial, root / "trivial", "ray")
        finally:
            executor.shutdown()
        local, _, _ = timed(path, root / "local", None)
    n = options.items
    overhead_ms = (ray * options.cpus - work) / n * 1000
    print(f"{n} items of ~{options.work_ms:g} ms pure-Python work ({loops} loop turns)")
    print(f"work per item on Ray  {work / n * 1000:.1f} ms CPU (as the tool measured it)")
    print(f"local executor      {n / local:8.1f} items/s  ({local:.1f} s)")
    print(f"ray, {options.cpus} CPUs local  {n / ray:8.1f} items/s  ({ray:.1f} s)")
    print(f"ratio ray/local     {local / ray:8.2f}x")
    print(f"ray per-task overhead  {overhead_ms:.1f} ms (wall x CPUs - work, per item)")
    print(
        f"driver CPU per item    {driver_cpu / n * 1000:.1f} ms on Ray (the driver's ceiling: ",
        end="",
    )
    print(f"{n / driver_cpu:.0f} items/s)")
    print(f"ray, trivial items  {n / bare:8.1f} items/s  ({bare:.1f} s, no work per item; ", end="")
    print(f"driver CPU {bare_cpu / n * 1000:.2f} ms per item)")


if __name__ == "__main__":
    main()
