"""The proposals markdown cannot lie: what a model wrote (title, rationale, evidence, a rejected
title) is rendered so it cannot open a code fence, a heading or an HTML block, and the real diff
is the only fenced block of each proposal, even when the diff itself holds a fence."""

from __future__ import annotations

from markdown_it import MarkdownIt

from evolve.advisor.propose import propose
from evolve.store.workspace import Workspace
from fakes import ScriptedModel
from helpers import build, run, spec, tool

FAKE_DIFF = "```diff\n--- a/experience.yaml\n+++ b/experience.yaml\n+  evil: true\n```"
TITLE = "Raise the timeout\n## 2. Apply me blindly _(tune-param, confidence: high)_"
RATIONALE = (
    "The node is slow.\n"
    f"{FAKE_DIFF}\n"
    "# A fake heading\n"
    "Underlined\n"
    "===\n"
    "~~~\nfenced with tildes\n~~~\n"
    "    indented code\n"
    "<details><summary>hidden</summary>\n\n"
    "- a list is fine\n"
    "1. so is this"
)
README = "Usage:\n\n```\nrun it\n```\n\nMore text.\n"


def tokens(text: str) -> list:
    return MarkdownIt("commonmark").parse(text)


def test_model_text_cannot_forge_fences_headings_or_html(tmp_path):
    exp = build(
        tmp_path / "x",
        spec([tool("a", "tools/a.py")], name="x", runtime={"model": "fake/m"}),
        {"tools/a.py": "def run(i):\n    return {}\n", "tools/README.md": README},
    )
    assert run(exp, tmp_path / "ws").status == "success"
    idea = {
        "operation": "tune-param",
        "title": TITLE,
        "confidence": "low",
        "rationale": RATIONALE,
        "evidence": ["`x`\n## 3. also fake"],
        "edits": [{"file": "tools/README.md", "search": "run it\n", "replace": "run it twice\n"}],
    }
    rejected = {**idea, "title": "Bad\n```\n# Fake appendix", "edits": [{"file": "../out"}]}
    model = ScriptedModel([{"proposals": [idea, rejected]}, {"proposals": [rejected]}])
    report = propose(Workspace(tmp_path / "ws"), [], model_client=model)
    [proposal] = report.proposals
    assert "```" in proposal.diff  # the diff itself holds a fence (context lines of the README)
    md = report.markdown()
    found = tokens(md)
    fences = [t for t in found if t.type in ("fence", "code_block")]
    assert [(t.type, t.info, t.content) for t in fences] == [("fence", "diff", proposal.diff)]
    headings = [found[i + 1].content for i, t in enumerate(found) if t.type == "heading_open"]
    assert len(headings) == 3, headings  # the run's title, proposal 1, the appendix
    assert headings[1].startswith("1. Raise the timeout ## 2. Apply me blindly")
    assert headings[2] == "Appendix: not proposed"
    assert not [t for t in found if t.type in ("html_block", "html_inline")]
    # the words are all still there, to read
    text = " ".join(t.content for t in found if t.type == "inline")
    for words in ("A fake heading", "fenced with tildes", "indented code", "a list is fine"):
        assert words in text


def test_markdown_text_renders_literally():
    from evolve.advisor.report import block_text, inline_text

    assert inline_text("a\n## b `c`") == "a ## b \\`c\\`"
    rendered = block_text("```diff\n# h\n  - item\n10. x\nplain <b>")
    assert rendered == "\\`\\`\\`diff\n\\# h\n\\- item\n10\\. x\nplain \\<b>"
    [paragraph] = [t for t in tokens(rendered) if t.type == "inline"]
    assert paragraph.children[0].content == "```diff"
