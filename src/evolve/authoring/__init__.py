"""`evolve new "<task>"`: an experience drafted by a model from a one-line task.

Two structured model calls make the draft. The *analysis* names the experience and sketches it
(phases, state fields with types, nodes with kinds and purpose, fan-outs, open questions); the
*synthesis* writes every file (experience.yaml, tools, prompts, README) and the next steps.
evolve writes the files itself, each path confined to the new directory (a path outside it is
refused and reported, never written), then validates the draft as `evolve validate` does and
sends the located problems back for up to `max_rounds` repair rounds. Each reply must meet its
JSON Schema; one that does not gets one repair turn. The result is a draft for the user to
review: nothing outside the new directory is touched, and a draft that never validates is kept
with its problems listed.

Replies are served by any `Model`: litellm for real calls (recorded with a cassette), or a
cassette replayed offline. Cassette lines name the call by `node`: `analysis`, `synthesis`, and
`repair` with `turn` 1..N for the repair rounds.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from evolve.errors import EvolveError, UsageError
from evolve.llm.model import Model, ModelReply, ModelRequest
from evolve.llm.replies import parse_json_object, repair_request, repair_text

DEFAULT_ROUNDS = 3
SCHEMA_FILE = "experience.schema.json"
SCHEMA_LINE = f"# yaml-language-server: $schema=./{SCHEMA_FILE}"

ANALYSIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "description", "phases", "state", "nodes", "open_questions"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "description": {"type": "string"},
        "phases": {"type": "array", "items": {"type": "string"}},
        "state": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "type"],
                "properties": {
                    "name": {"type": "string"},
                    "type": {"type": "string"},
                    "description": {"type": "string"},
                },
            },
        },
        "nodes": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "kind", "purpose"],
                "properties": {
                    "id": {"type": "string"},
                    "kind": {
                        "enum": ["tool", "agent", "skill", "cli-agent", "dataset", "experience"]
                    },
                    "purpose": {"type": "string"},
                    "reads": {"type": "array", "items": {"type": "string"}},
                    "writes": {"type": "array", "items": {"type": "string"}},
                    "fan_out": {"type": "string", "description": "the $.field it runs per item of"},
                },
            },
        },
        "open_questions": {"type": "array", "items": {"type": "string"}},
    },
}

FILES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["path", "content"],
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
    },
}

SYNTHESIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["files", "next_steps"],
    "properties": {
        "files": {**FILES_SCHEMA, "minItems": 1},
        "next_steps": {"type": "array", "items": {"type": "string"}},
    },
}

REPAIR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["files"],
    "properties": {"files": FILES_SCHEMA},
}

ANALYSIS_SYSTEM = """\
You design evolve experiences: workflows of LLM agent and tool nodes described in experience.yaml.
Given a one-line task, analyse it: a name (lowercase letters, digits, dashes), a one-sentence
description, the phases, every state field with its JSON type, the nodes (id, kind, purpose,
reads, writes, and fan_out when it runs once per item of a list field), and the open questions a
person must answer before this can run for real. Prefer few nodes; use tool nodes for anything
deterministic. Answer with one JSON object only."""

SYNTHESIS_SYSTEM = """\
You write evolve experiences. From a task and its analysis, write every file of the experience:
experience.yaml, each tool (tools/*.py exporting run(inputs) that returns
{"state_delta": {...}}; inputs holds the node's args, "_state" with the fields it reads, and
"$item"/"$index" under for_each), each prompt (prompts/*.md with {{ field }} placeholders naming
only fields the node reads, or {{ $item }} under for_each), and a README.md. Rules of
experience.yaml: name, version (semver), description, runtime.model, state.schema (every field a
node reads or writes, with a JSON type; merge: array_append for fan-out outputs), graph.nodes,
graph.edges ({from, to, when?}). Node kinds: tool (impl), agent (prompt, schema whose property
keys are in writes, or exactly one writes field), dataset (source), skill, cli-agent. Node keys:
id, kind, phase, reads, writes, for_each {source: $.field}, on_error, timeout_ms. Paths are
relative to the experience directory. Here is a complete, valid example:

{example}

Answer with one JSON object {"files": [{"path": ..., "content": ...}], "next_steps": [...]}."""

REPAIR_ASK = (
    'Answer with one JSON object {"files": [{"path": ..., "content": ...}]} holding the full '
    "new content of every file you change; files you leave out stay as they are."
)


class AuthoringError(EvolveError):
    """A model reply that could not be used even after its repair turn."""


@dataclass
class Draft:
    directory: Path
    name: str
    open_questions: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # relative paths written
    refused: list[str] = field(default_factory=list)  # paths refused, every round
    problems: list[str] = field(default_factory=list)  # left after the last round
    rounds: int = 0  # repair rounds used

    @property
    def valid(self) -> bool:
        return not self.problems


def demo_cassette() -> Path:
    """The recorded replies `evolve new --offline` serves, whatever the task."""
    return Path(str(resources.files("evolve.authoring") / "demo.jsonl"))


def check_directory(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(
            f"{directory} already exists and is not an empty directory; choose a new one with --dir"
        )


class Author:
    """Runs the calls of one `evolve new`, reporting each step through `say`."""

    def __init__(self, model: Model, model_name: str, say: Callable[[str], None] = print):
        self.model = model
        self.model_name = model_name
        self.say = say

    async def _ask(
        self, node: str, messages: list[dict[str, str]], schema: dict[str, Any], turn: int = 1
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """A structured reply and the conversation that led to it (one repair turn at most)."""
        request = ModelRequest(node, self.model_name, messages, schema=schema, turn=turn)
        reply = await self.model.complete(request)
        problems = _reply_problems(reply, schema)
        if problems:
            request = repair_request(
                request,
                reply.text,
                "Your answer did not match the schema:",
                problems,
                "Answer again with one corrected JSON object only.",
            )
            reply = await self.model.complete(request)
            problems = _reply_problems(reply, schema)
            if problems:
                raise AuthoringError(
                    f"the {node} reply could not be used after a repair turn: {problems[0]}"
                )
        history = [*request.messages, {"role": "assistant", "content": reply.text}]
        return parse_json_object(reply.text), history

    async def draft(self, task: str, directory: Path | None, max_rounds: int) -> Draft:
        if directory is not None:
            check_directory(directory)
        self.say("analysing the task...")
        analysis, _ = await self._ask(
            "analysis",
            [
                {"role": "system", "content": ANALYSIS_SYSTEM},
                {"role": "user", "content": f"Task: {task}"},
            ],
            ANALYSIS_SCHEMA,
        )
        directory = directory if directory is not None else Path(analysis["name"])
        check_directory(directory)
        result = Draft(directory, analysis["name"], list(analysis["open_questions"]))
        self.say(f"writing {directory}...")
        synthesis, history = await self._ask(
            "synthesis",
            [
                {"role": "system", "content": SYNTHESIS_SYSTEM.replace("{example}", _example())},
                {
                    "role": "user",
                    "content": f"Task: {task}\n\nAnalysis:\n{json.dumps(analysis, indent=2)}",
                },
            ],
            SYNTHESIS_SCHEMA,
        )
        result.next_steps = list(synthesis["next_steps"])
        directory.mkdir(parents=True, exist_ok=True)
        problems = self._write(result, synthesis["files"])
        while problems and result.rounds < max_rounds:
            result.rounds += 1
            self.say(f"repair round {result.rounds}: {len(problems)} problems")
            ask = repair_text(
                "evolve validate found these problems in the draft:", problems, REPAIR_ASK
            )
            try:
                reply, history = await self._ask(
                    "repair",
                    [*history, {"role": "user", "content": ask}],
                    REPAIR_SCHEMA,
                    turn=result.rounds,
                )
            except EvolveError as exc:  # the draft on disk is still the user's to finish
                problems.append(f"repair round {result.rounds} failed: {exc}")
                break
            problems = self._write(result, reply["files"])
        result.problems = problems
        return result

    def _write(self, draft: Draft, files: list[dict[str, str]]) -> list[str]:
        """Write the files that stay inside the draft; the problems of the draft after it."""
        problems = []
        root = draft.directory.resolve()
        for entry in files:
            target = confine(root, entry["path"])
            if target is None:
                draft.refused.append(entry["path"])
                problems.append(
                    f"{entry['path']}: refused: files must be relative paths inside the new "
                    "experience directory"
                )
                continue
            if target == root / SCHEMA_FILE:
                continue  # evolve writes the schema itself
            target.parent.mkdir(parents=True, exist_ok=True)
            content = entry["content"]
            if target == root / "experience.yaml" and not content.startswith(SCHEMA_LINE):
                content = f"{SCHEMA_LINE}\n{content}"
            target.write_text(content if content.endswith("\n") else content + "\n", "utf-8")
            if content.startswith("#!"):
                target.chmod(0o755)
            rel = target.relative_to(root).as_posix()
            if rel not in draft.files:
                draft.files.append(rel)
        from evolve.spec import schema_text

        (root / SCHEMA_FILE).write_text(schema_text(), "utf-8")
        return problems + validation_problems(draft.directory)


def confine(root: Path, path: str) -> Path | None:
    """`path` resolved inside `root`, or None when it is absolute or escapes it."""
    if not path or os.path.isabs(path) or "\\" in path or path.startswith("~"):
        return None
    target = (root / path).resolve()
    if target == root or not target.is_relative_to(root):
        return None
    return target


def validation_problems(directory: Path) -> list[str]:
    """The located problems `evolve validate` would print for the draft, one per line."""
    from evolve.errors import SpecError
    from evolve.spec import load_experience

    try:
        load_experience(directory, display=f"{directory.name}/experience.yaml")
    except SpecError as exc:
        return [str(p) for p in exc.problems]
    return []


def _reply_problems(reply: ModelReply, schema: dict[str, Any]) -> list[str]:
    from evolve.runtime.validation import errors

    try:
        value = parse_json_object(reply.text)
    except ValueError as exc:
        return [f"the reply is not JSON ({exc})"]
    if not isinstance(value, dict):
        return ["the reply must be a JSON object"]
    return errors(schema, value)


def _example() -> str:
    text = (resources.files("evolve") / "templates" / "agent" / "experience.yaml").read_text(
        "utf-8"
    )
    return re.sub(r"__NAME__", "notes-digest", text)


async def draft_experience(
    task: str,
    *,
    directory: Path | None = None,
    model: str | None = None,
    max_rounds: int = DEFAULT_ROUNDS,
    offline: bool = False,
    api_base: str | None = None,
    record: Path | None = None,
    replay: Path | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Draft:
    """Draft an experience for `task`: the model from `model` or EVOLVE_MODEL, calls recorded to
    `record`, or replayed from `replay` (or, `offline`, from the recorded demo)."""
    from evolve.llm import build_model

    if offline:
        if replay is not None or record is not None:
            raise UsageError("use only one of --record, --replay and --offline")
        replay = demo_cassette()
    model_name = model or os.environ.get("EVOLVE_MODEL") or ("replay" if replay else None)
    if not model_name:
        raise UsageError(
            "no model to draft with: pass --model openai/gpt-4o-mini or set EVOLVE_MODEL "
            "(or try --offline for the recorded demo)"
        )
    client = build_model(Path.cwd(), api_base=api_base, record=record, replay=replay)
    return await Author(client, model_name, say=say).draft(task, directory, max_rounds)
