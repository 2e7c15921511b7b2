"""Record and replay of the calls a run makes outside the model: cli-agent runs, HTTP fetches.

They share the run's cassette with the model calls, one JSONL line per call::

    {"key": "9be1...", "kind": "cli", "node": "fix", "item": null, "turn": 1,
     "request": {...}, "response": {"stdout": "...", "exit_code": 0, "files_changed": [...]}}

The key hashes the call's `kind` and `request` (what decides the answer). As for model calls, a
hand-written line may leave `key` out and is served to the next call of its `node` (and `item`
and `turn` where given). Replaying, a call missing from the cassette fails with `cassette_miss`
(never retried); recording, every live call is appended; otherwise calls just run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from evolve.runtime.attempt import AttemptError


@dataclass(frozen=True)
class Recorded:
    response: dict[str, Any]
    replayed: bool
    key: str


def call_key(kind: str, request: dict[str, Any]) -> str:
    payload = json.dumps({"kind": kind, **request}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class CallRecorder:
    """One per run: serves calls from the cassette when replaying, appends to it when recording."""

    def __init__(self, cassette: Any | None, replaying: bool):
        self.cassette = cassette  # evolve.llm.Cassette, or None
        self.replaying = replaying

    @classmethod
    def for_model(cls, model: Any, replaying: bool) -> CallRecorder:
        """The recorder that shares `model`'s cassette (a fake model has none)."""
        return cls(getattr(model, "cassette", None), replaying)

    async def call(
        self,
        kind: str,
        where: tuple[str, int | None, int],
        request: dict[str, Any],
        live: Callable[[], Awaitable[dict[str, Any]]],
    ) -> Recorded:
        """`live()` (and record it), or the recorded response; `where` is (node, item, turn)."""
        node_id, item, turn = where
        key = call_key(kind, request)
        if self.replaying:
            entry = self.cassette.find(key, node_id, item, turn) if self.cassette else None
            if entry is None:
                raise AttemptError(self._miss(kind, where, key), "cassette_miss", retryable=False)
            return Recorded(entry["response"], True, key)
        response = await live()
        if self.cassette is not None:
            self.cassette.append(
                {
                    "key": key,
                    "kind": kind,
                    "node": node_id,
                    "item": item,
                    "turn": turn,
                    "request": request,
                    "response": response,
                }
            )
        return Recorded(response, False, key)

    def _miss(self, kind: str, where: tuple[str, int | None, int], key: str) -> str:
        node_id, item, turn = where
        place = f"node '{node_id}'" + (f" item {item}" if item is not None else "")
        files = ", ".join(str(p) for p in self.cassette.paths) if self.cassette else "no cassette"
        example = {"node": node_id, **({"item": item} if item is not None else {})}
        example["response"] = (
            {"stdout": "...", "exit_code": 0} if kind == "cli" else {"status": 200, "body": "..."}
        )
        return (
            f"no cassette entry for the {kind} call of {place} (turn {turn}, key {key}) in "
            f"{files}; re-record with --record FILE, or add a line {json.dumps(example)}"
        )
