"""The spec commands from the command line: validate, schema, graph, --version, and help.

Every expectation is the exact text a user sees. Tests run inside the repository root (for
examples/starter) or inside tmp_path (for experiences built on the spot), so the CLI prints
relative paths and nothing needs normalising; the one absolute-path test replaces tmp_path only.
"""

from __future__ import annotations

import json
import textwrap
from importlib import metadata, resources
from pathlib import Path

import jsonschema
import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from evolve.cli import app
from evolve.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]

runner = CliRunner()

STARTER_SUMMARY = (
    "examples/starter/experience.yaml: ok (starter 0.1.0: 4 nodes, 3 edges, 4 state fields)\n"
)

STARTER_GRAPH = """\
flowchart TD
  subgraph phase_load["load"]
    s_load_text["<b>load_text</b><br/>tool"]
    s_split["<b>split</b><br/>tool"]
  end
  subgraph phase_count["count"]
    s_count_words["<b>count_words</b><br/>tool<br/>for_each $.paragraphs, ≤2"]
  end
  subgraph phase_report["report"]
    s_total["<b>total</b><br/>tool"]
  end
  s_load_text --> s_split
  s_split --> s_count_words
  s_count_words -->|"when length($.counts) #gt; 0"| s_total
"""

# Two problems on known lines: a missing tool file and a misspelt edge target.
BAD = """\
name: bad
version: 0.1.0
graph:
  nodes:
    - {id: review, kind: tool, impl: tools/missing.py}
  edges:
    - {from: review, to: reveiw}
"""
BAD_PROBLEMS = [
    "bad/experience.yaml:5:38: tool file 'tools/missing.py' does not exist [$.graph.nodes[0].impl]",
    "bad/experience.yaml:7:26: edge 'to' names unknown node 'reveiw'; did you mean 'review'? "
    "[$.graph.edges[0].to]",
]

# Every node kind, a pipeline, a loop, a frozen node, an empty phase, and a `when` that needs
# escaping for Mermaid.
GROUPS = """\
name: groups
version: 1.2.3
state:
  schema:
    docs: {type: array, default: []}
    notes: {type: array, merge: array_append, default: []}
    score: {type: integer, default: 0}
    label: {type: string, default: ""}
phases: [{id: prepare}, {id: unused}]
graph:
  nodes:
    - {id: fetch, kind: dataset, phase: prepare, source: {type: file, uri: data/docs.jsonl},
       writes: [docs]}
    - {id: clean, kind: tool, impl: tools/t.py, frozen: true}
    - {id: review, kind: agent, prompt: prompts/review.md, reads: [docs], writes: [notes]}
    - {id: improve, kind: experience, impl: child, writes: [score]}
    - {id: publish, kind: tool, impl: tools/t.py, reads: [score, label]}
  pipelines:
    - {id: per_doc, items: $.docs, stages: [clean, review]}
  loops:
    - {id: polish, body: improve, until: '$.score >= 3', max_iters: 5}
  edges:
    - {from: fetch, to: per_doc}
    - {from: per_doc, to: polish}
    - {from: polish, to: publish, when: '$.label == "a|b" && $.score > 0'}
"""
GROUPS_FILES = {
    "tools/t.py": "def run(inputs):\n    return {}\n",
    "data/docs.jsonl": '{"q": 1}\n',
    "prompts/review.md": "Review {{ docs }}\n",
    "child/experience.yaml": "name: child\nversion: 0.1.0\ngraph:\n  nodes:\n"
    "    - {id: only, kind: tool, impl: tools/t.py}\n",
    "child/tools/t.py": "def run(inputs):\n    return {}\n",
}
GROUPS_GRAPH = """\
flowchart TD
  subgraph phase_prepare["prepare"]
    s_fetch[("<b>fetch</b><br/>dataset")]
  end
  s_publish["<b>publish</b><br/>tool"]
  subgraph s_per_doc["pipeline per_doc: each of $.docs"]
    s_clean["<b>clean</b><br/>tool<br/>frozen"]
    s_review(["<b>review</b><br/>agent"])
    s_clean --> s_review
  end
  subgraph s_polish["loop polish: until $.score #gt;= 3, ≤5 times"]
    s_improve[["<b>improve</b><br/>experience"]]
  end
  s_fetch --> s_per_doc
  s_per_doc --> s_polish
  s_polish -->|"when $.label == #quot;a#124;b#quot; #amp;#amp; $.score #gt; 0"| s_publish
"""


def build(root: Path, spec: str, files: dict[str, str] | None = None) -> Path:
    """Write experience.yaml and its files under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "experience.yaml").write_text(textwrap.dedent(spec), encoding="utf-8")
    for name, content in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content, encoding="utf-8")
    return root


def assert_clean_exit(result, code: int) -> None:
    """Exited with `code` through typer.Exit, no traceback anywhere."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


@pytest.fixture(autouse=True)
def _one_line_errors(monkeypatch):
    monkeypatch.delenv("EVOLVE_RAISE_ERRORS", raising=False)


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- validate ------------------------------------------------------------------------------------


def test_validate_starter_prints_a_summary_and_exits_0(in_repo):
    result = runner.invoke(app, ["validate", "examples/starter"])
    assert_clean_exit(result, 0)
    assert result.stdout == STARTER_SUMMARY
    assert result.stderr == ""


def test_validate_takes_the_yaml_file_itself(in_repo):
    result = runner.invoke(app, ["validate", "examples/starter/experience.yaml"])
    assert_clean_exit(result, 0)
    assert result.stdout == STARTER_SUMMARY


def test_validate_reports_every_problem_of_every_path_and_exits_2(in_tmp):
    build(in_tmp / "bad", BAD)
    build(in_tmp / "good", GROUPS, GROUPS_FILES)
    result = runner.invoke(app, ["validate", "good", "bad"])
    assert_clean_exit(result, 2)
    assert result.stdout.splitlines() == [
        *BAD_PROBLEMS,
        "good/experience.yaml: ok (groups 1.2.3: 5 nodes, 3 edges, 4 state fields)",
    ]
    assert result.stderr == "2 problems in 1 file\n"


def test_validate_counts_problems_across_files(in_tmp):
    build(in_tmp / "bad", BAD)
    result = runner.invoke(app, ["validate", "bad", "nope"])
    assert_clean_exit(result, 2)
    assert result.stdout.splitlines() == [*BAD_PROBLEMS, "nope:1:1: no such file [$]"]
    assert result.stderr == "3 problems in 2 files\n"


def test_validate_json_lists_valid_experiences_and_problems(in_tmp):
    build(in_tmp / "bad", BAD)
    build(in_tmp / "good", GROUPS, GROUPS_FILES)
    result = runner.invoke(app, ["validate", "--json", "good", "bad"])
    assert_clean_exit(result, 2)
    assert result.stderr == ""
    assert json.loads(result.stdout) == {
        "valid": [
            {
                "file": "good/experience.yaml",
                "name": "groups",
                "version": "1.2.3",
                "nodes": 5,
                "edges": 3,
                "state_fields": 4,
            }
        ],
        "problems": [
            {
                "file": "bad/experience.yaml",
                "line": 5,
                "col": 38,
                "message": "tool file 'tools/missing.py' does not exist",
                "json_path": "$.graph.nodes[0].impl",
            },
            {
                "file": "bad/experience.yaml",
                "line": 7,
                "col": 26,
                "message": "edge 'to' names unknown node 'reveiw'; did you mean 'review'?",
                "json_path": "$.graph.edges[0].to",
            },
        ],
    }


def test_validate_json_of_a_valid_experience_exits_0(in_repo):
    result = runner.invoke(app, ["validate", "examples/starter", "--json"])
    assert_clean_exit(result, 0)
    assert json.loads(result.stdout) == {
        "valid": [
            {
                "file": "examples/starter/experience.yaml",
                "name": "starter",
                "version": "0.1.0",
                "nodes": 4,
                "edges": 3,
                "state_fields": 4,
            }
        ],
        "problems": [],
    }


def test_validate_of_a_missing_path_is_one_clear_line(in_tmp):
    result = runner.invoke(app, ["validate", "nope"])
    assert_clean_exit(result, 2)
    assert result.stdout == "nope:1:1: no such file [$]\n"
    assert result.stderr == "1 problem in 1 file\n"


def test_validate_of_a_directory_without_experience_yaml(in_tmp):
    (in_tmp / "empty").mkdir()
    result = runner.invoke(app, ["validate", "empty"])
    assert_clean_exit(result, 2)
    assert result.stdout == "empty/experience.yaml:1:1: no experience.yaml in empty [$]\n"
    assert result.stderr == "1 problem in 1 file\n"


def test_validate_names_a_path_outside_the_current_directory_as_given(in_repo, tmp_path):
    build(tmp_path / "bad", BAD)
    result = runner.invoke(app, ["validate", str(tmp_path / "bad")])
    assert_clean_exit(result, 2)
    assert result.stdout.replace(str(tmp_path), "TMP").splitlines() == [
        f"TMP/{line}" for line in BAD_PROBLEMS
    ]


def test_validate_without_a_path_is_bad_usage(in_repo):
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Missing argument" in result.stderr


# -- schema --------------------------------------------------------------------------------------


def packaged_schema() -> str:
    return resources.files("evolve.spec").joinpath("experience.schema.json").read_text("utf-8")


def test_schema_prints_the_packaged_draft_2020_12_schema():
    result = runner.invoke(app, ["schema"])
    assert_clean_exit(result, 0)
    assert result.stderr == ""
    assert result.stdout == packaged_schema()
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_printed_schema_accepts_the_starter_and_rejects_a_typo():
    validator = jsonschema.Draft202012Validator(json.loads(runner.invoke(app, ["schema"]).stdout))
    starter = yaml.safe_load((ROOT / "examples/starter/experience.yaml").read_text("utf-8"))
    assert list(validator.iter_errors(starter)) == []
    starter["graph"]["nodes"][0]["kindd"] = "tool"
    assert list(validator.iter_errors(starter)) != []


def test_schema_write_creates_the_file_and_its_folders(in_tmp):
    result = runner.invoke(app, ["schema", "--write", "editor/schemas/experience.schema.json"])
    assert_clean_exit(result, 0)
    assert result.stdout == ""
    assert result.stderr == "wrote editor/schemas/experience.schema.json\n"
    written = in_tmp / "editor/schemas/experience.schema.json"
    assert written.read_text("utf-8") == packaged_schema()


def test_schema_write_to_an_unwritable_path_is_one_clear_line(in_tmp):
    (in_tmp / "taken").mkdir()
    result = runner.invoke(app, ["schema", "--write", "taken"])
    assert_clean_exit(result, 1)
    assert result.stdout == ""
    assert result.stderr == "error: cannot write taken: Is a directory\n"


# -- graph ---------------------------------------------------------------------------------------


def test_graph_of_the_starter_is_mermaid_with_phases(in_repo):
    result = runner.invoke(app, ["graph", "examples/starter"])
    assert_clean_exit(result, 0)
    assert result.stderr == ""
    assert result.stdout == STARTER_GRAPH


def test_graph_draws_pipelines_and_loops_as_subgraphs(in_tmp):
    build(in_tmp / "groups", GROUPS, GROUPS_FILES)
    result = runner.invoke(app, ["graph", "groups/experience.yaml"])
    assert_clean_exit(result, 0)
    assert result.stdout == GROUPS_GRAPH
    assert '  subgraph s_per_doc["pipeline per_doc: each of $.docs"]' in result.stdout.splitlines()
    assert any(line.startswith("  subgraph s_polish[") for line in result.stdout.splitlines())


def test_graph_of_an_invalid_experience_prints_its_problems_and_exits_2(in_tmp):
    build(in_tmp / "bad", BAD)
    result = runner.invoke(app, ["graph", "bad"])
    assert_clean_exit(result, 2)
    assert result.stdout == ""
    assert result.stderr.splitlines() == BAD_PROBLEMS


def test_graph_of_a_missing_path_is_one_clear_line(in_tmp):
    result = runner.invoke(app, ["graph", "nope"])
    assert_clean_exit(result, 2)
    assert result.stdout == ""
    assert result.stderr == "nope:1:1: no such file [$]\n"


def test_graph_of_a_directory_without_experience_yaml(in_tmp):
    (in_tmp / "empty").mkdir()
    result = runner.invoke(app, ["graph", "empty"])
    assert_clean_exit(result, 2)
    assert result.stderr == "empty/experience.yaml:1:1: no experience.yaml in empty [$]\n"


def test_evolve_raise_errors_shows_the_exception_instead(in_tmp):
    result = runner.invoke(app, ["graph", "nope"], env={"EVOLVE_RAISE_ERRORS": "1"})
    assert isinstance(result.exception, SpecError)
    assert str(result.exception) == "nope:1:1: no such file [$]"


# -- version and help ----------------------------------------------------------------------------


def test_version_prints_the_installed_version():
    result = runner.invoke(app, ["--version"])
    assert_clean_exit(result, 0)
    assert result.stdout == f"evolve {metadata.version('evolve')}\n"


def test_the_spec_commands_are_registered():
    assert {"validate", "schema", "graph"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    assert (command.help or "").strip(), f"`evolve {name}` has no help text"
    result = runner.invoke(app, [name, "--help"])
    assert_clean_exit(result, 0)
    assert result.stdout.startswith(f"Usage: evolve {name} ")
    assert command.help.strip().splitlines()[0] in " ".join(result.stdout.split())


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert_clean_exit(result, 0)
    assert result.stdout.startswith("Usage: evolve [OPTIONS] COMMAND [ARGS]...")
    listed = result.stdout.split("Commands:", 1)[1].split()
    for name in COMMANDS:
        assert name in listed


def test_graph_ids_never_collide_with_mermaid_words(tmp_path):
    root = tmp_path / "words"
    (root / "tools").mkdir(parents=True)
    (root / "tools" / "t.py").write_text("def run(inputs):\n    return {}\n")
    (root / "experience.yaml").write_text(
        "name: words\nversion: 0.1.0\ngraph:\n  nodes:\n"
        "    - {id: end, kind: tool, impl: tools/t.py}\n"
        "    - {id: style, kind: tool, impl: tools/t.py}\n"
        "  edges:\n    - {from: end, to: style}\n"
    )
    result = runner.invoke(app, ["graph", str(root)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert '  s_end["<b>end</b><br/>tool"]' in lines
    assert "  s_end --> s_style" in lines
    assert not any(line.strip().startswith(("end[", "end -->")) for line in lines)
