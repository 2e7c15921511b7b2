"""Reading a model's reply, and the one repair turn after an unusable one.

A reply meant to be JSON may come wrapped in a ```json fence; `parse_json_object` tolerates it.
When a reply cannot be used, the caller gets exactly one more turn: `repair_request` sends the
conversation so far, the reply, what was wrong with it and what to answer instead. Agent nodes
(an output schema not met) and the advisor (proposals that could not be used) both repair this
way, and a second unusable reply is final for both.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from evolve import jsonvalue
from evolve.llm.model import ModelRequest

REPAIR_TURN = 2


def parse_json_object(text: str) -> Any:
    """The JSON value in a reply, tolerating a ```json fence around it (NaN is not JSON)."""
    fenced = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", text, re.DOTALL)
    return jsonvalue.loads(fenced.group(1) if fenced else text)


def repair_request(
    request: ModelRequest, reply_text: str, heading: str, problems: list[str], ask: str
) -> ModelRequest:
    """The repair turn: `request` again, with the reply and a bullet list of its problems."""
    messages = [
        *request.messages,
        {"role": "assistant", "content": reply_text},
        {"role": "user", "content": repair_text(heading, problems, ask)},
    ]
    return dataclasses.replace(request, messages=messages, turn=REPAIR_TURN)


def repair_text(heading: str, problems: list[str], ask: str) -> str:
    """The repair turn's request: what was wrong, as a bullet list, and what to answer instead.
    (A cli-agent node, which has no conversation, sends it after its prompt and reply.)"""
    return f"{heading}\n" + "\n".join(f"- {p}" for p in problems) + f"\n{ask}"
