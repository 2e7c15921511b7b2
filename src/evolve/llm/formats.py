"""Structured output modes: how a call asks for JSON, and what to try when a server refuses.

A call with an output schema asks in one of three modes:

- `json_schema`: `response_format={"type": "json_schema", ...}`; servers that support it decode
  under the schema's grammar (OpenAI, vLLM, llama.cpp, LM Studio, Ollama through litellm);
- `json_object`: JSON mode, `{"type": "json_object"}`: any JSON, the schema is in the prompt only;
- `prompt`: no `response_format` at all; the schema is in the prompt only.

`auto` (the default) tries them in that order: when a server refuses a mode (a 400/422/500 whose
message names the response format) the next one is tried at once, within the same call, and the
mode that worked is remembered for that model and API base for the rest of the process. A user
may force one mode with `runtime.structured_output` (or a node's `structured_output`): a forced
mode is never swapped for another.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MODES = ("json_schema", "json_object", "prompt")
SETTINGS = ("auto", *MODES)

# Providers that speak the OpenAI API on a server the user runs: litellm knows nothing about the
# model behind them, so its capability tables cannot say whether json_schema works. Ask for it.
COMPATIBLE_PROVIDERS = frozenset(
    {"hosted_vllm", "vllm", "ollama", "ollama_chat", "lm_studio", "llamafile", "openai_like"}
)

# Words by which a refusal names the response format (llama.cpp, vLLM, LM Studio, FastAPI 422s,
# litellm's own UnsupportedParamsError), as opposed to a refusal of something else.
_FORMAT_WORDS = re.compile(
    r"response_format|response format|json_schema|json_object|json schema|json mode|grammar|"
    r"guided_json|structured output",
    re.IGNORECASE,
)


def response_format(mode: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The `response_format` that asks for `mode` (None for `prompt`)."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": False},
        }
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def compatible_endpoint(model: str, api_base: str | None) -> bool:
    """Whether calls go to an OpenAI-compatible server (an --api-base, or a local provider)."""
    return bool(api_base) or model.split("/", 1)[0] in COMPATIBLE_PROVIDERS


def names_format(message: str) -> bool:
    """Whether a refusal's message is about the response format."""
    return bool(_FORMAT_WORDS.search(message))


class FormatMemory:
    """Which mode to try first per (model, api_base), learnt from refusals during this process."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, str | None], str] = {}
        self._lock = threading.Lock()

    def modes(self, model: str, api_base: str | None, setting: str, native: bool) -> list[str]:
        """The modes to try, in order. `native`: litellm says the model supports json_schema."""
        if setting in MODES:
            return [setting]
        order = list(MODES) if native or compatible_endpoint(model, api_base) else MODES[1:]
        with self._lock:
            start = self._first.get((model, api_base))
        return order[order.index(start) :] if start in order else order

    def refused(self, model: str, api_base: str | None, mode: str) -> None:
        """`mode` was refused: start from the one after it next time."""
        following = MODES[MODES.index(mode) + 1 :]
        if following:
            with self._lock:
                self._first[(model, api_base)] = following[0]
