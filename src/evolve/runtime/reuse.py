"""Reuse: which kept results a run applies instead of executing a node.

A run may reuse the results of one earlier run (`evolve resume RUN`, `evolve run DIR --from
RUN`): a node (or item) is reused when that run kept a result for it with the same fingerprint
(see `runtime.fingerprint`), unless it must run again: it is named by `--rerun`, or a step
upstream of it executed in this run. Independently, a node with `cache:` reuses a result kept
by any earlier run with the same fingerprint, younger than its `ttl`, unless `--no-cache` is
given or it is named by `--rerun`. Everything else executes, and keeps its result.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from evolve.runtime.fingerprint import NodePrint, file_digests, sources_key, value_digest
from evolve.spec.model import Node

CacheLookup = Callable[[str, str, str | None], dict[str, Any] | None]


@dataclass(frozen=True)
class Kept:
    """A result an earlier run kept: what to apply, and where it came from."""

    node_id: str
    item: int | None
    fingerprint: str
    delta: dict[str, Any]
    edge_output: Any
    origin: str  # the run that executed the node
    created_at: str
    cached: bool = False  # found through `cache:` rather than the run being reused

    @classmethod
    def from_row(cls, row: dict[str, Any], cached: bool = False) -> Kept:
        return cls(
            row["node_id"],
            row["item"],
            row["fingerprint"],
            json.loads(row["delta"]),
            json.loads(row["edge_output"]),
            row["origin_run_id"] or row["run_id"],
            row["created_at"],
            cached,
        )


@dataclass
class Reuse:
    """The reuse rules of one run. With no source run and no cache, nothing is reused."""

    experience: str
    root: Path
    model_for: Callable[[Node], str | None]
    source: str | None = None  # the run whose results may be reused
    kept: Iterable[dict[str, Any]] = ()  # that run's node_results rows, in order
    rerun: frozenset[str] = frozenset()  # steps that must execute
    cache: bool = True  # False: --no-cache
    lookup: CacheLookup | None = None  # (node_id, fingerprint, not_before) -> row
    _prints: dict[str, NodePrint] = field(default_factory=dict)
    _files: dict[tuple[Any, ...], dict[str, str]] = field(default_factory=dict)
    _kept: dict[tuple[str, int | None, str], deque[dict[str, Any]]] = field(default_factory=dict)
    _digests: dict[int, tuple[Any, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for row in self.kept:
            key = (row["node_id"], row["item"], row["fingerprint"])
            self._kept.setdefault(key, deque()).append(row)

    def print_of(self, node: Node) -> NodePrint:
        """The node's part of its fingerprints, computed once per run."""
        found = self._prints.get(node.id)
        if found is None:
            model = self.model_for(node) if node.kind in ("agent", "skill") else None
            key = sources_key(node)
            files = self._files.get(key)
            if files is None:
                files = self._files[key] = file_digests(node, self.root)
            found = NodePrint.of(self.experience, node, self.root, model, files)
            self._prints[node.id] = found
        return found

    def may_reuse(self, node: Node) -> bool:
        """Whether any kept result could apply to this node in this run."""
        if node.id in self.rerun:
            return False
        return self.source is not None or (node.cache is not None and self.cache)

    def fingerprint(self, node: Node, inputs: dict[str, Any]) -> str:
        """The node's print with these inputs; each state value read and each predecessor's edge
        output is hashed once per value it takes (the items of a fan-out share them), not once
        per item: hashing them per item made a fan-out quadratic in its items. So is a list or
        object among its arguments (`args: {rows: $.items}` on every item of a fan-out)."""
        hashed: dict[str, Any] = {}
        for key, value in inputs.items():
            if key in _SHARED:
                if isinstance(value, dict) and value:
                    value = {name: self._digest_of(v) for name, v in value.items()}
            elif key[:1] not in ("_", "$") and _structure(value):  # an argument
                value = self._digest_of(value)
            hashed[key] = value
        return self.print_of(node).with_inputs(hashed)

    def _digest_of(self, value: Any) -> str:
        if not value and type(value) in _EMPTY:  # a chain's `{}` outputs: each a new object
            return _EMPTY[type(value)]
        seen = self._digests.get(id(value))
        if seen is None or seen[0] is not value:  # pinned, so the id is not reused meanwhile
            seen = self._digests[id(value)] = (value, value_digest(value))
        return seen[1]

    def find(self, node: Node, item: int | None, fingerprint: str, forced: bool) -> Kept | None:
        """The kept result to apply for this node and item, or None: execute it."""
        if node.id in self.rerun:
            return None
        if not forced:
            rows = self._kept.get((node.id, item, fingerprint))
            if rows:
                return Kept.from_row(rows.popleft())
        if node.cache is not None and self.cache and self.lookup is not None:
            row = self.lookup(node.id, fingerprint, _not_before(node.cache.ttl_s))
            if row is not None:
                return Kept.from_row(row, cached=True)
        return None


_SHARED = frozenset({"_state", "_edge_inputs"})  # inputs every item of a node shares
_EMPTY = {dict: value_digest({}), list: value_digest([])}


def _structure(value: Any) -> bool:
    """A non-empty list or object: what enters a fingerprint as its digest."""
    return isinstance(value, list | dict) and bool(value)


def _not_before(ttl_s: int | None) -> str | None:
    if ttl_s is None:
        return None
    moment = datetime.now(UTC) - timedelta(seconds=ttl_s)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
