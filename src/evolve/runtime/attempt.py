"""One try of one node (and item): what it is given, and the two ways it reports back.

Node kinds (tools, agents, datasets, nested experiences) receive an `Attempt`; they never see
the scheduler. `emit` writes an event tagged with the node, item and attempt number;
`call_model` asks the run's (metered) model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from evolve.llm.model import ModelReply, ModelRequest
from evolve.spec.model import Node

Emit = Callable[..., Any]
Ask = Callable[[ModelRequest, "Attempt"], Awaitable[ModelReply]]


@dataclass
class Attempt:
    node: Node
    number: int
    inputs: dict[str, Any]
    item: int | None
    emitter: Emit
    ask: Ask

    def emit(self, type: str, **fields: Any) -> None:
        self.emitter(type, node_id=self.node.id, item=self.item, attempt=self.number, **fields)

    async def call_model(self, request: ModelRequest) -> ModelReply:
        return await self.ask(request, self)
