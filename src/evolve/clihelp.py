"""How the command line reads in `--help` and completes in a shell.

- Commands are listed in the loop's order (`LOOP_ORDER`), not the order they are defined in;
  a command not named there comes last.
- Placeholders are words a user would write (`--max-cost USD`, `RUN`, `DIR...`), never the
  parameter's Python type (`<float range>`, `{path}`, `<list[Path]>`).
- Run ids (RUN arguments, `--from`) complete from the workspace's event logs (newest first, plus
  `last`); experience arguments complete to directories, those holding an `experience.yaml`
  first. Completion reads file names only: no database, no heavy import.

`readable(commands)` applies all of this to the commands Typer builds from the app (cli.py, the
one module that knows Typer, calls it from its group class).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

LOOP_ORDER = (
    "init",
    "new",
    "validate",
    "run",
    "runs",
    "inspect",
    "state",
    "propose",
    "diff",
    "eval",
    "compare",
    "resume",
    "export",
    "doctor",
    "graph",
    "schema",
    "mcp",
)

RUN_PARAMS = {"run_id", "run_ids", "run_ref", "run_a", "run_b", "source"}
EXPERIENCE_PARAMS = {"path", "paths", "directory"}
OPTION_WORDS = {
    "api_base": "URL",
    "args": "JSON",
    "sets": "FIELD=VALUE",
    "from_run": "RUN",
    "rerun": "NODE",
    "node": "NODE",
    "type": "TYPE",
    "workspace": "DIR",
    "record": "FILE",
    "replay": "FILE",
    "html": "FILE",
    "write": "FILE",
    "markdown": "FILE",
    "timeout": "SECONDS",
    "max_cost": "USD",
    "model": "MODEL",
    "source": "RUN",
}


def run_ids(ctx: Any, param: Any, incomplete: str) -> list[str]:
    """`last` and the workspace's run ids, newest first, that start with `incomplete`."""
    chosen = (ctx.params or {}).get("workspace") or os.environ.get("EVOLVE_WORKSPACE")
    runs = Path(chosen or Path.cwd() / ".evolve") / "runs"
    try:
        logs = sorted(runs.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        logs = []
    return [i for i in ["last", *(p.stem for p in logs)] if i.startswith(incomplete)]


def experience_dirs(ctx: Any, param: Any, incomplete: str) -> list[str]:
    """Directories under what is typed so far, the ones holding an experience.yaml first."""
    typed = Path(incomplete or ".")
    parent, prefix = (
        (typed, "")
        if incomplete.endswith("/") or not incomplete
        else (
            typed.parent,
            typed.name,
        )
    )
    try:
        found = [p for p in parent.iterdir() if p.is_dir() and p.name.startswith(prefix)]
    except OSError:
        return []
    found = [p for p in found if not p.name.startswith(".") or prefix.startswith(".")]
    found.sort(key=lambda p: (not (p / "experience.yaml").is_file(), p.name))
    shown = (str(p) if incomplete else p.name for p in found)
    return [f"{name}/" if not name.endswith("/") else name for name in shown]


def _word(param: Any) -> str:
    name = param.name or ""
    if name in ("run_a", "run_b"):  # compare's two runs
        return "BASELINE" if name == "run_a" else "CANDIDATE"
    if name in RUN_PARAMS:
        return "RUN"
    if name in EXPERIENCE_PARAMS:
        return "DIR"
    if name in OPTION_WORDS:
        return OPTION_WORDS[name]
    # Typer's own parameter classes changed across releases: read what may be absent softly
    kind = str(getattr(getattr(param, "type", None), "name", "text"))
    if kind.startswith(("int", "float")) and getattr(param, "param_type_name", "") == "option":
        return "N" if kind.startswith("int") else "X"
    return name.upper()


def _readable_param(param: Any) -> None:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return
    name = param.name or ""
    if param.metavar is None:
        word = _word(param)
        if param.param_type_name == "argument":
            word += "..." if param.nargs != 1 else ""
            if not param.required:
                word = f"[{word}]"  # Typer keeps a bracketed metavar as it is, in usage too
        param.metavar = word
    if param.param_type_name == "argument" and param.required and not param.metavar.startswith("["):
        word = param.metavar
        param.make_metavar = lambda ctx=None, usage=False: word  # no {braces} around it
    if name in RUN_PARAMS and getattr(param, "_custom_shell_complete", None) is None:
        param._custom_shell_complete = run_ids
    if name in EXPERIENCE_PARAMS and getattr(param, "_custom_shell_complete", None) is None:
        param._custom_shell_complete = experience_dirs


def readable(commands: dict[str, Any]) -> dict[str, Any]:
    """A Click group's commands in the loop's order, their parameters readably named and
    completed (cli.py's group calls this on the commands Typer built)."""
    order = {name: i for i, name in enumerate(LOOP_ORDER)}
    names = sorted(commands, key=lambda n: (order.get(n, len(order)), n))
    for command in commands.values():
        for param in command.params:
            _readable_param(param)
    return {name: commands[name] for name in names}
