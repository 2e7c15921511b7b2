"""`evolve init --template`: every template validates, runs offline and proposes offline at once,
and points editors at the schema it writes beside experience.yaml."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from evolve.scaffold import TEMPLATES
from evolve.spec import schema_text

SCHEMA_LINE = "# yaml-language-server: $schema=./experience.schema.json"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVOLVE_MODEL", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no agentic CLI, no node: offline means offline
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_the_templates_are_the_four_the_docs_name():
    assert list(TEMPLATES) == ["tool-only", "agent", "cli-agent", "full-pipeline"]


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_a_template_validates_runs_and_proposes_offline(cli, tmp_path, template):
    made = cli("init", "exp", "--template", template)
    assert made.exit_code == 0, made.output
    assert made.stdout.startswith(f"created exp from the {template} template (")
    spec = (tmp_path / "exp" / "experience.yaml").read_text()
    assert spec.splitlines()[0] == SCHEMA_LINE
    assert "__NAME__" not in spec and "name: exp " in spec
    assert (tmp_path / "exp" / "experience.schema.json").read_text() == schema_text()
    assert cli("validate", "exp").exit_code == 0
    ran = cli("run", "exp", "--offline", "--json")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["status"] == "success"
    proposed = cli("propose", "last", "--offline", "--json")
    assert proposed.exit_code == 0, proposed.output
    report = json.loads(proposed.stdout)
    assert report["runs"] == [json.loads(ran.stdout)["run_id"]]
    assert (tmp_path / report["path"]).is_file()


def test_what_each_template_computes_offline(cli):
    expected = {
        "tool-only": ("total", 42),  # 10 + 17 + 15 words
        "agent": ("words", 21),
        "cli-agent": ("words", 11),  # the replayed summary
        "full-pipeline": ("urgent", 1),
    }
    for template, (field, value) in expected.items():
        assert cli("init", template, "-t", template).exit_code == 0
        assert cli("run", template, "--offline").exit_code == 0
        assert json.loads(cli("state", "last", field, "--json").stdout) == value, template


def test_the_full_pipeline_briefs_through_its_skill_and_the_cli_agent_lists_its_files(cli):
    assert cli("init", "full", "-t", "full-pipeline").exit_code == 0
    assert cli("run", "full", "--offline").exit_code == 0
    briefing = cli("state", "last", "briefing").stdout
    assert briefing.startswith("Ticket 1, card payments fail at checkout")
    assert cli("init", "coder", "-t", "cli-agent").exit_code == 0
    assert cli("run", "coder", "--offline").exit_code == 0
    events = [json.loads(line) for line in cli("inspect", "last", "--events").stdout.splitlines()]
    [call] = [e for e in events if e["type"] == "cli.call"]
    assert call["replayed"] is True
    assert [f["path"] for f in call["files_changed"]] == ["hello.py", "test_hello.py"]


def test_list_templates_names_each_with_what_it_holds(cli):
    listed = cli("init", "--list-templates")
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == list(TEMPLATES)


def test_an_unknown_template_is_a_usage_error_with_a_hint(cli, tmp_path):
    made = cli("init", "exp", "--template", "tool_only")
    assert made.exit_code == 2
    assert "no template 'tool_only'; did you mean 'tool-only'?" in made.stderr
    assert not (tmp_path / "exp").exists()


def test_init_needs_a_directory_unless_listing(cli):
    made = cli("init")
    assert made.exit_code == 2 and "give a DIR" in made.stderr
