"""`--help` reads like the loop, with placeholders a user would write, and the shell completes
commands, run ids and experience directories."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from evolve.cli import app
from evolve.clihelp import LOOP_ORDER

runner = CliRunner()
EVOLVE = [sys.executable, "-m", "evolve"]


def test_commands_are_listed_in_the_loops_order():
    text = runner.invoke(app, ["--help"]).stdout
    listed = re.findall(r"^  ([a-z]+)  ", text.split("Commands:")[1], re.M)
    assert listed == [name for name in LOOP_ORDER if name in listed]
    assert listed[:5] == ["init", "new", "validate", "run", "runs"]
    assert "--install-completion" in text and "--show-completion" in text


def test_no_help_shows_a_python_type_as_a_placeholder():
    """Holds on Typer 0.28 and 0.29 alike (0.29 names arguments `{RUN}`, `[[DIR]]`, `DIR <path>`
    and int options by their parameter's name unless told otherwise)."""
    group = typer.main.get_command(app)
    for name in group.commands:  # type: ignore[attr-defined]
        text = runner.invoke(app, [name, "--help"]).stdout
        typed = r"<(str|int|float|path|bool|text|list|integer)\b[^>]*>|\{\w+\}|list\[|\[\["
        assert not re.search(typed, text), (name, text)

    run = " ".join(runner.invoke(app, ["run", "--help"]).stdout.split())
    assert "Usage: evolve run [OPTIONS] DIR" in run
    assert "--max-cost USD" in run and "--set FIELD=VALUE" in run and "--from RUN" in run
    propose = " ".join(runner.invoke(app, ["propose", "--help"]).stdout.split())
    assert "[RUN...]" in propose and "--timeout SECONDS" in propose
    assert "--last N" in propose and "--context-window N" in propose  # numbers, not names


def complete(words: str, cwd: Path, **env: str) -> list[str]:
    done = subprocess.run(
        EVOLVE,
        cwd=cwd,
        env={
            **os.environ,
            "_EVOLVE_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (not words.endswith(" "))),
            **env,
        },
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.slow
def test_run_ids_complete_from_the_workspace(tmp_path):
    runs = tmp_path / ".evolve" / "runs"
    runs.mkdir(parents=True)
    for i, run_id in enumerate(["r-aaaa1111", "r-aabb2222", "r-cccc3333"]):
        (runs / f"{run_id}.jsonl").write_text("")
        os.utime(runs / f"{run_id}.jsonl", (1000 + i, 1000 + i))
    assert complete("evolve inspect r-aa", tmp_path) == ["r-aabb2222", "r-aaaa1111"]
    assert complete("evolve propose ", tmp_path)[:2] == ["last", "r-cccc3333"]
    assert complete("evolve compare r-c", tmp_path) == ["r-cccc3333"]
    elsewhere = tmp_path / "w"
    (elsewhere / "runs").mkdir(parents=True)
    (elsewhere / "runs" / "r-zzzz9999.jsonl").write_text("")
    assert complete("evolve diff r-", tmp_path, EVOLVE_WORKSPACE=str(elsewhere)) == ["r-zzzz9999"]


@pytest.mark.slow
def test_experience_directories_complete_experiences_first(tmp_path):
    for name in ("notes", "mine", "data"):
        (tmp_path / name).mkdir()
    (tmp_path / "mine" / "experience.yaml").write_text("name: m\n")
    (tmp_path / "notes" / "experience.yaml").write_text("name: n\n")
    (tmp_path / "file.txt").write_text("")
    assert complete("evolve run ", tmp_path) == ["mine/", "notes/", "data/"]
    assert complete("evolve eval mi", tmp_path) == ["mine/"]


def test_light_coercion_gives_what_typer_gives():
    """From Typer 0.29 evolve takes values that need no conversion as they are (no pydantic
    import); for every parameter and a spread of values the result must be Typer's own."""
    group = typer.main.get_command(app)
    compared = 0
    for name, command in [*group.commands.items(), ("", group)]:  # type: ignore[attr-defined]
        ctx = command.make_context(name or "evolve", [], resilient_parsing=True)
        for param in command.get_params(ctx):
            own = type(param).process_value.__get__(param)
            if not hasattr(param, "get_runtime_param"):  # Typer up to 0.28: nothing to lighten
                assert param.process_value == own
                continue
            sources = type(ctx.get_parameter_source(param.name))
            for source in (sources.DEFAULT, sources.COMMANDLINE):
                ctx.set_parameter_source(param.name, source)
                for value in (None, param.default, "x", "12", ("a", "b"), (), True):
                    got = _outcome(param.process_value, ctx, value)
                    assert got == _outcome(own, ctx, value), (name, param.name, source, value)
                    compared += 1
    assert compared == 0 or compared > 1000  # Typer 0.29+: every parameter of every command


def _outcome(process, ctx, value):
    try:
        result = process(ctx, value)
    except Exception as exc:  # Typer's own errors for values it refuses
        return "error", type(exc).__name__
    return "ok", type(result), result


LIGHT_PROBE = """
import sys
from evolve.cli import app
try:
    app(sys.argv[1:], prog_name="evolve")
except SystemExit:
    pass
print("pydantic loaded:", "pydantic" in sys.modules, file=sys.stderr)
"""


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--help"], ["runs"], ["validate", "examples/starter"]])
def test_light_commands_never_import_pydantic(tmp_path, args):
    """Typer 0.29 coerces through pydantic (about 60 ms to import): evolve keeps it off."""
    root = Path(__file__).resolve().parents[1]
    args = [str(root / a) if a.startswith("examples/") else a for a in args]
    env = {**os.environ, "EVOLVE_WORKSPACE": str(tmp_path / "ws")}
    done = subprocess.run(
        [sys.executable, "-c", LIGHT_PROBE, *args], env=env, capture_output=True, text=True
    )
    assert done.stderr.splitlines()[-1] == "pydantic loaded: False", done.stderr
