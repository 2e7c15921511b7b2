"""The readers on runs of 10,000, 100,000 and 1,000,000 events: time and peak memory.

Builds each run for real (bench/bigrun.py: a fan-out over half as many items as events, two
events each, every 97th item failing once, with the event log and the state store on), then runs
each reader in a fresh process and reports its CPU time (user + sys) and wall time (median of N)
and its peak RSS:
  evolve inspect last --json
  evolve inspect last --html FILE
  evolve runs
  evolve propose RUN --no-llm
Targets: each under 300 MB at 1,000,000 events and linear in events (the sizes are printed
side by side); `inspect --json` under 1 s at 100,000 events (CPU: on a busy machine wall time
also measures the other processes).

Every size is a real run (1,000,000 events build in about two minutes). For a quicker look, a
size above `--real-up-to` is not: the real run of that many events (measured already at its own
size) has its log rewritten to the size with the same event shapes (bench/bigrun.py
`scale_log`; its state store stays the real run's, so `runs` reads the same store).

Usage: python -m bench.readers [--sizes 10000,100000,1000000] [--repeat N] [--real-up-to N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.bigrun import big_run, evolve_command, measure_cpu, scale_log


def readers(run_id: str, page: Path) -> list[tuple[str, list[str]]]:
    return [
        ("inspect --json", ["inspect", "last", "--json"]),
        ("inspect --html", ["inspect", "last", "--html", str(page)]),
        ("runs", ["runs"]),
        ("propose --no-llm", ["propose", run_id, "--no-llm"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--real-up-to", type=int, default=1_000_000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    figures: dict[str, dict[int, tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        real = None  # the run built at --real-up-to events, whose log larger sizes scale
        for size in sorted(sizes):
            root = Path(tmp) / str(size)
            if size > args.real_up_to and real is not None:
                root, result = real  # measured at its own size already: its log is scaled now
            else:
                root.mkdir()
                result = big_run(root, root / "ws", min(size, args.real_up_to) // 2)
                if size >= args.real_up_to:
                    real = root, result
            how = "built"
            if size > args.real_up_to:
                scale_log(result.log_path, size // 2)
                how = f"built at {args.real_up_to:,} events, log scaled:"
            with result.log_path.open() as log:
                events = sum(1 for _ in log)
            print(f"{how} run {result.run_id}: {events:,} events ({result.status})")
            env = {**os.environ, "EVOLVE_WORKSPACE": str(root / "ws")}
            repeat = args.repeat if size <= 100_000 else 1
            for name, command in readers(result.run_id, root / "page.html"):
                seconds, cpu, peak_mb = measure_cpu(evolve_command() + command, env, repeat)
                figures.setdefault(name, {})[size] = (seconds, cpu, peak_mb)
                print(f"  {name:18} {seconds:7.2f} s  CPU {cpu:6.2f} s  peak {peak_mb:7.1f} MB")
    largest = max(sizes)
    print("\nreader (CPU, peak)  " + "".join(f"{size:>19,}" for size in sizes) + "  events")
    for name, by_size in figures.items():
        cells = "".join(f"{by_size[s][1]:8.2f} s {by_size[s][2]:6.0f} MB" for s in sizes)
        print(f"{name:18} {cells}")
    print()
    for name, by_size in figures.items():
        _, _, peak = by_size[largest]
        verdict = "MET" if peak < 300 else "NOT MET"
        print(f"{name:18} at {largest:,} events: peak {peak:.0f} MB (target < 300)  {verdict}")
    if 100_000 in figures["inspect --json"]:
        seconds, cpu, _ = figures["inspect --json"][100_000]
        verdict = "MET" if cpu < 1 else "NOT MET"
        print(
            f"inspect --json at 100,000 events: CPU {cpu:.2f} s (target < 1 s)  {verdict}"
            f"   (wall {seconds:.2f} s)"
        )


if __name__ == "__main__":
    main()
