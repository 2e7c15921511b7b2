"""The documentation follows the code: every schema field, every command and option, every link.

These fail when a field of experience.yaml, a command or an option is added or renamed without
docs/ saying so, or when a relative link in docs/*.md or README.md points at nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from evolve.cli import app
from evolve.spec import schema_text

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = (
    "getting-started.md",
    "experience.md",
    "cli.md",
    "proposals.md",
    "models.md",
    "evals.md",
    "resume.md",
    "exploring.md",
    "github-action.md",
)
SCHEMA = json.loads(schema_text())
GROUP = typer.main.get_command(app)
COMMANDS: dict[str, Any] = GROUP.commands  # type: ignore[attr-defined]


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# -- helpers -------------------------------------------------------------------------------------


def property_names(schema: Any) -> set[str]:
    """Every key of every `properties` object, at any depth ($defs and if/then branches too).

    The walk is structural: the keys of a `properties` object are names, and their values are
    schemas to walk again, so a field keyword named `properties` counts once as a name.
    """
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "properties" and isinstance(value, dict):
                    names.update(value)
                    for sub in value.values():
                        walk(sub)
                else:
                    walk(value)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    walk(schema)
    return names


def missing_in_backticks(text: str, names: set[str]) -> list[str]:
    return sorted(n for n in names if f"`{n}`" not in text)


def option_names(command: Any) -> list[str]:
    """`--max-cost`, `--json`...: the option strings of a command (Typer bundles its own click,
    so options are told by `param_type_name`, not by class)."""
    return [
        name
        for param in command.params
        if param.param_type_name == "option"
        for name in (*param.opts, *param.secondary_opts)
    ]


def mentions_option(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def command_section(text: str, command: str) -> str | None:
    """The body of the heading that names `evolve <command>` (`run` is not `runs`), or None."""
    pattern = re.compile(rf"^(#+) .*\bevolve {re.escape(command)}(?![\w-]).*$", re.MULTILINE)
    match = pattern.search(text)
    if match is None:
        return None
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, match.end())
    return text[match.end() : end.start() if end else len(text)]


def without_fences(text: str) -> str:
    """The Markdown with fenced code blocks removed: a `# comment` there is not a heading."""
    kept, fence = [], None
    for line in text.splitlines():
        stripped = line.strip()
        opening = re.match(r"(`{3,}|~{3,})", stripped)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and stripped.startswith(fence) and not stripped.strip(fence[0]):
            fence = None
        elif fence is None:
            kept.append(line)
    return "\n".join(kept)


def without_code(text: str) -> str:
    """The Markdown with fenced blocks and inline code removed: links there are not links."""
    return re.sub(r"(`+).+?\1", "", without_fences(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = without_fences(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE):
        base, n = slug(heading), 0
        name = base
        while name in found:
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in LINK.findall(without_code(page.read_text(encoding="utf-8"))):
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path_part, _, fragment = target.partition("#")
        file = (page.parent / path_part).resolve() if path_part else page
        if not file.exists():
            problems.append(f"{page.name}: {target} (no such file)")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            problems.append(f"{page.name}: {target} (no heading '#{fragment}' in {file.name})")
    return problems


# -- the helpers can fail ------------------------------------------------------------------------


def test_the_schema_walk_finds_names_at_every_depth():
    names = property_names(SCHEMA)
    # top level, runtime, graph lists, node kinds (if/then branches), dataset source, state fields
    expected = {"name", "timeout_ms", "max_iters", "stages", "when", "frozen", "prompt", "impl"}
    expected |= {"temperature", "query", "format", "base_ms", "then", "merge", "maxProperties"}
    expected |= {"properties", "additionalProperties", "not"}
    assert expected <= names
    # schema keywords that are not property names stay out
    assert not {"$defs", "$ref", "if", "unevaluatedProperties", "propertyNames"} & names


def test_the_backtick_check_reports_what_is_missing():
    assert missing_in_backticks("`name` and version and `graph`", {"name", "version", "graph"}) == [
        "version"
    ]


def test_the_command_and_option_checks_can_fail():
    assert "run" in COMMANDS and "--offline" in option_names(COMMANDS["run"])
    assert "--max-cost" in option_names(COMMANDS["run"])
    text = "## `evolve runs`\n\n`--limit`\n\n## `evolve run`\n\n`--json`\n"
    assert command_section(text, "run") == "\n\n`--json`\n"
    assert command_section(text, "state") is None
    assert mentions_option("`--json`", "--json") and not mentions_option("--json-lines", "--json")


def test_the_link_check_can_fail(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md) [ok](other.md#a-section) [web](https://example.com) [self](#top)\n"
        "# Top\n[gone](missing.md) [bad anchor](other.md#nope)\n"
        "```\n[in code](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#nope (no heading '#nope' in other.md)",
    ]


# -- the docs ------------------------------------------------------------------------------------


def test_every_doc_page_exists():
    assert [p for p in PAGES if not (DOCS / p).is_file()] == []


def test_every_schema_field_is_in_the_experience_reference():
    missing = missing_in_backticks(_read("experience.md"), property_names(SCHEMA))
    assert missing == [], f"docs/experience.md does not mention these schema fields: {missing}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_and_option_is_in_the_cli_reference(name):
    text = _read("cli.md")
    section = command_section(text, name)
    assert section is not None, f"docs/cli.md has no heading for `evolve {name}`"
    missing = [o for o in option_names(COMMANDS[name]) if not mentions_option(section, o)]
    assert missing == [], (
        f"docs/cli.md does not describe these options of `evolve {name}`: {missing}"
    )


def test_the_global_options_are_in_the_cli_reference():
    text = _read("cli.md")
    help_names = GROUP.context_settings.get("help_option_names", ["--help"])
    missing = [o for o in (*option_names(GROUP), *help_names) if not mentions_option(text, o)]
    assert missing == []


@pytest.mark.parametrize(
    "page", [*sorted(DOCS.glob("*.md")), ROOT / "README.md"], ids=lambda p: p.name
)
def test_relative_links_point_at_files_and_headings(page):
    assert broken_links(page) == []


def test_the_readme_links_every_doc_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [p for p in PAGES if f"](docs/{p})" not in readme] == []
