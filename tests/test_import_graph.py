"""The package's import graph, read with `ast`: no cycles, and each layer imports only what it
may. typer only in cli.py; rich only in cli.py and report/; spec/ imports nothing else of evolve;
the runtime imports neither report/ nor advisor/; the model boundary (llm/) imports neither the
runtime nor the advisor; the store imports no layer above it."""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "evolve"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py") if "starter" not in p.parts}


def imports_of(path: Path) -> set[str]:
    """Every module an import statement in `path` names (lazy and TYPE_CHECKING ones too);
    `from package import module` names the module, not the package's face."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named = {f"{node.module}.{alias.name}" for alias in node.names}
            submodules = named & MODULES.keys()
            found.update(submodules)
            if submodules != named:
                found.add(node.module)
    return found


GRAPH = {
    name: {i for i in imports_of(path) if i in MODULES and i != name}
    for name, path in MODULES.items()
}


def external(name: str) -> set[str]:
    return {i.partition(".")[0] for i in imports_of(MODULES[name])}


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_there_are_no_import_cycles():
    try:
        TopologicalSorter(GRAPH).prepare()
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_only_the_cli_imports_typer():
    assert [n for n in MODULES if "typer" in external(n) or "click" in external(n)] == [
        "evolve.cli"
    ]


def test_only_the_cli_and_report_import_rich():
    users = sorted(n for n in MODULES if "rich" in external(n))
    assert users and all(n == "evolve.cli" or within(n, "evolve.report") for n in users)


@pytest.mark.parametrize(
    ("layer", "allowed"),
    [
        ("evolve.spec", ("evolve.spec", "evolve.errors", "evolve.jsonvalue")),
        ("evolve.errors", ()),  # the leaves every layer may use import nothing of evolve
        ("evolve.jsonvalue", ()),
        ("evolve.redaction", ()),
        ("evolve.evals.summary", ()),
        ("evolve.llm", ("evolve.llm", "evolve.errors", "evolve.redaction", "evolve.jsonvalue")),
        (
            "evolve.store",
            (
                "evolve.store",
                "evolve.errors",
                "evolve.events",
                "evolve.redaction",
                "evolve.view",
                "evolve.jsonvalue",
                "evolve.evals.summary",  # a leaf: suite figures for the listing
            ),
        ),
        (
            "evolve.runtime",
            (
                "evolve.runtime",
                "evolve.spec",
                "evolve.llm",
                "evolve.store",
                "evolve.events",
                "evolve.errors",
                "evolve.jsonvalue",
                "evolve.redaction",
                "evolve.evals.scoring",  # a run scores itself with its evals
            ),
        ),
    ],
)
def test_each_layer_imports_only_below_it(layer, allowed):
    wrong = sorted(
        f"{name} imports {dep}"
        for name, deps in GRAPH.items()
        if within(name, layer)
        for dep in deps
        if not within(dep, *allowed) and dep != "evolve"
    )
    assert wrong == []


def test_runtime_imports_neither_report_nor_advisor():
    wrong = [
        (n, d)
        for n, deps in GRAPH.items()
        if within(n, "evolve.runtime")
        for d in deps
        if within(d, "evolve.report", "evolve.advisor")
    ]
    assert wrong == []


def test_litellm_is_imported_only_by_the_model_client():
    assert [n for n in MODULES if "litellm" in external(n)] == ["evolve.llm.client"]


def only_a_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text("utf-8")).body
    return len(body) <= 1 and all(isinstance(n, ast.Expr) for n in body)


def test_the_readme_lists_every_module():
    """Every module with code, one line each, in the README's layout (a package whose
    __init__.py is only its docstring needs no line of its own)."""
    readme = (SRC.parent / "README.md").read_text("utf-8")
    listed = set(re.findall(r"^  ([a-z_/]+\.py) ", readme, re.MULTILINE))
    modules = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "templates" not in path.parts
        and path.name != "__main__.py"
        and not (path.name == "__init__.py" and only_a_docstring(path))
    }
    assert sorted(modules - listed) == [], "add these to the README's layout"
    assert sorted(listed - modules) == [], "the README lists modules that are gone"
