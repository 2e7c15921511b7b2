"""Start-up time of the light commands: what a user waits for before `evolve` does anything.

Prints the median (min .. max) wall time over N fresh processes of:
  evolve --help                      the floor for every command
  evolve validate examples/starter   loads jsonschema and the spec, not litellm
  python -c pass                     the interpreter alone, for scale

Uses the `evolve` script next to this Python, else `python -m evolve`.
Usage: python -m bench.startup [--runs N]   (default 20)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def evolve_command() -> list[str]:
    script = Path(sys.executable).with_name("evolve")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "evolve"]


def wall_times(command: list[str], runs: int) -> list[float]:
    """Seconds each of `runs` fresh processes of `command` took; exits if one fails."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True)
        times.append(time.perf_counter() - began)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr.decode()}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="processes per command (default 20)")
    runs = parser.parse_args().runs
    if runs < 1:
        parser.error("--runs must be at least 1")
    evolve = evolve_command()
    cases = [
        ("evolve --help", [*evolve, "--help"]),
        ("evolve validate examples/starter", [*evolve, "validate", "examples/starter"]),
        ("python -c pass", [sys.executable, "-c", "pass"]),
    ]
    print(f"{' '.join(evolve)}  ({runs} runs each)\n")
    width = max(len(label) for label, _ in cases) + 2
    for label, command in cases:
        times = wall_times(command, runs)
        print(
            f"{label:<{width}}median {statistics.median(times):.3f} s  "
            f"({min(times):.3f} .. {max(times):.3f}, {runs} runs)"
        )


if __name__ == "__main__":
    main()
