"""The model boundary: what agent nodes and the advisor ask of a model, and who answers.

- `model`: the protocol (`Model`, `ModelRequest`, `ModelReply`, `ModelError`).
- `replies`: reading a JSON reply and the one repair turn after an unusable reply.
- `client`: real calls through litellm (the only module that imports it, lazily).
- `cassettes`: offline record and replay.
- `formats`: structured output modes (json_schema, json_object, prompt) and the fallback order.
- `context`: context windows (flag, setting, server, litellm) and fitting a request to one.
- `inflight`: the real calls waiting now, for progress.

`build_model` picks the client for a run: `LiteLLMModel` for real calls (optionally recording
every call to a cassette), or `ReplayModel`, which serves every call from a cassette and never
touches litellm or the network, or `RecordMissing` (`--record-missing`): the cassette first, and
only the calls it misses made for real and appended to it. This package imports nothing of the
runtime or the advisor.
"""

from __future__ import annotations

from pathlib import Path

from evolve.errors import UsageError
from evolve.llm.cassettes import Cassette, RecordMissing, ReplayModel, offline_cassettes
from evolve.llm.client import LiteLLMModel
from evolve.llm.model import Model, ModelError, ModelReply, ModelRequest

__all__ = [
    "Model",
    "ModelError",
    "ModelReply",
    "ModelRequest",
    "build_model",
]


def build_model(
    experience_dir: Path,
    *,
    api_base: str | None = None,
    record: Path | None = None,
    replay: Path | None = None,
    offline: bool = False,
    context_window: int | None = None,
    window_source: str = "--context-window",
    in_order: bool = False,
    record_missing: bool = False,
) -> LiteLLMModel | ReplayModel | RecordMissing:
    """The client for a run (or the advisor). `context_window` overrides what the server or
    litellm say about the model's window; `window_source` names the setting it came from.
    `in_order`: replay recorded lines in order whatever their key (see `ReplayModel`)."""
    if sum(bool(x) for x in (record, replay, offline)) > 1:
        raise UsageError("use only one of --record, --replay and --offline")
    if record_missing:
        if record or offline:
            raise UsageError(
                "--record-missing replays the experience's cassettes (or --replay FILE) by "
                "itself: leave out --record and --offline"
            )
        paths = [replay] if replay else offline_cassettes(experience_dir)
        target = replay or experience_dir / "cassettes" / "recorded.jsonl"
        live = LiteLLMModel(
            api_base,
            Cassette([target]),
            context_window=context_window,
            window_source=window_source,
        )
        return RecordMissing(ReplayModel(Cassette(paths), in_order), live)
    if offline:
        return ReplayModel(Cassette(offline_cassettes(experience_dir)), in_order)
    if replay is not None:
        if not replay.is_file():
            raise UsageError(f"--replay: no such cassette {replay}")
        return ReplayModel(Cassette([replay]), in_order)
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("", encoding="utf-8")  # a recording starts a fresh cassette
    return LiteLLMModel(
        api_base,
        Cassette([record]) if record else None,
        context_window=context_window,
        window_source=window_source,
    )
