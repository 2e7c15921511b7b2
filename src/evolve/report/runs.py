"""Reading a workspace's runs for people: which run an id means, and everything about it.

Readers work on a run that is still going or was killed: the database is in WAL mode (readers
never wait for a writer) and the event log is read tolerantly. A run whose process is gone without
`run.finished` is reported as interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evolve.errors import EvolveError, UsageError
from evolve.report.view import RunView, fold
from evolve.store.events import read_events
from evolve.store.state import RunQueries, StateStore
from evolve.store.workspace import Workspace


def open_store(workspace: Workspace) -> StateStore:
    if not workspace.database.exists():
        raise UsageError(f"no runs yet in {workspace.root}; start one with `evolve run DIR`")
    store = StateStore.open(workspace.database)
    store.reconcile()
    return store


@dataclass
class Inspection:
    row: dict[str, Any]
    view: RunView
    state_diff: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        run = {
            k: self.row.get(k)
            for k in (
                "id",
                "experience",
                "experience_dir",
                "spec_hash",
                "status",
                "reason",
                "started_at",
                "finished_at",
                "duration_ms",
                "model",
                "tokens_in",
                "tokens_out",
                "cost_usd",
                "parent_run_id",
                "parent_node",
                "log_path",
            )
        }
        run["status"] = self.view.status
        return {
            "run": run,
            "summary": self.view.summary(),
            "failures": [f.__dict__ for f in self.view.failures],
            "phases": self.view.phases,
            "edges": self.view.edges,
            "nodes": [n.to_json() for n in self.view.nodes.values()],
            "state_diff": self.state_diff,
        }


def inspect_run(workspace: Workspace, ref: str) -> Inspection:
    store = open_store(workspace)
    try:
        queries = RunQueries(store)
        row = queries.resolve(ref)
        log = workspace.log_path(row["id"])
        if not log.exists():
            raise EvolveError(
                f"the event log of run {row['id']} is missing ({log}); the state "
                f"store still has its state: evolve state {row['id']}"
            )
        events = read_events(log)
        view = fold(events, row["status"])
        view.run_id, view.experience = row["id"], row["experience"]
        view.reason = view.reason or row.get("reason")
        return Inspection(row, view, queries.state_diff(row["id"]))
    finally:
        store.close()


def list_runs(workspace: Workspace, experience: str | None, limit: int) -> list[dict[str, Any]]:
    if not workspace.database.exists():
        return []  # no runs is a fine answer for a listing
    store = open_store(workspace)
    try:
        return RunQueries(store).list(experience, limit)
    finally:
        store.close()


def run_state(workspace: Workspace, ref: str, field: str | None, history: bool) -> tuple[str, Any]:
    """(run id, the final state) or (run id, one field's value) or (run id, its writes)."""
    store = open_store(workspace)
    try:
        queries = RunQueries(store)
        row = queries.resolve(ref)
        final = queries.final_state(row["id"])
        if field is None:
            return row["id"], final
        if field not in final:
            from evolve.errors import did_you_mean

            raise UsageError(
                f"run {row['id']} has no value for state field '{field}' (never set, or not "
                f"declared){did_you_mean(field, final)}"
            )
        return row["id"], queries.history(row["id"], field) if history else final[field]
    finally:
        store.close()


def raw_events(workspace: Workspace, ref: str, node: str | None, kind: str | None):
    """The events of a run, filtered by node id and type (a prefix such as `node.` works)."""
    store = open_store(workspace)
    try:
        row = RunQueries(store).resolve(ref)
    finally:
        store.close()
    log = workspace.log_path(row["id"])
    if not log.exists():
        return
    for event in read_events(log):
        if node and event.get("node_id") != node:
            continue
        if kind and not (
            event["type"] == kind
            or (event["type"].startswith(kind.rstrip("*")) and kind.endswith((".", "*")))
        ):
            continue
        yield event
