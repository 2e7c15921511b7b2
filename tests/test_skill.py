"""skill nodes: an Agent Skill folder as the system prompt, the node's prompt as the task."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fakes import ScriptedModel
from tests.helpers import build, run, spec

from evolve.advisor.diffs import ProposalChecker
from evolve.errors import SpecError
from evolve.spec import load_experience

SKILL = """\
---
name: reviewer
description: Reviews a text for {{ tone }} and clarity.
---
# Reviewing

Read the text, then list what is unclear. See checklist.md.
"""


def experience(root: Path, skill_md: str = SKILL, model: str | None = "openai/m", **node) -> Path:
    return build(
        root,
        spec(
            [
                {
                    "id": "review",
                    "kind": "skill",
                    "skill": "skills/reviewer",
                    "prompt": "prompts/task.md",
                    "reads": ["text"],
                    "writes": ["notes"],
                    **node,
                }
            ],
            state={"text": {"type": "string", "default": "hello"}, "notes": {"type": "string"}},
            runtime={"model": model} if model else {},
        ),
        {
            "skills/reviewer/SKILL.md": skill_md,
            "skills/reviewer/checklist.md": "- is every term defined?\n",
            "prompts/task.md": "Review this: {{ text }}\n",
        },
    )


def test_the_skill_is_the_system_prompt_and_the_prompt_the_task(tmp_path):
    exp = experience(tmp_path / "exp")
    model = ScriptedModel(["two things are unclear"])
    result = run(exp, tmp_path / "ws", model)
    assert result.status == "success", result.reason
    assert result.state["notes"] == "two things are unclear"
    [call] = model.calls
    system, user = call.messages
    assert system["role"] == "system"
    # SKILL.md's body as written (front matter gone, braces not rendered), then its resources
    assert system["content"] == (
        "# Reviewing\n\nRead the text, then list what is unclear. See checklist.md.\n\n"
        "## File: checklist.md\n\n- is every term defined?\n"
    )
    assert user == {"role": "user", "content": "Review this: hello\n"}


def test_a_skill_node_needs_a_model_like_an_agent(tmp_path, monkeypatch):
    from evolve.errors import UsageError

    monkeypatch.delenv("EVOLVE_MODEL", raising=False)
    exp = experience(tmp_path / "exp", model=None)
    with pytest.raises(UsageError, match="no model for agent node review"):
        run(exp, tmp_path / "ws", ScriptedModel())


@pytest.mark.parametrize(
    ("skill_md", "where", "message"),
    [
        ("no front matter\n", "SKILL.md:1:1", "must open with '---' front matter"),
        ("---\nname: x\n---\nbody\n", "SKILL.md:2:1", "needs a 'description' string"),
        ("---\nname: x\ndescription: y\n---\n\n", "SKILL.md:4:1", "has no instructions"),
    ],
)
def test_a_malformed_skill_md_is_located(tmp_path, skill_md, where, message):
    exp = experience(tmp_path / "exp", skill_md)
    with pytest.raises(SpecError) as caught:
        load_experience(exp, display="exp/experience.yaml")
    [problem] = caught.value.problems
    assert f"{problem.file}:{problem.line}:{problem.col}" == f"exp/skills/reviewer/{where}"
    assert message in problem.message


def test_a_missing_skill_folder_or_skill_md_is_reported_at_the_node(tmp_path):
    exp = experience(tmp_path / "exp")
    (exp / "skills/reviewer/SKILL.md").unlink()
    with pytest.raises(SpecError, match=r"skill folder 'skills/reviewer' has no SKILL\.md"):
        load_experience(exp)
    text = (exp / "experience.yaml").read_text().replace("skills/reviewer", "skills/nope")
    (exp / "experience.yaml").write_text(text)
    with pytest.raises(SpecError, match="skill folder 'skills/nope' does not exist"):
        load_experience(exp)


def test_the_advisor_never_rewrites_a_skill(tmp_path):
    exp = experience(tmp_path / "exp")
    checker = ProposalChecker(load_experience(exp), exp)
    for rel in ("skills/reviewer/SKILL.md", "skills/reviewer/checklist.md"):
        files = {rel: "changed\n"}
        check = checker.check(files, checker.diff(files))
        assert not check.ok and "belongs to a skill folder" in check.reason
    files = {"prompts/other.md": "a new prompt\n"}  # a new file elsewhere is still fine
    assert checker.check(files, checker.diff(files)).reason != (
        "it changes prompts/other.md, which belongs to a skill folder (a skill is its own)"
    )
