"""Rules the test suite keeps so it cannot flake on a busy machine and `-m "not slow"` is quick.

- No wall-clock assertion: a test never compares a measured duration (`time.monotonic()`,
  `time.perf_counter()`, `time.time()`) with a bound; timing targets belong in `bench/`.
- A test that is slow by construction is marked `@pytest.mark.slow`: hypothesis property tests,
  tests that start a fresh Python interpreter (`sys.executable`, also through a helper of the same
  module), and the headless browser test.
- The README's development section says how to run the quick suite.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CLOCKS = {"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns", "time_ns"}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text("utf-8"))) for p in sorted(TESTS.glob("test_*.py"))]


def _reads_clock(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in CLOCKS
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "time"
        for n in ast.walk(node)
    )


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def wall_clock_asserts(tree: ast.Module) -> list[int]:
    """Lines of asserts comparing a clock reading (or a name holding one) with a bound."""
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        timed: set[str] = set()
        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and _reads_clock(node.value):
                timed |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(func):
            if not isinstance(node, ast.Assert):
                continue
            for compare in ast.walk(node.test):
                if not isinstance(compare, ast.Compare):
                    continue
                ordered = any(
                    isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE) for op in compare.ops
                )
                if ordered and (_reads_clock(compare) or _names(compare) & timed):
                    found.append(node.lineno)
    return found


def _decorators(func: ast.FunctionDef) -> set[str]:
    names = set()
    for d in func.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        names.add(ast.unparse(target))
    return names


def _module_marked_slow(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            return "pytest.mark.slow" in ast.unparse(node.value)
    return False


def _slow_by_construction(func: ast.FunctionDef, helpers: dict[str, ast.FunctionDef]) -> str:
    """Why `func` is slow by construction, or ''."""
    if {"given", "hypothesis.given"} & _decorators(func):
        return "a hypothesis property test"
    bodies = [func] + [helpers[n] for n in _names(func) if n in helpers and helpers[n] is not func]
    for node in (n for body in bodies for n in ast.walk(body)):
        if ast.unparse(node) == "sys.executable" and isinstance(node, ast.Attribute):
            return "it starts a fresh Python interpreter"
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "chromium":
            return "it drives a headless browser"
    return ""


def unmarked_slow_tests(tree: ast.Module) -> list[tuple[str, str]]:
    if _module_marked_slow(tree):
        return []
    helpers = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    found = []
    for func in helpers.values():
        if not func.name.startswith("test_") or "pytest.mark.slow" in _decorators(func):
            continue
        why = _slow_by_construction(func, helpers)
        if why:
            found.append((func.name, why))
    return found


def test_no_test_asserts_on_the_wall_clock():
    offenders = [
        f"{path.name}:{line}" for path, tree in _modules() for line in wall_clock_asserts(tree)
    ]
    assert offenders == [], "wall-clock assertions flake on a busy machine: " + ", ".join(offenders)


def test_the_wall_clock_rule_sees_an_elapsed_bound():
    sample = ast.parse(
        "def test_x():\n"
        "    began = time.monotonic()\n"
        "    work()\n"
        "    elapsed = time.monotonic() - began\n"
        "    assert elapsed < 1.4\n"
        "    assert time.perf_counter() - began <= 2\n"
    )
    assert wall_clock_asserts(sample) == [5, 6]


def test_tests_that_are_slow_by_construction_are_marked_slow():
    offenders = [
        f"{path.name}::{name} ({why})"
        for path, tree in _modules()
        for name, why in unmarked_slow_tests(tree)
    ]
    assert offenders == [], "mark these @pytest.mark.slow: " + "; ".join(offenders)


def test_the_slow_rule_sees_property_and_interpreter_tests():
    sample = ast.parse(
        "def probe(args):\n"
        "    return subprocess.run([sys.executable, *args])\n"
        "@given(st.integers())\n"
        "def test_property(n):\n"
        "    pass\n"
        "def test_probe():\n"
        "    probe(['-c', 'pass'])\n"
        "@pytest.mark.slow\n"
        "def test_marked():\n"
        "    probe([])\n"
    )
    assert unmarked_slow_tests(sample) == [
        ("test_property", "a hypothesis property test"),
        ("test_probe", "it starts a fresh Python interpreter"),
    ]


def test_the_readme_says_how_to_run_the_quick_suite():
    readme = (ROOT / "README.md").read_text("utf-8")
    assert '-m "not slow"' in readme
