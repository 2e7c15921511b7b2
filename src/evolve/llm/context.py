"""Context windows: how many tokens a model takes, and whether a request fits before sending.

The window of a model is the first of:

1. `--context-window N` (run and propose), then `runtime.context_window` in the experience;
2. what the server says, for an OpenAI-compatible endpoint (an `--api-base`, or a local
   provider): llama.cpp's `GET /props` (`n_ctx`), vLLM's `GET /v1/models` (`max_model_len`),
   llama.cpp's `/v1/models` (`meta.n_ctx_train`), Ollama's `POST /api/show` (`num_ctx`, else the
   model's `context_length`);
3. litellm's model info (`max_input_tokens`).

When none of them knows, the window is unknown and nothing is checked before sending (a server
that refuses an over-long prompt still gives `context_overflow`). Tokens are counted with
litellm's `token_counter` (the model's own tokenizer where litellm has it, else cl100k), so a
count is an estimate: `fits` keeps a margin for that.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

PROBE_TIMEOUT_S = 3.0
DEFAULT_REPLY_TOKENS = 1024  # kept free for the reply when a call sets no max_tokens
MARGIN = 0.05  # counted with another tokenizer than the server's, a count may be a little low


@dataclass(frozen=True)
class Window:
    tokens: int
    source: str  # "--context-window", "runtime.context_window", "server /props", "litellm", ...


def reply_reserve(window: int, max_tokens: int | None) -> int:
    """Tokens kept free for the reply: the call's max_tokens, else a quarter of the window up
    to DEFAULT_REPLY_TOKENS."""
    if max_tokens:
        return max_tokens
    return min(DEFAULT_REPLY_TOKENS, window // 4)


def prompt_budget(window: Window, max_tokens: int | None) -> int:
    """How many counted prompt tokens fit in `window` beside the reply."""
    usable = window.tokens - reply_reserve(window.tokens, max_tokens)
    return int(usable / (1 + MARGIN))


class Windows:
    """Finds (and caches, per process) each model's context window."""

    def __init__(self, override: int | None = None, override_source: str = "--context-window"):
        self.override = override
        self.override_source = override_source
        self._cache: dict[tuple[str, str | None], Window | None] = {}
        self._lock = threading.Lock()

    def window(self, lib: Any, model: str, api_base: str | None) -> Window | None:
        if self.override:
            return Window(self.override, self.override_source)
        key = (model, api_base)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        found = self._find(lib, model, api_base)
        with self._lock:
            self._cache[key] = found
        return found

    def _find(self, lib: Any, model: str, api_base: str | None) -> Window | None:
        from evolve.llm.formats import compatible_endpoint

        if compatible_endpoint(model, api_base):
            found = ask_server(model, api_base)
            if found is not None:
                return found
        try:
            info = lib.get_model_info(model)
        except Exception:  # a model litellm has not mapped: unknown, not an error
            return None
        tokens = info.get("max_input_tokens") or info.get("max_tokens")
        return Window(int(tokens), "litellm's model info") if tokens else None


def count_tokens(lib: Any, model: str, messages: list[dict[str, Any]]) -> int:
    return int(lib.token_counter(model=model, messages=messages))


def ask_server(model: str, api_base: str | None) -> Window | None:
    """The context window an OpenAI-compatible server reports, or None."""
    provider, _, name = model.partition("/")
    if provider in ("ollama", "ollama_chat"):
        root = (api_base or "http://localhost:11434").rstrip("/")
        return _ollama(root, name)
    if not api_base:
        return None
    base = api_base.rstrip("/")
    root = base[: -len("/v1")] if base.endswith("/v1") else base
    props = _get(f"{root}/props")
    if isinstance(props, dict):
        n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx") or props.get("n_ctx")
        if isinstance(n_ctx, int) and n_ctx > 0:
            return Window(n_ctx, "the server's /props")
    listing = _get(f"{base}/models")
    rows = listing.get("data") if isinstance(listing, dict) else None
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or (len(rows) > 1 and row.get("id") != name):
            continue
        meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
        for value, where in (
            (row.get("max_model_len"), "max_model_len"),
            (meta.get("n_ctx"), "meta.n_ctx"),
            (meta.get("n_ctx_train"), "meta.n_ctx_train"),
        ):
            if isinstance(value, int) and value > 0:
                return Window(value, f"the server's /v1/models {where}")
    return None


def _ollama(root: str, name: str) -> Window | None:
    shown = _post(f"{root}/api/show", {"model": name})
    if not isinstance(shown, dict):
        return None
    for line in str(shown.get("parameters") or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "num_ctx" and parts[1].isdigit():
            return Window(int(parts[1]), "Ollama's /api/show num_ctx")
    info = shown.get("model_info") if isinstance(shown.get("model_info"), dict) else {}
    for key, value in info.items():
        if key.endswith(".context_length") and isinstance(value, int):
            return Window(value, "Ollama's /api/show context_length")
    return None


def _get(url: str) -> Any:
    return _fetch(url, None)


def _post(url: str, payload: dict[str, Any]) -> Any:
    return _fetch(url, json.dumps(payload).encode())


def _fetch(url: str, data: bytes | None) -> Any:
    """GET (or POST `data` as JSON) and decode the JSON answer; None for any failure."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            return json.loads(response.read(1_000_000))
    except (OSError, ValueError, urllib.error.URLError):
        return None
