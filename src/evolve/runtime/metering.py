"""The run's model, metered: every call recorded, its tokens and cost counted, the budget kept.

`MeteredModel` wraps whatever answers the agent nodes (litellm, a cassette, a test fake). Each
call is recorded once (an `llm.call` event and an `llm_calls` row); a provider failure becomes
the attempt's `AttemptError`; when the cost spent reaches `--max-cost` the run stops with
`RunFailed(stopped="max_cost")` after the call that reached it is recorded.
"""

from __future__ import annotations

from evolve.events import LlmCall
from evolve.llm.cassettes import request_key
from evolve.llm.model import Model, ModelError, ModelReply, ModelRequest
from evolve.runtime.attempt import AttemptError, RunFailed
from evolve.store.recorder import ModelCall, Recorder


class MeteredModel:
    def __init__(self, model: Model | None, recorder: Recorder, max_cost: float | None = None):
        self.model = model
        self.recorder = recorder
        self.max_cost = max_cost
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost_usd: float | None = None

    async def complete(self, request: ModelRequest) -> ModelReply:
        if self.model is None:
            raise AttemptError("no model client is configured", "no_model", retryable=False)
        try:
            reply = await self.model.complete(request)
        except ModelError as exc:
            raise AttemptError(
                str(exc),
                exc.error_type,
                retryable=exc.retryable,
                retry_after_ms=exc.retry_after_ms,
            ) from None
        self.tokens_in += reply.tokens_in or 0
        self.tokens_out += reply.tokens_out or 0
        if reply.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + reply.cost_usd
        self.recorder.model_call(
            ModelCall(
                LlmCall(
                    node_id=request.node_id,
                    item=request.item,
                    attempt=request.attempt,
                    model=reply.model,
                    tokens_in=reply.tokens_in,
                    tokens_out=reply.tokens_out,
                    cost_usd=reply.cost_usd,
                    duration_ms=reply.latency_ms,
                    replayed=reply.replayed,
                    key=reply.key or request_key(request),
                    mode=reply.mode or None,
                    refused_modes=list(reply.refused_modes) or None,
                    finish_reason=reply.finish_reason,
                ),
                request={
                    "messages": request.messages,
                    "schema": request.schema,
                    "turn": request.turn,
                    "mode": reply.mode,
                },
                response={"text": reply.text, "finish_reason": reply.finish_reason},
            )
        )
        if self.max_cost is not None and (self.cost_usd or 0.0) >= self.max_cost:
            raise RunFailed(
                request.node_id,
                f"budget reached: spent ${self.cost_usd:.4f} of --max-cost ${self.max_cost:.4f}",
                stopped="max_cost",
            )
        return reply
