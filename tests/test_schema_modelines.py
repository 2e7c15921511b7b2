"""Every `# yaml-language-server: $schema=...` line a user sees resolves for that user, and names
the schema this evolve checks against. The decision (docs/experience.md, "Editor support"): an
experience keeps its schema beside it as `experience.schema.json` and points at it with
`$schema=./experience.schema.json`; `evolve init` writes that pair, `evolve schema --write` writes
the file, and every example ships the pair, so a copied example or a PyPI install needs nothing
from evolve's own checkout."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from evolve.scaffold import TEMPLATES, create_experience
from evolve.spec import schema_text

ROOT = Path(__file__).resolve().parent.parent
# anywhere in a line: a page also quotes the line inside prose; `<...>` is a placeholder
MODELINE = re.compile(r"#\s*yaml-language-server:\s*\$schema=([^\s`<]+)")
BESIDE = "./experience.schema.json"
TEMPLATES_DIR = ROOT / "src" / "evolve" / "templates"


def repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def modelines() -> list[tuple[Path, str]]:
    found = []
    for path in repository_files():
        if path.suffix not in {".yaml", ".yml", ".md"}:
            continue
        found += [(path, target) for target in MODELINE.findall(path.read_text("utf-8"))]
    return found


def test_the_repository_has_modelines_to_check():
    files = {path.relative_to(ROOT).as_posix() for path, _ in modelines()}
    assert {f"examples/{name}/experience.yaml" for name in ("starter", "review-branch")} <= files
    assert "docs/experience.md" in files
    assert {f"src/evolve/templates/{t}/experience.yaml" for t in TEMPLATES} <= files


@pytest.mark.parametrize("path, target", modelines(), ids=lambda v: str(v).replace(str(ROOT), ""))
def test_a_modeline_resolves_to_the_current_schema(path, target, tmp_path):
    where = path.relative_to(ROOT).as_posix()
    if path.suffix == ".md" or path.is_relative_to(TEMPLATES_DIR):
        # A page shows an experience.yaml, and a template becomes one under `evolve init`:
        # either way the schema is the file written beside that experience.
        assert target == BESIDE, f"{where}: $schema={target}; an experience points at {BESIDE}"
        return
    schema = (path.parent / target).resolve()
    assert schema.is_file(), f"{where}: $schema={target} does not exist beside it"
    assert schema.read_text("utf-8") == schema_text(), (
        f"{schema.relative_to(ROOT)} differs from the package's schema; refresh it with "
        f"`evolve schema --write {schema.relative_to(ROOT)}`"
    )


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_a_new_experience_gets_the_schema_its_modeline_names(template, tmp_path):
    made = tmp_path / "mine"
    create_experience(made, template)
    [target] = MODELINE.findall((made / "experience.yaml").read_text("utf-8"))
    assert (made / target).read_text("utf-8") == schema_text()
