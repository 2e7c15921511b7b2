"""Agent nodes: render the prompt, ask the model, check the answer, produce the state delta.

With an output `schema` the reply must be a JSON object meeting it: an invalid reply gets one
repair turn that sends the validation errors back, and a second invalid reply fails the attempt
(a `schema.invalid` event is written for each invalid reply). The validated object's keys are the
state delta. Without a schema the reply text goes to the node's single `writes` field.
"""

from __future__ import annotations

import json
from typing import Any

from evolve.errors import EvolveError
from evolve.llm.model import ModelReply, ModelRequest
from evolve.llm.replies import parse_json_object, repair_request
from evolve.runtime.attempt import Attempt
from evolve.runtime.validation import errors as schema_errors
from evolve.spec.model import Node
from evolve.spec.templates import TemplateError, render


class AgentError(EvolveError):
    def __init__(self, message: str, error_type: str):
        super().__init__(message)
        self.error_type = error_type


def build_messages(node: Node, values: dict[str, Any]) -> list[dict[str, str]]:
    try:
        prompt = render(node.prompt.read_text("utf-8"), values)
        system = render(node.system.read_text("utf-8"), values) if node.system else None
    except TemplateError as exc:
        raise AgentError(str(exc), "template_error") from None
    messages = [{"role": "system", "content": system}] if system else []
    if node.schema is not None:
        prompt += (
            "\n\nAnswer with one JSON object that matches this JSON Schema, and nothing "
            "else:\n" + json.dumps(node.schema, ensure_ascii=False)
        )
    messages.append({"role": "user", "content": prompt})
    return messages


async def run_agent(node: Node, attempt: Attempt, model_name: str) -> dict[str, Any]:
    """One attempt of an agent node; returns the tool-shaped result {state_delta, edge_output}."""
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
    )
    reply = await attempt.call_model(request)
    if node.schema is None:
        return {"state_delta": {node.writes[0]: reply.text}, "edge_output": reply.text}
    problems = _check(node, reply)
    if problems:
        attempt.emit("schema.invalid", errors=problems, final=False)
        reply = await attempt.call_model(
            repair_request(
                request,
                reply.text,
                "Your answer did not match the schema:",
                problems,
                "Answer again with one corrected JSON object only.",
            )
        )
        problems = _check(node, reply)
        if problems:
            attempt.emit("schema.invalid", errors=problems, final=True)
            raise AgentError(
                f"the reply did not match the output schema after a repair turn: {problems[0]}",
                "schema_invalid",
            )
    value = parse_json_object(reply.text)
    return {"state_delta": value, "edge_output": value}


def _check(node: Node, reply: ModelReply) -> list[str]:
    try:
        value = parse_json_object(reply.text)
    except ValueError as exc:
        return [f"the reply is not JSON ({exc})"]
    if not isinstance(value, dict):
        return ["the reply must be a JSON object"]
    return schema_errors(node.schema or {}, value)
