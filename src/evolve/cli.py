"""The `evolve` command line: parse, call one core function, render. Nothing else lives here.

Results go to stdout, progress and errors to stderr. Core code raises `EvolveError`; this module
prints its message and exits with its code (set EVOLVE_RAISE_ERRORS=1 for tracebacks). Heavy
modules (jsonschema, sqlite-utils, litellm) are imported inside the commands that need them, so
`evolve --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from evolve import __version__
from evolve.errors import EvolveError, SpecError

app = typer.Typer(
    name="evolve",
    help="Run LLM agent workflows, record everything, and get reviewable diffs that improve them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def friendly_errors(command: F) -> F:
    """Turn an EvolveError into its message on stderr and its documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EvolveError as exc:
            if os.environ.get("EVOLVE_RAISE_ERRORS") == "1":
                raise
            _err(f"error: {exc}" if not isinstance(exc, SpecError) else str(exc))
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        print(f"evolve {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """Run LLM agent workflows, record everything, and get reviewable diffs that improve them.

    The loop: evolve run DIR -> evolve propose last -> review -> git apply -> evolve run DIR.
    """


def _display(path: Path) -> str:
    """A path as the user would write it: relative to the current directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@app.command()
@friendly_errors
def validate(
    paths: Annotated[list[Path], typer.Argument(
        help="Experience directories or experience.yaml files.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the problems as JSON.")] = False,
) -> None:
    """Check experiences: YAML, keys, types, references, cycles, expressions, files, prompts.

    Prints one line per problem as FILE:LINE:COL: message [json.path] and exits 2 if there is
    any; otherwise a one-line summary per experience and exit 0.
    """
    from evolve.spec import load_experience, resolve_spec_path

    problems, summaries = [], []
    for path in paths:
        try:
            experience = load_experience(path, display=_display(resolve_spec_path(path)))
        except SpecError as exc:
            problems += exc.problems
            continue
        summaries.append({
            "file": _display(experience.spec_path), "name": experience.name,
            "version": experience.version, "nodes": len(experience.nodes),
            "edges": len(experience.edges), "state_fields": len(experience.state),
        })
    if as_json:
        print(json.dumps({"valid": summaries, "problems": [p.__dict__ for p in problems]},
                         indent=2))
    else:
        for problem in problems:
            print(problem)
        for s in summaries:
            print(f"{s['file']}: ok ({s['name']} {s['version']}: {s['nodes']} nodes, "
                  f"{s['edges']} edges, {s['state_fields']} state fields)")
        if problems:
            files = len({p.file for p in problems})
            _err(f"{len(problems)} problem{'s' * (len(problems) != 1)} in {files} "
                 f"file{'s' * (files != 1)}")
    if problems:
        raise typer.Exit(2)


@app.command()
@friendly_errors
def schema(
    write: Annotated[Path | None, typer.Option(
        "--write", help="Write the schema to this file instead of printing it.",
        show_default=False)] = None,
) -> None:
    """Print the JSON Schema of experience.yaml, for editors (yaml-language-server).

    Point an experience at it with a first line such as
    `# yaml-language-server: $schema=./experience.schema.json`.
    """
    from evolve.spec import schema_text

    if write is None:
        sys.stdout.write(schema_text())
        return
    write.parent.mkdir(parents=True, exist_ok=True)
    write.write_text(schema_text(), encoding="utf-8")
    _err(f"wrote {write}")


@app.command()
@friendly_errors
def graph(
    path: Annotated[Path, typer.Argument(help="An experience directory or its experience.yaml.",
                                         show_default=False)],
) -> None:
    """Print an experience's graph as Mermaid (phases as subgraphs; for_each and when marked).

    Paste it into any Mermaid viewer, or a ```mermaid block on GitHub.
    """
    from evolve.report.graph import mermaid
    from evolve.spec import load_experience, resolve_spec_path

    experience = load_experience(path, display=_display(resolve_spec_path(path)))
    sys.stdout.write(mermaid(experience))
