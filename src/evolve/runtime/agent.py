"""Agent and skill nodes: render the prompt, ask the model, check the answer, produce the delta.

A skill node is an agent node whose system prompt is its Agent Skill folder (`SKILL.md`'s body
and its text resource files, sent as written); its `prompt` is the task.

With an output `schema` the reply must be a JSON object meeting it: an invalid reply gets one
repair turn that sends the validation errors back, and a second invalid reply fails the attempt
(a `schema.invalid` event is written for each invalid reply). The validated object's keys are the
state delta. Without a schema the reply text goes to the node's single `writes` field.
"""

from __future__ import annotations

import json
from typing import Any

from evolve.events import SchemaInvalid
from evolve.llm.model import ModelReply, ModelRequest
from evolve.llm.replies import echo_problem, parse_json_object, repair_request, schema_echo
from evolve.runtime.attempt import Attempt, AttemptError
from evolve.runtime.validation import errors as schema_errors
from evolve.spec.model import Node
from evolve.spec.templates import TemplateError, render

SCHEMA_REPAIR_HEADING = "Your answer did not match the schema:"
SCHEMA_REPAIR_ASK = "Answer again with one corrected JSON object only."


def json_instruction(schema: dict[str, Any] | None, writes: tuple[str, ...] = ()) -> str:
    """What a prompt asking for structured output ends with."""
    if schema is not None:
        return (
            "\n\nAnswer with one JSON object that matches this JSON Schema (the data itself, "
            "not the schema), and nothing else:\n" + json.dumps(schema, ensure_ascii=False)
        )
    return f"\n\nAnswer with one JSON object (keys among: {', '.join(writes)}), and nothing else."


def _system(node: Node, values: dict[str, Any]) -> str | None:
    """A skill's SKILL.md (sent as written, with its resource files), or the rendered system."""
    if node.skill is not None:
        from evolve.spec.skills import system_prompt

        return system_prompt(node.skill.directory, node.skill.body)
    return render(node.system.read_text("utf-8"), values) if node.system else None


def build_messages(node: Node, values: dict[str, Any]) -> list[dict[str, str]]:
    try:
        prompt = render(node.prompt.read_text("utf-8"), values)
        system = _system(node, values)
    except TemplateError as exc:
        raise AttemptError(str(exc), "template_error", retryable=False) from None
    messages = [{"role": "system", "content": system}] if system else []
    if node.schema is not None:
        prompt += json_instruction(node.schema)
    messages.append({"role": "user", "content": prompt})
    return messages


async def run_agent(
    node: Node,
    attempt: Attempt,
    model_name: str,
    structured_output: str = "auto",
    timeout_ms: int | None = None,
) -> dict[str, Any]:
    """One attempt of an agent node; returns the tool-shaped result {state_delta, edge_output}.

    `structured_output` is the run's setting (runtime.structured_output); the node's own wins.
    `timeout_ms` is the attempt's limit: the model client waits that long, not litellm's 600 s.
    """
    values = {
        **attempt.inputs.get("_state", {}),
        **{k: v for k, v in attempt.inputs.items() if not k.startswith("_")},
    }
    messages = build_messages(node, values)
    request = ModelRequest(
        node_id=node.id,
        model=model_name,
        messages=messages,
        schema=node.schema,
        temperature=node.temperature,
        max_tokens=node.max_tokens,
        item=attempt.item,
        attempt=attempt.number,
        structured_output=node.structured_output or structured_output,
        timeout_s=timeout_ms / 1000 if timeout_ms else None,
    )
    reply = await attempt.call_model(request)
    if node.schema is None:
        return {"state_delta": {node.writes[0]: reply.text}, "edge_output": reply.text}
    problems = _check(node, reply)
    if problems:
        attempt.emit(SchemaInvalid, errors=problems, final=False)
        reply = await attempt.call_model(
            repair_request(request, reply.text, SCHEMA_REPAIR_HEADING, problems, SCHEMA_REPAIR_ASK)
        )
        problems = _check(node, reply)
        if problems:
            attempt.emit(SchemaInvalid, errors=problems, final=True)
            raise AttemptError(
                f"the reply did not match the output schema after a repair turn: {problems[0]}",
                "schema_invalid",
            )
    value = parse_json_object(reply.text)
    return {"state_delta": value, "edge_output": value}


def _check(node: Node, reply: ModelReply) -> list[str]:
    try:
        value = parse_json_object(reply.text)
    except ValueError as exc:
        cut = " (the reply was cut off at max_tokens)" if reply.finish_reason == "length" else ""
        return [f"the reply is not JSON ({exc}){cut}"]
    if schema_echo(value, node.schema):
        return [echo_problem(node.schema or {})]
    if not isinstance(value, dict):
        return ["the reply must be a JSON object"]
    return schema_errors(node.schema or {}, value)
