"""Cassettes: offline record and replay of model calls, so a run needs no network.

Cassettes are JSONL, one call per line::

    {"key": "3f2a...", "node": "review", "item": 0, "turn": 1, "model": "openai/gpt-4o-mini",
     "request": {...}, "response": {"text": "...", "tokens_in": 812, "tokens_out": 95,
     "cost_usd": 0.00018}}

A recorded line carries `key` (a hash of model, messages and response format) and is served only
to the very same request. A hand-written line leaves `key` out: it is served to the next call of
its `node` (and `item` and `turn`, where given), in file order, so a prompt edit never forces
editing opaque hashes by hand. `response.json` may stand in for `response.text` (an object
written as JSON). A hand-written line with a `case` is served only to the runs of that case in
`evolve eval`, before any line without one; each case run replays from a fresh copy of the
cassette (`for_case`), so repeats of a case get the same replies. A judge's calls are those of
the node `eval:<name>`. `ReplayModel` serves every call from cassettes and never imports litellm.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from evolve.errors import UsageError
from evolve.llm.model import ModelError, ModelReply, ModelRequest
from evolve.redaction import Redactor


def request_key(request: ModelRequest) -> str:
    """The cassette key: a hash of what decides the answer (model, messages, response format)."""
    payload = {
        "model": request.model,
        "messages": request.messages,
        "schema": request.schema,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


class Cassette:
    """A JSONL file of calls: appended to when recording, indexed when replaying."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.redactor = Redactor()
        self.by_key: dict[str, list[dict[str, Any]]] = {}
        self.by_node: list[dict[str, Any]] = []  # hand-written entries, in file order
        self.by_case: list[dict[str, Any]] = []  # hand-written entries for one case only
        self.recorded: list[dict[str, Any]] = []  # recorded entries, in file order
        self._lock = threading.Lock()
        for path in paths:
            self._index(path)

    def for_case(self, case_id: str | None) -> Cassette:
        """A fresh copy for one case run: its own lines first, then the lines for any case."""
        copy = Cassette([])
        copy.paths = self.paths
        copy.by_key = {k: list(v) for k, v in self.by_key.items()}
        own = [e for e in self.by_case if str(e["case"]) == case_id]
        copy.by_node = own + list(self.by_node)
        copy.recorded = list(self.recorded)
        return copy

    def _index(self, path: Path) -> None:
        if not path.exists():
            return
        for number, raw in enumerate(path.read_text("utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError as exc:
                raise UsageError(f"{path}:{number}: not a JSON line ({exc})") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("response"), dict):
                raise UsageError(f"{path}:{number}: a cassette line needs a 'response' object")
            if entry.get("key"):
                self.by_key.setdefault(entry["key"], []).append(entry)
                self.recorded.append(entry)
            elif entry.get("node") and entry.get("case") is not None:
                self.by_case.append(entry)
            elif entry.get("node"):
                self.by_node.append(entry)
            else:
                raise UsageError(f"{path}:{number}: a cassette line needs a 'key' or a 'node'")

    def record(self, request: ModelRequest, reply: ModelReply) -> None:
        entry = {
            "key": reply.key,
            "node": request.node_id,
            "item": request.item,
            "turn": request.turn,
            "model": request.model,
            "request": {"messages": request.messages, "schema": request.schema},
            "response": {
                "text": reply.text,
                "tokens_in": reply.tokens_in,
                "tokens_out": reply.tokens_out,
                "cost_usd": reply.cost_usd,
                **({"mode": reply.mode} if reply.mode else {}),
                **({"finish_reason": reply.finish_reason} if reply.finish_reason else {}),
            },
        }
        self.append(entry)

    def append(self, entry: dict[str, Any]) -> None:
        """Add one line (secrets redacted) to the cassette being recorded."""
        line = json.dumps(self.redactor.value(entry), ensure_ascii=False) + "\n"
        with self._lock:
            self.paths[0].parent.mkdir(parents=True, exist_ok=True)
            with self.paths[0].open("a", encoding="utf-8") as f:
                f.write(line)

    def knows(self, node_id: str) -> bool:
        """Whether any line answers calls of `node_id`."""
        return any(e.get("node") == node_id for e in [*self.by_node, *self.by_case]) or any(
            e.get("node") == node_id for entries in self.by_key.values() for e in entries
        )

    def take(
        self, request: ModelRequest, key: str, in_order: bool = False
    ) -> dict[str, Any] | None:
        return self.find(key, request.node_id, request.item, request.turn, in_order)

    def find(
        self, key: str, node_id: str, item: int | None, turn: int, in_order: bool = False
    ) -> dict[str, Any] | None:
        """The line recorded under `key`, else the next hand-written line for this node call;
        with `in_order`, else the next recorded line of this node and turn whatever its key."""
        with self._lock:
            recorded = self.by_key.get(key)
            if recorded:
                return recorded.pop(0) if len(recorded) > 1 else recorded[0]
            for i, entry in enumerate(self.by_node):
                if entry["node"] != node_id:
                    continue
                if "item" in entry and entry["item"] != item:
                    continue
                if "turn" in entry and entry["turn"] != turn:
                    continue
                return self.by_node.pop(i)
            if in_order:
                for i, entry in enumerate(self.recorded):
                    if (entry.get("node"), entry.get("turn", 1)) == (node_id, turn):
                        return self.recorded.pop(i)
        return None


class ReplayModel:
    """Serves every call from a cassette; never imports litellm, never opens a socket.

    `in_order` also serves recorded lines whose key differs, in file order per node and turn:
    the advisor's request holds run ids and evidence, which differ from one workspace to the
    next, so `propose --replay` takes its calls in the order they were recorded.
    """

    def __init__(self, cassette: Cassette, in_order: bool = False):
        self.cassette = cassette
        self.in_order = in_order

    def for_case(self, case_id: str | None) -> ReplayModel:
        return ReplayModel(self.cassette.for_case(case_id), self.in_order)

    async def complete(self, request: ModelRequest) -> ModelReply:
        key = request_key(request)
        entry = self.cassette.take(request, key, self.in_order)
        if entry is None:
            where = f"node '{request.node_id}'" + (
                f" item {request.item}" if request.item is not None else ""
            )
            files = ", ".join(str(p) for p in self.cassette.paths) or "no cassette files"
            raise ModelError(
                f"no cassette entry for {where} (turn {request.turn}, key {key}) in {files}; "
                "record just the missing calls with --record-missing (or re-record with "
                "--record FILE) and a real model, or add a line "
                + json.dumps(
                    {
                        "node": request.node_id,
                        **({"item": request.item} if request.item is not None else {}),
                        "response": reply_shape(request.schema),
                    }
                ),
                "cassette_miss",
            )
        response = entry["response"]
        text = response.get("text")
        if text is None and "json" in response:
            text = json.dumps(response["json"], ensure_ascii=False)
        return ModelReply(
            text=text or "",
            model=entry.get("model") or request.model,
            tokens_in=response.get("tokens_in"),
            tokens_out=response.get("tokens_out"),
            cost_usd=response.get("cost_usd"),
            latency_ms=0,
            replayed=True,
            key=key,
            mode=response.get("mode"),
            finish_reason=response.get("finish_reason"),
        )


def reply_shape(schema: dict[str, Any] | None) -> dict[str, Any]:
    """A cassette `response` shaped for the node: JSON matching its schema's outline (each field
    a placeholder of its type), or text for a node without one."""
    if not schema:
        return {"text": "..."}
    value = _example(schema, 0)
    return {"json": value} if isinstance(value, dict) else {"text": json.dumps(value)}


def _example(schema: Any, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > 4:
        return "..."
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: _example(v, depth + 1) for k, v in props.items()}
    if kind == "array":
        return [_example(schema.get("items"), depth + 1)]
    return {"integer": 0, "number": 0, "boolean": False, "null": None}.get(str(kind), "...")


class RecordMissing:
    """`--record-missing`: serve what the cassette has; a call it misses goes to the real model,
    and only that call is appended to the cassette (`target`)."""

    def __init__(self, replay: ReplayModel, live: Any):
        self.replay = replay
        self.live = live

    def for_case(self, case_id: str | None) -> RecordMissing:
        return RecordMissing(self.replay.for_case(case_id), self.live)

    def prepare(self) -> None:
        prepare = getattr(self.live, "prepare", None)
        if prepare is not None:
            prepare()

    async def complete(self, request: ModelRequest) -> ModelReply:
        try:
            return await self.replay.complete(request)
        except ModelError as exc:
            if exc.error_type != "cassette_miss":
                raise
        return await self.live.complete(request)


def offline_cassettes(experience_dir: Path) -> list[Path]:
    """The cassettes `--offline` replays: every *.jsonl in the experience's cassettes/ folder."""
    return sorted((experience_dir / "cassettes").glob("*.jsonl"))
