"""Kept results: what each succeeded node or item produced, kept so a later run can reuse it.

Every success a log reports has its result kept, even when the process is killed right after
the line: the result is in the log line itself, or in the store before the line.

- An executed result travels in the `node.finished` line of its attempt (`fingerprint` and
  `result`), which the log writes whole before anything else hears of the success. Its
  `node_results` row is queued with the run's other rows (see `store.writer`), so a run pays one
  commit per batch, not one per result, and a kill can lose the rows of the last batch.
- A result whose encoding exceeds `LOG_RESULT_BYTES` is not copied into the log (it would make
  the log hold it twice, with its `state.write`): its row is committed to the store, in a
  transaction of its own, before the line is written, and the line carries only the fingerprint.
- A reused result (`node.reused`) is not copied either: the line names the run that executed it
  and the fingerprint, and that run's row holds it.

`restore` brings back the rows a killed run's store lost, from its log. `StateStore.reconcile`
calls it when it ends a run whose process is gone, before that run can be resumed or its results
looked up, so `resume`, `run --from` and `cache:` read complete rows from the store alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evolve.events import EventType

LOG_RESULT_BYTES = 64 * 1024  # a result encoded larger than this is committed, not logged


class ResultStore(Protocol):
    """The state store as kept results use it (`store.writer.StateStore`, which restores through
    this module, so it is described here rather than imported)."""

    def result_values(self, row: dict[str, Any]) -> tuple[Any, ...]: ...

    def queue_result(self, values: tuple[Any, ...]) -> None: ...

    def commit_results(self, values: list[tuple[Any, ...]]) -> None: ...

    def kept_keys(self, run_id: str) -> list[tuple[str, int | None, str]]: ...

    def origin_result(
        self, node_id: str, fingerprint: str, origin: str
    ) -> tuple[Any, Any, str, str] | None: ...


@dataclass(slots=True)
class KeptResult:
    """One `node_results` row: what a succeeded node or item produced, and its fingerprint."""

    node_id: str
    item: int | None
    fingerprint: str
    delta: dict[str, Any]
    edge_output: Any
    origin_run_id: str  # the run that executed it: this one, or the one a reused result is from
    created_at: str | None = None  # when it was executed (kept as is when reused)
    cacheable: bool = True  # its node has `cache:`: found by fingerprint from any run

    def row(self, run_id: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "node_id": self.node_id,
            "item": self.item,
            "fingerprint": self.fingerprint,
            "delta": self.delta,
            "edge_output": self.edge_output,
            "origin_run_id": self.origin_run_id,
            "created_at": self.created_at,
            "cacheable": self.cacheable,
        }


def keep(store: ResultStore, run_id: str, kept: KeptResult) -> dict[str, Any] | None:
    """Keep a result of run `run_id`; returns what its success line carries (`result`), or
    None when the line need not carry it (reused, or committed now because it is large)."""
    values = store.result_values(kept.row(run_id))
    delta, edge_output = values[4], values[5]
    if kept.origin_run_id != run_id:
        store.queue_result(values)
        return None
    once = delta == edge_output  # the default edge output is the delta: the line holds it once
    if len(delta) + (0 if once else len(edge_output)) > LOG_RESULT_BYTES:
        store.commit_results([values])
        return None
    store.queue_result(values)
    if once:
        return {"delta": kept.delta}
    return {"delta": kept.delta, "edge_output": kept.edge_output}


def restore(store: ResultStore, run_id: str, log_path: Path, *, dry: bool = False) -> int:
    """Add the `node_results` rows of run `run_id` that its log reports and the store lacks
    (the last batch of a killed run, or every row of a store rebuilt by `evolve doctor`).
    Returns how many (with `dry`, how many it would add, adding none). The runs that executed
    its reused results must have been restored first (`reconcile` and `doctor` go in the order
    runs started)."""
    from evolve.store.log import read_events

    if not log_path.is_file():
        return 0
    have = Counter(store.kept_keys(run_id))
    missing: list[KeptResult] = []
    for e in read_events(log_path, containing=b'"fingerprint"'):
        kind = e.get("type")
        if kind not in (EventType.NODE_FINISHED, EventType.NODE_REUSED) or "fingerprint" not in e:
            continue
        key = (e.get("node_id"), e.get("item"), e["fingerprint"])
        if have[key] > 0:
            have[key] -= 1
            continue
        if kind == EventType.NODE_FINISHED:
            found = e.get("result")
            if isinstance(found, dict) and "delta" in found:
                delta = found["delta"]
                edge = found.get("edge_output", delta)
                missing.append(KeptResult(*key, delta, edge, run_id, e.get("ts")))
        else:
            row = store.origin_result(key[0], key[2], e.get("from_run") or "")
            if row is not None:
                missing.append(KeptResult(*key, *row))
    if missing and not dry:
        store.commit_results([store.result_values(k.row(run_id)) for k in missing])
    return len(missing)
