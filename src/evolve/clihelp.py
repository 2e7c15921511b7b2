"""How the command line reads in `--help` and completes in a shell.

- Commands are listed in the loop's order (`LOOP_ORDER`), not the order they are defined in;
  a command not named there comes last.
- Placeholders are words a user would write (`--max-cost USD`, `RUN`, `DIR...`), never the
  parameter's Python type (`<float range>`, `{path}`, `<list[Path]>`).
- Run ids (RUN arguments, `--from`) complete from the workspace's event logs (newest first, plus
  `last`); experience arguments complete to directories, those holding an `experience.yaml`
  first. Completion reads file names only: no database, no heavy import.
- From Typer 0.29 every value passes through a pydantic TypeAdapter, and importing pydantic
  costs a light command about 60 ms of CPU. A value that needs no conversion (a default that is
  None or a plain value, text for a `str`, a path for a `Path`, lists of those) is taken as it is;
  anything else (numbers typed on the command line, ranges) goes through Typer's own coercion.

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
    # (up to 0.28 a Click type with a name; from 0.29 a type descriptor with the annotation)
    kind = str(getattr(getattr(param, "type", None), "name", "text"))
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation in (int, float):
        kind = annotation.__name__
    if kind.startswith(("int", "float")) and getattr(param, "param_type_name", "") == "option":
        return "N" if kind.startswith("int") else "X"
    return name.upper()


def _quick_coercion(param: Any) -> None:
    """Typer 0.29+: values that need no conversion skip its pydantic coercion (see above)."""
    descriptor = getattr(param, "type_descriptor", None)
    original = getattr(param, "process_value", None)
    if descriptor is None or original is None or not hasattr(param, "get_runtime_param"):
        return  # Typer up to 0.28: Click's own types, no pydantic
    if getattr(original, "quick", False):
        return  # done already
    info = getattr(descriptor, "parameter_info", None)
    if any(getattr(info, a, None) for a in ("parser", "click_type", "exists", "resolve_path")):
        return
    if getattr(descriptor, "choices", None) is not None:
        return
    annotation = descriptor.annotation
    multi = param.nargs != 1 or param.multiple
    kind = annotation
    if multi:  # list[str] or list[Path] only
        is_list = getattr(annotation, "__origin__", None) is list
        kind = (getattr(annotation, "__args__", None) or (None,))[0] if is_list else None
    textual = kind in (str, Path)

    def process_value(ctx: Any, value: Any) -> Any:
        source = getattr(ctx.get_parameter_source(param.name), "name", "")
        if source == "DEFAULT" and value is None and not param.required:
            quick: Any = () if multi else None
        elif source == "DEFAULT" and not multi and type(value) is annotation:
            quick = value  # a declared default: already what the annotation says
        elif textual and not multi and isinstance(value, str):
            quick = kind(value)
        elif (
            textual
            and multi
            and isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, str) for v in value)
        ):
            quick = [kind(v) for v in value]
        else:
            return original(ctx, value)
        return param.callback(ctx, param, quick) if param.callback is not None else quick

    process_value.quick = True  # type: ignore[attr-defined]
    param.process_value = process_value


def _quick_params(owner: Any) -> None:
    """`owner.get_params` (a command's or group's) gives lightly coerced parameters."""
    get_params = owner.get_params

    def quick(ctx: Any) -> list[Any]:
        params = get_params(ctx)
        for param in params:
            _quick_coercion(param)
        return params

    owner.get_params = quick


def _readable_param(param: Any) -> None:
    _quick_coercion(param)
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
    if param.param_type_name == "argument":
        shown = param.metavar
        if param.required and not shown.startswith("["):
            param.make_metavar = lambda ctx=None, usage=False: shown  # no {braces} around it
        # Typer 0.29 names arguments through methods of its own: the usage line shows the word
        # as written (not `{RUN}`, `[[DIR]]`), and no Python type (`<path>`) stands beside it
        param._usage_display_name = lambda: shown
        param.display_type_rich = lambda ctx=None: None
    if name in RUN_PARAMS and getattr(param, "_custom_shell_complete", None) is None:
        param._custom_shell_complete = run_ids
    if name in EXPERIENCE_PARAMS and getattr(param, "_custom_shell_complete", None) is None:
        param._custom_shell_complete = experience_dirs


def readable(commands: dict[str, Any], group: Any = None) -> dict[str, Any]:
    """A Click group's commands in the loop's order, their parameters readably named and
    completed (cli.py's group calls this on the commands Typer built); the parameters Typer
    adds when parsing (--help, completion) of the commands and of `group` are coerced lightly
    too."""
    for owner in [*commands.values(), *([group] if group is not None else [])]:
        _quick_params(owner)
    order = {name: i for i, name in enumerate(LOOP_ORDER)}
    names = sorted(commands, key=lambda n: (order.get(n, len(order)), n))
    for command in commands.values():
        for param in command.params:
            _readable_param(param)
    return {name: commands[name] for name in names}
