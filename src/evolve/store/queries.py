"""Reading a workspace's runs back: which run an id means, listings, state, and everything
about one run (its store row, its folded event log and its state diff).

Readers work on a run that is still going or was killed: the database is in WAL mode (readers
never wait for a writer) and the event log is read tolerantly. A run whose process is gone without
`run.finished` is reported as interrupted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from evolve.errors import EvolveError, StoreError, UsageError
from evolve.store.log import read_events
from evolve.store.workspace import Workspace
from evolve.view import RunView, fold

if TYPE_CHECKING:
    from evolve.store.writer import StateStore


# a `cache:` lookup: through the partial index on cacheable results (migration 005)
CACHED_RESULT = (
    "select * from node_results where node_id = ? and fingerprint = ? and cacheable = 1 "
    "and created_at >= ? order by created_at desc, id desc limit 1"
)


class RunQueries:
    """Reading runs back: resolving ids, listing, state diffs and histories."""

    def __init__(self, store: StateStore):
        self.db = store.db

    def resolve(self, ref: str) -> dict[str, Any]:
        """A run by full id, unique prefix (with or without `r-`), or `last` (newest top-level)."""
        from evolve.errors import UsageError

        if not self.db["runs"].exists():
            raise UsageError("no runs yet in this workspace; start one with `evolve run DIR`")
        if ref == "last":
            rows = list(
                self.db.query(
                    "select * from runs where parent_run_id is null "
                    "order by started_at desc, rowid desc limit 1"
                )
            )
            if not rows:
                raise UsageError("no runs yet in this workspace; start one with `evolve run DIR`")
            return rows[0]
        prefix = ref if ref.startswith("r-") else f"r-{ref}"
        rows = list(
            self.db.query(
                "select * from runs where id = ? or id like ? order by id",
                [ref, prefix.replace("_", "\\_") + "%"],
            )
        )
        exact = [r for r in rows if r["id"] == ref]
        if exact or len(rows) == 1:
            return (exact or rows)[0]
        if rows:
            listed = ", ".join(r["id"] for r in rows[:8])
            raise UsageError(
                f"run id '{ref}' is ambiguous: it matches {listed}"
                + (" ..." if len(rows) > 8 else "")
            )
        ids = [r["id"] for r in self.db.query("select id from runs")]
        import difflib

        close = difflib.get_close_matches(prefix, ids, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UsageError(f"no run '{ref}' in this workspace{hint} (see `evolve runs`)")

    def list(self, experience: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first, with per-run node and item counts."""
        # the case runs of a suite are listed by the suite (inspect it), not one by one
        where = (
            "where (r.parent_run_id is null or r.parent_run_id not in "
            "(select id from runs where kind = 'suite'))"
        )
        params: list[Any] = []
        if experience:
            where, params = where + " and r.experience = ?", [experience]
        sql = f"""
            with node_status as (
                select run_id, node_id,
                    coalesce(
                        (select status from node_runs z where z.run_id = n.run_id
                          and z.node_id = n.node_id and z.attempt = 0 limit 1),
                        (select status from node_runs z where z.run_id = n.run_id
                          and z.node_id = n.node_id and z.item is null
                          order by attempt desc limit 1)) as status
                from (select distinct run_id, node_id from node_runs) n
            )
            select r.*,
                (select count(*) from node_status s where s.run_id = r.id
                  and s.status in ('succeeded', 'reused')) as nodes_succeeded,
                (select count(*) from node_status s where s.run_id = r.id
                  and s.status in ('failed', 'timeout')) as nodes_failed,
                (select count(*) from node_status s where s.run_id = r.id
                  and s.status = 'skipped') as nodes_skipped,
                (select count(distinct node_id || ':' || item) from node_runs i
                  where i.run_id = r.id and i.item is not null) as items
            from runs r {where}
            order by r.started_at desc, r.rowid desc limit ?"""
        return list(self.db.query(sql, [*params, limit]))

    def suite_cases(self, suite_id: str) -> list[dict[str, Any]]:
        """The case runs of a suite, in start order, each with its failing evals."""
        failing: dict[str, list[dict[str, Any]]] = {}
        for e in self.db.query(
            "select run_id, eval, reason, required from evals where passed = 0 and run_id in "
            "(select id from runs where parent_run_id = ?) order by id",
            [suite_id],
        ):
            failing.setdefault(e["run_id"], []).append(
                {"eval": e["eval"], "reason": e["reason"], "required": bool(e["required"])}
            )
        return [
            {
                "case_id": r["case_id"] or r["parent_node"],
                "repeat": r["repeat"] or 1,
                "run_id": r["id"],
                "status": r["status"],
                "score": r["score"],
                "passed": bool(r["evals_passed"]),
                "failing": failing.get(r["id"], []),
                "duration_ms": r["duration_ms"],
                "tokens_in": r["tokens_in"],
                "tokens_out": r["tokens_out"],
                "cost_usd": r["cost_usd"],
                "error": r["reason"] if r["status"] == "failed" else None,
            }
            for r in self.children(suite_id)
        ]

    def children(self, run_id: str) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "select * from runs where parent_run_id = ? order by started_at, rowid", [run_id]
            )
        )

    def eval_rows(self, run_id: str, suite: bool) -> list[dict[str, Any]]:
        """The eval results of a run, or of every case run of a suite."""
        scope = "(select id from runs where parent_run_id = ?)" if suite else "(?)"
        return list(
            self.db.query(f"select * from evals where run_id in {scope} order by id", [run_id])
        )

    def node_costs(self, run_id: str, suite: bool) -> dict[str, dict[str, Any]]:
        """Per node, summed over a run (or a suite's case runs): attempt time, tokens, cost."""
        scope = "(select id from runs where parent_run_id = ?)" if suite else "(?)"
        out: dict[str, dict[str, Any]] = {}
        for r in self.db.query(
            f"select node_id, sum(duration_ms) as d from node_runs where run_id in {scope} "
            "and status != 'skipped' group by node_id order by min(id)",
            [run_id],
        ):
            out[r["node_id"]] = {"duration_ms": r["d"], "tokens": None, "cost_usd": None}
        for r in self.db.query(
            "select node_id, sum(coalesce(tokens_in, 0) + coalesce(tokens_out, 0)) as t, "
            f"sum(cost_usd) as c from llm_calls where run_id in {scope} group by node_id",
            [run_id],
        ):
            entry = out.setdefault(r["node_id"], {"duration_ms": None})
            entry["tokens"], entry["cost_usd"] = r["t"], r["c"]
        return out

    def state_diff(self, run_id: str) -> list[dict[str, Any]]:
        """Per field the run wrote: its value before the run and after, and how many writes."""
        rows = self.db.query(
            "select s.field, s.initial, s.value, s.updated_by_node, count(h.id) as writes "
            "from state_snapshot s join state_history h on h.run_id = s.run_id "
            "and h.field = s.field where s.run_id = ? group by s.field order by min(h.id)",
            [run_id],
        )
        return [
            {
                "field": r["field"],
                "before": _loads(r["initial"]),
                "after": _loads(r["value"]),
                "writes": r["writes"],
                "last_writer": r["updated_by_node"],
            }
            for r in rows
        ]

    def final_state(self, run_id: str) -> dict[str, Any]:
        rows = self.db.query(
            "select field, value from state_snapshot where run_id = ? order by field", [run_id]
        )
        return {r["field"]: _loads(r["value"]) for r in rows}

    def history(self, run_id: str, field: str) -> list[dict[str, Any]]:
        rows = self.db.query(
            "select * from state_history where run_id = ? and field = ? order by id",
            [run_id, field],
        )
        return [
            {
                "ts": r["ts"],
                "node": r["node_id"],
                "item": r["item"],
                "old": _loads(r["value_old"]),
                "new": _loads(r["value_new"]),
                "reused_from": r["reused_from"],
            }
            for r in rows
        ]

    def kept_results(self, run_id: str) -> list[dict[str, Any]]:
        """The results a run kept (what its succeeded nodes and items produced), in order."""
        return list(
            self.db.query("select * from node_results where run_id = ? order by id", [run_id])
        )

    def cached_result(
        self, node_id: str, fingerprint: str, not_before: str | None
    ) -> dict[str, Any] | None:
        """The newest result any run kept for this node and fingerprint, executed no earlier
        than `not_before` (an ISO time; None: any age)."""
        rows = list(self.db.query(CACHED_RESULT, [node_id, fingerprint, not_before or ""]))
        return rows[0] if rows else None

    def node_prints(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Per node: the digests of its definition, files and model as the run saw them."""
        rows = self.db.query("select * from node_prints where run_id = ?", [run_id])
        return {r["node_id"]: {**r, "files": _loads(r["files"]) or {}} for r in rows}


@dataclass(frozen=True)
class NodeOutcome:
    """How one node of a run ended, by its log: what `resume` says about what runs again."""

    id: str
    status: str
    items: int
    items_failed: int
    items_succeeded: int


def node_outcomes(row: dict[str, Any]) -> list[NodeOutcome]:
    """Every node of the run `row` (a `runs` row), folded from its log."""
    from pathlib import Path

    path = Path(row["log_path"] or "")
    if not path.is_file():
        return []
    view = fold(read_events(path), row["status"])
    return [
        NodeOutcome(
            n.id,
            n.status,
            len(n.items),
            n.items_failed,
            n.items_succeeded,
        )
        for n in view.nodes.values()
    ]


def _loads(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def open_store(workspace: Workspace) -> StateStore:
    """Open the store for reading: read commands never hold a write lock.

    Only when the database needs upkeep (a migration from an older evolve, or runs whose
    process is gone, which `reconcile` ends as their log says) is it opened for writing, once,
    briefly, before the read-only open. A read-only file is read as it is.
    """
    if not workspace.database.exists():
        raise UsageError(f"no runs yet in {workspace.root}; start one with `evolve run DIR`")
    from evolve.store.writer import StateStore  # sqlite_utils: only when there is a database

    reader = StateStore.open(workspace.database, readonly=True)
    try:
        stale = reader.needs_upkeep()
    except BaseException:
        reader.db.conn.close()
        raise
    if not stale:
        return reader
    reader.db.conn.close()
    try:
        writer = StateStore.open(workspace.database)
        try:
            writer.reconcile()
        finally:
            writer.close()
    except StoreError as exc:
        if exc.kind != "readonly":
            raise
    return StateStore.open(workspace.database, readonly=True)


@dataclass
class Inspection:
    row: dict[str, Any]
    view: RunView
    state_diff: list[dict[str, Any]]
    cases: list[dict[str, Any]] | None = None  # a suite's case runs

    def suite_summary(self) -> dict[str, Any]:
        from evolve.evals.summary import spread_of

        cases = self.cases or []
        return {
            "score": self.row.get("score"),
            "pass_rate": self.row.get("pass_rate"),
            "spread": spread_of([(c["case_id"], c["score"]) for c in cases]),
            "cases": cases,
        }

    def to_json(self) -> dict[str, Any]:
        return self._json([n.to_json() for n in self.view.nodes.values()])

    def json_chunks(self) -> Iterator[str]:
        """The text of `json.dumps(self.to_json(), ensure_ascii=False)`, in pieces: a node's
        items one at a time, so a run of a million events is printed without ever holding its
        whole text, or a JSON value for every item, in memory."""
        whole = self._json(None)
        yield "{"
        for position, (key, value) in enumerate(whole.items()):
            yield (", " if position else "") + _dumps(key) + ": "
            if key != "nodes":
                yield _dumps(value)
                continue
            yield "["
            for number, node in enumerate(self.view.nodes.values()):
                head = _dumps(node.head_json())[:-1]  # its items follow, one at a time
                yield (", " if number else "") + head + ', "items": ['
                for index, batch in enumerate(_batches(node.items_json(), 1000)):
                    yield (", " if index else "") + _dumps(batch)[1:-1]  # a thousand at once
                yield "]}"
            yield "]"
        yield "}"

    def _json(self, nodes: list[dict[str, Any]] | None) -> dict[str, Any]:
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
                "kind",
                "case_id",
                "repeat",
                "score",
                "evals_passed",
                "pass_rate",
            )
        }
        run["status"] = self.view.status
        return {
            "run": run,
            "summary": self.view.summary(),
            "failures": [f.__dict__ for f in self.view.failures],
            "phases": self.view.phases,
            "edges": self.view.edges,
            "nodes": nodes,
            "state_diff": self.state_diff,
            "evals": self.view.evals,
            **({"suite": self.suite_summary()} if self.cases is not None else {}),
        }


def _batches(values: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while batch := list(islice(values, size)):
        yield batch


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


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
        cases = queries.suite_cases(row["id"]) if row.get("kind") == "suite" else None
        return Inspection(row, view, queries.state_diff(row["id"]), cases)
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
