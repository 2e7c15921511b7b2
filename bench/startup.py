"""Start-up cost of the light commands: what a user waits for before `evolve` does anything.

Measured as CPU time (user + sys of the child process, stable on a busy machine where wall time
is not) over N fresh processes, median, and as a multiple of `python -c pass` measured in the
same run, interleaved:
  evolve --help                      the floor for every command        (target <= 0.12 s)
  evolve validate examples/starter   loads jsonschema and the spec      (target <= 0.20 s)
  evolve runs  (empty workspace)     opens the workspace for a read     (target <= 0.15 s)

Python's bytecode is cached (in a temporary PYTHONPYCACHEPREFIX, after one warm-up run of each
command) even where PYTHONDONTWRITEBYTECODE is set, as it is for an installed package: compiling
evolve's sources again at every start is not what a user waits for.
Uses the `evolve` script next to this Python, else `python -m evolve`.
Usage: python -m bench.startup [--runs N]   (default 20)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def evolve_command() -> list[str]:
    script = Path(sys.executable).with_name("evolve")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "evolve"]


def cpu_seconds(command: list[str], env: dict[str, str]) -> float:
    """User + sys CPU seconds of one fresh process of `command`; exits if it fails."""
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    error = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} exited {proc.returncode}:\n{error}")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="processes per command (default 20)")
    runs = parser.parse_args().runs
    if runs < 1:
        parser.error("--runs must be at least 1")
    evolve = evolve_command()
    with tempfile.TemporaryDirectory() as empty:
        env = {
            **os.environ,
            "EVOLVE_WORKSPACE": str(Path(empty) / "ws"),
            "PYTHONPYCACHEPREFIX": str(Path(empty) / "pycache"),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"], None),
            ("evolve --help", [*evolve, "--help"], 0.12),
            ("evolve validate examples/starter", [*evolve, "validate", "examples/starter"], 0.20),
            ("evolve runs (empty workspace)", [*evolve, "runs"], 0.15),
        ]
        times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
        for _, command, _ in cases:  # warm-up: bytecode written once
            cpu_seconds(command, env)
        for _ in range(runs):  # interleaved, so a busy spell weighs on every command alike
            for label, command, _ in cases:
                times[label].append(cpu_seconds(command, env))
    floor = statistics.median(times["python -c pass"])
    print(f"{' '.join(evolve)}  (CPU user+sys, median of {runs} interleaved runs each)\n")
    width = max(len(label) for label, _, _ in cases) + 2
    for label, _, target in cases:
        median = statistics.median(times[label])
        verdict = ""
        if target is not None:
            verdict = f"  target <= {target:.2f} s  {'MET' if median <= target else 'NOT MET'}"
        print(
            f"{label:<{width}}{median:.3f} s  {median / floor:5.1f}x python -c pass"
            f"  ({min(times[label]):.3f} .. {max(times[label]):.3f}){verdict}"
        )


if __name__ == "__main__":
    main()
