"""Shared by the benchmarks: a real run of about 100,000 events, and timing a command's
wall time and peak memory (max RSS) in a subprocess."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from evolve.events import EventType
from evolve.runtime.run import RunOptions, RunResult, start_run
from evolve.store.workspace import Workspace

# Every 97th item fails once with a transient error (under on_error skip), so the advisor has
# something to find; the rest write one value each.
TOOL = """
def run(inputs):
    if inputs["$index"] % 97 == 0:
        raise ConnectionError("connection reset by peer")
    return {"state_delta": {"out": [inputs["$index"]]}}
"""
MEASURE = """
import resource, subprocess, sys, time
began = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
elapsed = time.perf_counter() - began
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = usage.ru_utime + usage.ru_stime
tail = done.stderr.decode()[-300:].replace(chr(10), " ")
print(elapsed, usage.ru_maxrss, done.returncode, cpu, tail)
"""


def big_run(root: Path, workspace: Path, items: int) -> RunResult:
    """A fan-out over `items` items (two events each) read from a data file, run for real."""
    exp = root / "big"
    (exp / "tools").mkdir(parents=True)
    (exp / "data").mkdir()
    (exp / "tools" / "t.py").write_text(TOOL)
    (exp / "data" / "items.json").write_text(json.dumps(list(range(items))))
    document = {
        "name": "big",
        "version": "0.1.0",
        "runtime": {"concurrency": 8},
        "state": {
            "schema": {
                "items": {"type": "array"},
                "out": {"type": "array", "merge": "array_append", "default": []},
            }
        },
        "graph": {
            "nodes": [
                {
                    "id": "load",
                    "kind": "dataset",
                    "writes": ["items"],
                    "source": {"type": "file", "uri": "data/items.json"},
                },
                {
                    "id": "fan",
                    "kind": "tool",
                    "impl": "tools/t.py",
                    "writes": ["out"],
                    "for_each": {"source": "$.items"},
                    "on_error": {"policy": "skip"},
                },
            ],
            "edges": [{"from": "load", "to": "fan"}],
        },
    }
    (exp / "experience.yaml").write_text(yaml.safe_dump(document))
    return start_run(exp, Workspace(workspace), RunOptions())


def scale_log(log_path: Path, items: int) -> int:
    """Rewrite the log of a `big_run` for `items` items, with the event shapes that run wrote
    (each item started and finished; every 97th failed and skipped), its items one after
    another, a millisecond apart. For sizes whose real run would take too long to build; the
    state store keeps the real run's rows. Returns the number of events written."""
    events = [json.loads(line) for line in log_path.read_text("utf-8").splitlines()]
    fan = [e for e in events if e.get("node_id") == "fan" and "item" in e]
    head = [e for e in events[: events.index(fan[0])] if "item" not in e]
    tail = [e for e in events[events.index(fan[-1]) + 1 :] if "item" not in e]
    plain = [e for e in fan if e.get("item") == 1]  # started, finished
    failing = [e for e in fan if e.get("item") == 0]  # started, failed, skipped
    failed = len(range(0, items, 97))
    began = datetime.fromisoformat(events[0]["ts"])
    seq = 0
    with log_path.open("w", encoding="utf-8") as log:

        def write(event: dict, ms: int, **changed: object) -> None:
            nonlocal seq
            seq += 1
            at = (began + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
            at = at.replace("+00:00", "Z")
            log.write(json.dumps({**event, **changed, "seq": seq, "ts": at}) + "\n")

        for event in head:
            if event["type"] == EventType.NODE_ITEMS:
                event = {**event, "total": items}
            elif event["type"] == EventType.STATE_WRITE:
                event = {**event, "value": list(range(items))}
            write(event, 0)
        for item in range(items):
            for event in failing if item % 97 == 0 else plain:
                write(event, item, item=item)
        for event in tail:
            if event["type"] == EventType.STATE_WRITE:
                kept = [i for i in range(items) if i % 97]
                event = {**event, "writes": len(kept), "appended": kept}
            elif event["type"] == EventType.NODE_FINISHED:
                event = {**event, "items": items, "items_failed": failed}
            write(event, items)
    return seq


def evolve_command() -> list[str]:
    script = Path(sys.executable).with_name("evolve")
    return [str(script)] if script.exists() else [sys.executable, "-m", "evolve"]


def measure(command: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    """(median seconds, peak MB) of `command` over `repeat` subprocess runs."""
    seconds, _, peak = measure_cpu(command, env, repeat)
    return seconds, peak


def measure_cpu(command: list[str], env: dict[str, str], repeat: int) -> tuple[float, float, float]:
    """(median wall seconds, median CPU seconds, peak MB) of `command` over `repeat` subprocess
    runs; CPU is user + sys of the command, steadier than wall time on a busy machine."""
    times, cpus, peaks = [], [], []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", MEASURE, *command],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split(maxsplit=4)
        if out[2] != "0":
            sys.exit(f"{' '.join(command)} failed: {out[4] if len(out) > 4 else ''}")
        times.append(float(out[0]))
        peaks.append(int(out[1]) / 1024)
        cpus.append(float(out[3]))
    return statistics.median(times), statistics.median(cpus), max(peaks)
