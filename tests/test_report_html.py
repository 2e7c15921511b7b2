"""`evolve inspect RUN --html FILE`: one self-contained page, checked as text and in a real browser.

The browser test runs headless Chromium on the page: it must run the page's script (which sets
`data-ready`), lay the timeline out aligned and within 1280 px, and leave a screenshot in
`test-artifacts/` for people to look at (without Chromium: see tests/pages.py).
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from evolve.report.html import ITEMS_DRAWN, render_html, write_html
from evolve.report.templating import static_text
from evolve.store.queries import Inspection, inspect_run
from evolve.store.workspace import Workspace
from evolve.view import fold
from helpers import build, run, spec, tool
from pages import CHROMIUM_FLAGS, Elements, chromium

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

FLAKY = """
from pathlib import Path

def run(inputs):
    counter = Path(inputs["counter"])
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n == 1:
        raise ConnectionError("reset by peer")
    return {"state_delta": {"greeting": "<script>alert('hi')</script>"}}
"""
FAN = """
def run(i):
    if i["$item"] == 3:
        raise ValueError("item three is <bad>")
    return {"state_delta": {"seen": [i["$item"] * 10]}}
"""
SLOW = "import asyncio\n\nasync def run(inputs):\n    await asyncio.sleep(5)\n"
OK = "def run(inputs):\n    return {}\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A partial run with a retry, a failed for_each item, a timeout and two skipped nodes."""
    root = tmp_path_factory.mktemp("html")
    nodes = [
        tool(
            "greet",
            "tools/flaky.py",
            writes=["greeting"],
            args={"counter": str(root / "count")},
            on_error={"policy": "retry", "attempts": 2, "base_ms": 5},
        ),
        tool(
            "fan",
            "tools/fan.py",
            writes=["seen"],
            for_each={"source": "$.items"},
            on_error={"policy": "skip"},
        ),
        tool("slow", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"}),
        tool("after_slow", "tools/ok.py"),
        tool("gated", "tools/ok.py"),
    ]
    edges = [
        {"from": "greet", "to": "fan"},
        {"from": "slow", "to": "after_slow"},
        {"from": "greet", "to": "gated", "when": "$.greeting == 'nope'"},
    ]
    state = {
        "greeting": {"type": "string", "default": "hi"},
        "items": {"type": "array", "default": list(range(6))},
        "seen": {"type": "array", "merge": "array_append", "default": []},
    }
    files = {"tools/flaky.py": FLAKY, "tools/fan.py": FAN, "tools/slow.py": SLOW, "tools/ok.py": OK}
    result = run(build(root / "x", spec(nodes, edges, state=state), files), root / "ws")
    assert result.status == "partial", result.reason
    return root / "ws"


@pytest.fixture(scope="module")
def report(workspace) -> Inspection:
    return inspect_run(Workspace(workspace), "last")


@pytest.fixture(scope="module")
def page(report) -> str:
    return render_html(report)


def test_graph_draws_every_node_with_its_status(page):
    graph = {a["data-node"]: a["data-status"] for a in Elements(page).having("node", "g")}
    assert graph == {
        "greet": "succeeded",
        "fan": "succeeded",
        "slow": "failed",
        "after_slow": "skipped",
        "gated": "skipped",
    }


def test_graph_lays_edges_left_to_right_with_when_labels(page):
    x = {}
    for a in Elements(page).having("node", "g"):
        found = re.fullmatch(r"translate\(([\d.]+),([\d.]+)\)", a["transform"])
        assert found, a["transform"]
        x[a["data-node"]] = float(found.group(1))
    assert x["greet"] < x["fan"] and x["greet"] < x["gated"] and x["slow"] < x["after_slow"]
    assert x["greet"] == x["slow"]  # both sources sit in the first layer
    edges = {(a["data-from"], a["data-to"]) for a in Elements(page).having("edge", "path")}
    assert edges == {("greet", "fan"), ("slow", "after_slow"), ("greet", "gated")}
    assert "when $.greeting == &#39;nope&#39;</text>" in page


def test_every_node_element_carries_node_and_status(page, report):
    for tag, attrs in Elements(page).found:
        if "data-node" in attrs and tag != "span":
            assert attrs.get("data-status"), (tag, attrs)
    rows = {a["data-node"]: a["data-status"] for a in Elements(page).having("node-row", "tr")}
    assert rows == {n.id: n.status for n in report.view.nodes.values()}
    timeline = {a["data-node"] for a in Elements(page).having("tl-row") if "data-node" in a}
    assert timeline == set(report.view.nodes)


def test_timeline_marks_retries_timeouts_and_items(page):
    bars = Elements(page).having("bar")
    assert all(b.get("data-node") for b in bars)
    attempts = [b for b in bars if "att" in b["class"].split()]
    greet = [b["data-status"] for b in attempts if b["data-node"] == "greet"]
    assert greet == ["failed", "succeeded"]
    assert [b["data-status"] for b in attempts if b["data-node"] == "slow"] == ["timeout"]
    items = {int(b["data-item"]): b["data-status"] for b in attempts if b["data-node"] == "fan"}
    assert items == {0: "succeeded", 1: "succeeded", 2: "succeeded", 3: "failed", 4: "succeeded",
                     5: "succeeded"}  # fmt: skip
    assert "item three is &lt;bad&gt;" in page
    groups = Elements(page).having("tl-group", "details")
    assert [g["data-node"] for g in groups] == ["fan"]
    spans = {b["data-node"] for b in bars if "span" in b["class"].split()}
    assert spans == {"greet", "fan", "slow", "after_slow", "gated"}
    ticks = re.findall(r'<span class="tick[^"]*" style="left:([\d.]+)%">([^<]+)</span>', page)
    assert len(ticks) >= 3 and ticks[0] == ("0.000", "0")
    assert all(float(a) < float(b) for (a, _), (b, _) in pairwise(ticks))


def test_failures_list_seq_numbers_and_errors(page, report):
    listed = Elements(page).having("failure", "li")
    assert [int(a["data-seq"]) for a in listed] == [f.seq for f in report.view.failures]
    assert {a["data-node"] for a in listed} == {"greet", "fan", "slow"}
    for f in report.view.failures:
        assert f">#{f.seq}</span>" in page
    assert "ConnectionError: reset by peer" in page
    assert "timed out after 100 ms" in page


def test_state_diff_rows_escape_values(page):
    rows = Elements(page).having("diff-row", "tr")
    assert [r["data-field"] for r in rows] == ["greeting", "seen"]
    assert "&lt;script&gt;alert(&#39;hi&#39;)&lt;/script&gt;" in page
    assert "<script>alert" not in page
    assert page.count("<script") == 1  # the page's own script, nothing from the run


def test_the_page_is_self_contained(page):
    for _, attrs in Elements(page).found:
        for name, value in attrs.items():
            assert "http://" not in value and "https://" not in value, (name, value)
            assert name not in ("src", "href", "xlink:href"), (name, value)
    assert "<link" not in page and "@import" not in page
    assert re.findall(r"url\(([^)]*)\)", page) and all(
        u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", page)
    )
    assert "<style>" in page and "<script>" in page and "<svg" in page


def test_write_html_writes_the_rendered_page(report, tmp_path):
    target = tmp_path / "deep" / "report.html"
    write_html(report, target)
    assert target.read_text(encoding="utf-8") == render_html(report)


def test_inspect_html_option_writes_the_report(workspace, report, tmp_path):
    target = tmp_path / "out.html"
    result = CliRunner().invoke(
        app, ["inspect", "last", "--workspace", str(workspace), "--html", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert f'data-run="{report.view.run_id}"' in target.read_text(encoding="utf-8")


def synthetic_events(
    items: int, finished: bool = True, fail_every: int = 97
) -> list[dict[str, Any]]:
    """A run of `load` then a for_each `fan` over `items` items; one in `fail_every` fails."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    events: list[dict[str, Any]] = []

    def emit(ms: int, kind: str, **fields: Any) -> None:
        stamp = (t0 + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")
        events.append(
            {"v": 1, "seq": len(events) + 1, "ts": stamp, "run_id": "r-big", "type": kind, **fields}
        )

    graph = {
        "phases": [],
        "steps": ["load", "fan"],
        "nodes": {"load": {"kind": "tool"}, "fan": {"kind": "tool", "for_each": True}},
        "edges": [{"from": "load", "to": "fan", "when": None}],
    }
    emit(0, "run.started", experience="big", graph=graph)
    emit(0, "node.started", node_id="load", attempt=1)
    emit(10, "node.finished", node_id="load", attempt=1, duration_ms=10)
    for i in range(items):
        start = 10 + i // 8 * 3
        emit(start, "node.started", node_id="fan", item=i, attempt=1)
        if i % fail_every == 5:
            emit(start + 2, "node.failed", node_id="fan", item=i, attempt=1,
                 error_type="tool_error", error=f"bad item {i}")  # fmt: skip
        elif finished or i < items // 2:
            emit(start + 2, "node.finished", node_id="fan", item=i, attempt=1, duration_ms=2)
    end = 10 + items // 8 * 3 + 5
    if finished:
        emit(end, "node.finished", node_id="fan", status="succeeded")
        emit(end, "run.finished", status="partial", duration_ms=end)
    return events


def test_a_5000_item_run_caps_the_item_bars():
    """The page stays small however many items ran (its speed: `python -m bench.report`)."""
    view = fold(synthetic_events(5000))
    diff = [{"field": "rows", "before": [], "after": list(range(5000)), "writes": 1}]
    report = Inspection({"id": "r-big", "started_at": None}, view, diff)
    page = render_html(report)
    assert len(page) < 1_000_000, f"the page is {len(page):,} characters"
    items = [b for b in Elements(page).having("bar") if b.get("data-item")]
    assert len({b["data-item"] for b in items}) == ITEMS_DRAWN
    failed = {str(i) for i in range(5000) if i % 97 == 5}
    assert failed <= {b["data-item"] for b in items}  # failures are drawn first
    assert "… 4,500 more items not drawn" in page
    assert "more characters" in page  # the 5,000-element state value is clipped


def test_an_interrupted_run_shows_amber_nodes():
    view = fold(synthetic_events(40, finished=False, fail_every=1000), "interrupted")
    page = render_html(Inspection({"id": "r-big"}, view, []))
    graph = {a["data-node"]: a["data-status"] for a in Elements(page).having("node", "g")}
    assert graph == {"load": "succeeded", "fan": "interrupted"}
    assert 'class="badge run-interrupted"' in page
    bars = Elements(page).having("att")
    interrupted = [b["data-item"] for b in bars if b["data-status"] == "interrupted"]
    assert interrupted == [str(i) for i in range(20, 40)]  # the unfinished half of the items


JINJA_PROBE = """
import sys
import evolve.cli, evolve.report.graph, evolve.report.html
print("jinja2" in sys.modules)
from evolve.spec import load_experience
from evolve.store.queries import Inspection
from evolve.view import fold
evolve.report.html.render_html(Inspection({"id": "r-x"}, fold([]), []))
evolve.report.graph.graph_page(load_experience("examples/starter"))
print("jinja2" in sys.modules, "litellm" in sys.modules)
"""


@pytest.mark.slow
def test_jinja2_is_imported_when_a_page_is_rendered_not_before_and_litellm_never():
    done = subprocess.run(
        [sys.executable, "-c", JINJA_PROBE],
        capture_output=True, text=True, timeout=60, cwd=ARTIFACTS.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True", "False"]


def test_the_stylesheet_and_script_are_inlined_from_the_package(page):
    for name, tag in (("report.css", "style"), ("report.js", "script")):
        text = static_text(name)
        assert len(text) > 1000 and f"</{tag}" not in text
        assert f"<{tag}>\n{text}</{tag}>" in page


# --- in a real browser ----------------------------------------------------------------------

PROBE = """<script>
(function () {
  var tracks = document.querySelectorAll(".timeline .tl-track");
  var lefts = {};
  var outside = 0;
  tracks.forEach(function (t) {
    var box = t.getBoundingClientRect();
    if (box.width === 0) return;
    lefts[Math.round(box.left)] = 1;
    t.querySelectorAll(".bar").forEach(function (bar) {
      var b = bar.getBoundingClientRect();
      if (b.left < box.left - 1 || b.right > box.right + 1) outside += 1;
    });
  });
  document.body.dataset.trackLefts = Object.keys(lefts).join(",");
  document.body.dataset.barsOutside = String(outside);
  document.body.dataset.scrollWidth = String(document.documentElement.scrollWidth);
})();
</script></body>"""


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_the_report_in_headless_chromium(report, tmp_path):
    browser = chromium()
    page = tmp_path / "report.html"
    write_html(report, page)
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE), "utf-8")

    dom = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile-dom'}",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stdout[:500]
    assert 'data-ready="1"' in body.group(0), "the page's script did not run to its end"
    scroll_width = int(re.search(r'data-scroll-width="(\d+)"', body.group(0)).group(1))
    assert scroll_width <= 1280, f"the page overflows sideways ({scroll_width}px)"
    lefts = re.search(r'data-track-lefts="([^"]*)"', body.group(0)).group(1)
    assert len(lefts.split(",")) == 1, f"timeline tracks start at different x: {lefts}"
    assert 'data-bars-outside="0"' in body.group(0)
    after = Elements(dom.stdout)
    graph = {a["data-node"]: a["data-status"] for a in after.having("node", "g")}
    assert graph["slow"] == "failed" and graph["after_slow"] == "skipped"
    assert len(after.having("bar")) >= 12
    assert [r["data-field"] for r in after.having("diff-row", "tr")] == ["greeting", "seen"]
    assert after.having("tl-group", "details")[0].get("open") is not None

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-html.png"
    shot.unlink(missing_ok=True)
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.exists(), done.stderr[-2000:]
    assert png_size(shot) == (1280, 2000)
    assert shot.stat().st_size > 40_000, "the screenshot looks blank"
