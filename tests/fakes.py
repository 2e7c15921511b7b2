"""A scripted fake model: a queue of replies and a history of the calls it answered."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from evolve.llm.model import ModelError, ModelReply, ModelRequest


@dataclass
class ScriptedModel:
    replies: list[Any] = field(default_factory=list)  # str, dict (as JSON), or an Exception
    calls: list[ModelRequest] = field(default_factory=list)
    delay: float = 0.0

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.calls.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.replies:
            raise ModelError("the scripted model has no reply left", "script_exhausted")
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        text = reply if isinstance(reply, str) else json.dumps(reply)
        return ModelReply(
            text=text, model=request.model, tokens_in=10, tokens_out=5, cost_usd=0.001, latency_ms=1
        )


@dataclass
class EchoModel:
    """A model whose reply is a function of the request alone ("re: " + the last user message),
    so a run gets the same answers however often it asks; `calls` counts what it answered."""

    calls: list[ModelRequest] = field(default_factory=list)

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.calls.append(request)
        text = "re: " + request.messages[-1]["content"]
        return ModelReply(
            text=text, model=request.model, tokens_in=10, tokens_out=5, cost_usd=0.001, latency_ms=1
        )
