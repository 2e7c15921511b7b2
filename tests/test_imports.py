"""Slow imports are bugs: the light commands never import litellm (about 1.8 s on its own).

Each command runs as `python -m evolve ...` in a fresh interpreter behind an import hook that
records, and refuses, every import of litellm, so a leak is both caught and cheap; the probe also
reports whether litellm sits in sys.modules at exit. A control run proves the hook sees an import.

To keep a new command light, add its arguments to LIGHT_COMMANDS (`runs`, `inspect` ...). Every
registered command's `--help` is covered already. Commands run from the repository root with
EVOLVE_WORKSPACE pointing at an empty folder in tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from evolve.cli import app

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test here starts a fresh interpreter

REGISTERED = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]

LIGHT_COMMANDS: list[list[str]] = [
    ["--help"],
    ["--version"],
    ["validate", "examples/starter"],
    ["validate", "--json", "examples/starter"],
    ["schema"],
    ["graph", "examples/starter"],
    *([name, "--help"] for name in REGISTERED),
]

PROBE = """\
import json, runpy, sys

attempts = []


class RefuseLitellm:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "litellm":
            attempts.append(name)
            raise ImportError(f"import of {name} refused by the test probe")
        return None


report, mode, *args = sys.argv[1:]
sys.meta_path.insert(0, RefuseLitellm())
code = 0
try:
    if mode == "evolve":
        sys.argv = ["evolve", *args]
        runpy.run_module("evolve", run_name="__main__", alter_sys=True)
    else:
        exec(args[0])
except SystemExit as exc:
    code = exc.code or 0
finally:
    with open(report, "w") as out:
        json.dump({"attempts": attempts, "loaded": "litellm" in sys.modules, "exit": code}, out)
"""


def probe(tmp_path: Path, mode: str, *args: str) -> dict:
    """Run `args` under the probe; returns the import attempts, the sys.modules check, the exit."""
    report = tmp_path / "probe.json"
    env = {**os.environ, "EVOLVE_WORKSPACE": str(tmp_path / "workspace")}
    env.pop("EVOLVE_RAISE_ERRORS", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), mode, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.exists(), f"the probe did not report:\n{done.stdout}\n{done.stderr}"
    return {**json.loads(report.read_text()), "stderr": done.stderr}


def test_the_probe_detects_an_import_of_litellm(tmp_path):
    found = probe(tmp_path, "code", "try:\n    import litellm\nexcept ImportError:\n    pass")
    assert found["attempts"] == ["litellm"]


def test_the_probe_detects_litellm_already_in_sys_modules(tmp_path):
    found = probe(
        tmp_path, "code", "import sys, types\nsys.modules['litellm'] = types.ModuleType('x')"
    )
    assert found["attempts"] == []
    assert found["loaded"] is True


@pytest.mark.parametrize("args", LIGHT_COMMANDS, ids=" ".join)
def test_light_commands_never_import_litellm(tmp_path, args):
    found = probe(tmp_path, "evolve", *args)
    assert found["attempts"] == [], f"`evolve {' '.join(args)}` imported litellm"
    assert found["loaded"] is False
    assert found["exit"] == 0, found["stderr"]


RUN_READERS: list[list[str]] = [
    ["run", "examples/starter"],  # a run with no agent node never needs litellm either
    ["runs"],
    ["runs", "--json"],
    ["inspect", "last"],
    ["inspect", "last", "--json"],
    ["inspect", "last", "--events"],
    ["state", "last"],
]


@pytest.mark.parametrize("args", RUN_READERS, ids=" ".join)
def test_run_readers_never_import_litellm(tmp_path, args):
    from evolve.runtime.run import RunOptions, start_run
    from evolve.store.workspace import Workspace

    start_run(ROOT / "examples" / "starter", Workspace(tmp_path / "workspace"), RunOptions())
    found = probe(tmp_path, "evolve", *args)
    assert found["attempts"] == [], f"`evolve {' '.join(args)}` imported litellm"
    assert found["loaded"] is False
    assert found["exit"] == 0, found["stderr"]
