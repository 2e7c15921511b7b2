"""`evolve graph DIR --html FILE`: an experience's graph as one self-contained page, before any run.

Checked as text (every box, edge and label, escaping, no network) and in headless Chromium (the
script runs, the page fits 1280 px); a screenshot is left in `test-artifacts/`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from evolve.report.graph import graph_page
from evolve.spec import load_experience
from helpers import build
from pages import CHROMIUM_FLAGS, Elements, chromium

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

runner = CliRunner()

# Every node kind, a pipeline, a loop, a frozen node, and text that must be escaped.
SPEC = """\
name: groups
version: 1.2.3
description: Checks <script>alert('x')</script> & more.
state:
  schema:
    docs: {type: array, default: []}
    notes: {type: array, merge: array_append, default: []}
    score: {type: integer, default: 0}
    label: {type: string, default: ""}
phases: [{id: prepare}]
graph:
  nodes:
    - {id: fetch, kind: dataset, phase: prepare, source: {type: file, uri: data/docs.jsonl},
       writes: [docs]}
    - {id: clean, kind: tool, impl: tools/t.py, frozen: true, description: "strips <b>tags</b>"}
    - {id: review, kind: agent, prompt: prompts/review.md, reads: [docs], writes: [notes]}
    - {id: improve, kind: experience, impl: child, writes: [score]}
    - {id: publish, kind: tool, impl: tools/t.py, reads: [score, label],
       for_each: {source: $.docs, concurrency: 2}, on_error: {policy: retry, attempts: 2}}
    - {id: check, kind: skill, skill: skills/checker, prompt: prompts/review.md, reads: [docs],
       writes: [label]}
    - {id: fix, kind: cli-agent, provider: codex, prompt: prompts/review.md, workdir: work,
       reads: [docs],
       writes: [notes]}
  pipelines:
    - {id: per_doc, items: $.docs, stages: [clean, review]}
  loops:
    - {id: polish, body: improve, until: '$.score >= 3', max_iters: 5}
  edges:
    - {from: fetch, to: per_doc}
    - {from: per_doc, to: polish}
    - {from: polish, to: publish, when: '$.label == "a<b" && $.score > 0'}
    - {from: fetch, to: check}
    - {from: check, to: fix}
"""
FILES = {
    "tools/t.py": "def run(inputs):\n    return {}\n",
    "data/docs.jsonl": '{"q": 1}\n',
    "prompts/review.md": "Review {{ docs }}\n",
    "child/experience.yaml": "name: child\nversion: 0.1.0\ngraph:\n  nodes:\n"
    "    - {id: only, kind: tool, impl: tools/t.py}\n",
    "child/tools/t.py": "def run(inputs):\n    return {}\n",
    "skills/checker/SKILL.md": "---\nname: checker\ndescription: Checks docs.\n---\nCheck.\n",
}


@pytest.fixture(scope="module")
def experience_dir(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("graph") / "groups", SPEC, FILES)


@pytest.fixture(scope="module")
def page(experience_dir) -> str:
    return graph_page(load_experience(experience_dir))


def boxes(page: str) -> dict[str, dict[str, str]]:
    return {a["data-node"]: a for a in Elements(page).having("node", "g")}


def test_every_node_pipeline_and_loop_is_a_box_of_its_kind(page):
    assert {k: a["data-kind"] for k, a in boxes(page).items()} == {
        "fetch": "dataset",
        "publish": "tool",
        "check": "skill",
        "fix": "cli-agent",
        "per_doc": "pipeline",
        "polish": "loop",
        "clean": "tool",
        "review": "agent",
        "improve": "experience",
    }
    assert "frozen" in boxes(page)["clean"]["class"].split()
    assert "kd-group" in boxes(page)["polish"]["class"].split()
    assert not any("data-status" in a for a in boxes(page).values())  # no run, no status


def test_edges_and_dashed_member_edges_run_left_to_right(page):
    edges = {
        (a["data-from"], a["data-to"], "inner" in a["class"].split())
        for a in Elements(page).having("edge", "path")
    }
    assert edges == {
        ("fetch", "per_doc", False),
        ("per_doc", "polish", False),
        ("polish", "publish", False),
        ("fetch", "check", False),
        ("check", "fix", False),
        ("per_doc", "clean", True),
        ("clean", "review", True),
        ("polish", "improve", True),
    }
    x = {}
    for key, a in boxes(page).items():
        found = re.fullmatch(r"translate\(([\d.]+),([\d.]+)\)", a["transform"])
        assert found, a["transform"]
        x[key] = float(found.group(1))
    for source, target, _ in edges:
        assert x[source] < x[target], (source, target)


def test_box_texts_and_the_when_label_are_escaped(page):
    assert "when $.label == &#34;a&lt;b&#34; &amp;&amp; $.score &gt; 0</text>" in page
    assert '<text class="sub" x="30" y="41">loop · until $.score &gt;= 3 · ≤5</text>' in page
    assert '<text class="sub" x="30" y="41">tool · for_each $.docs</text>' in page
    assert '<text class="sub" x="30" y="41">tool · frozen</text>' in page
    assert "Checks &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more." in page
    assert "strips &lt;b&gt;tags&lt;/b&gt;" in page
    assert page.count("<script") == 1 and "<b>" not in page


def test_the_tables_list_nodes_and_state_fields(page):
    rows = Elements(page).having("node-row", "tr")
    assert [(r["data-node"], r["data-kind"]) for r in rows] == [
        ("fetch", "dataset"),
        ("publish", "tool"),
        ("check", "skill"),
        ("fix", "cli-agent"),
        ("per_doc", "pipeline"),
        ("polish", "loop"),
        ("clean", "tool"),
        ("review", "agent"),
        ("improve", "experience"),
    ]
    fields = [r["data-field"] for r in Elements(page).having("field-row", "tr")]
    assert fields == ["docs", "notes", "score", "label"]
    assert "<code>$.docs, ≤2 at once</code>" in page
    assert "<td>retry ×2, then fail_run</td>" in page
    assert "<code>stages clean → review for each of $.docs</code>" in page
    assert "<code>prompts/review.md</code>" in page
    assert "<code>skills/checker/</code>" in page
    assert "<code>codex · prompts/review.md</code>" in page
    assert "<code>data/docs.jsonl</code>" in page
    assert "<td><code>docs</code></td><td>array</td><td>last_wins</td><td>fetch</td>" in page
    assert (
        "<td><code>notes</code></td><td>array</td><td>array_append</td><td>review, fix</td>" in page
    )


def test_the_page_is_self_contained(page):
    for _, attrs in Elements(page).found:
        for name, value in attrs.items():
            assert "http://" not in value and "https://" not in value, (name, value)
            assert name not in ("src", "href", "xlink:href"), (name, value)
    assert "<link" not in page and "@import" not in page
    assert "<style>" in page and "<script>" in page and "<svg" in page


def test_graph_html_writes_the_page_and_prints_only_where_it_went(experience_dir, page, tmp_path):
    target = tmp_path / "deep" / "graph.html"
    result = runner.invoke(app, ["graph", str(experience_dir), "--html", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == f"wrote {target}\n"
    assert target.read_text(encoding="utf-8") == page


def test_graph_html_of_an_invalid_experience_writes_nothing_and_exits_2(tmp_path):
    bad = build(tmp_path / "bad", SPEC.replace("to: publish", "to: pubish"), FILES)
    target = tmp_path / "graph.html"
    result = runner.invoke(app, ["graph", str(bad), "--html", str(target)])
    assert result.exit_code == 2
    assert "edge 'to' names unknown node 'pubish'; did you mean 'publish'?" in result.stderr
    assert not target.exists()


def test_graph_html_to_an_unwritable_path_is_one_clear_line(experience_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "graph.html"
    result = runner.invoke(app, ["graph", str(experience_dir), "--html", str(target)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot write {target}: ")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.slow
def test_the_graph_page_in_headless_chromium(page, tmp_path):
    browser = chromium()
    path = tmp_path / "graph.html"
    path.write_text(page, encoding="utf-8")
    probe = (
        "<script>document.body.dataset.scrollWidth = "
        "String(document.documentElement.scrollWidth);</script></body>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe), encoding="utf-8")
    dom = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile-dom'}",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stdout[:500]
    assert 'data-ready="1"' in body.group(0), "the page's script did not run to its end"
    width = int(re.search(r'data-scroll-width="(\d+)"', body.group(0)).group(1))
    assert width <= 1280, f"the page overflows sideways ({width}px)"
    assert set(boxes(dom.stdout)) == set(boxes(page))

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "graph-html.png"
    shot.unlink(missing_ok=True)
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}",
         f"--screenshot={shot}", path.as_uri()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 20_000, "the screenshot is missing or blank"
