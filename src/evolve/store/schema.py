"""The state store's schema (SPEC §5), grown only through named, ordered migrations.

Tables: `runs`, `node_runs`, `state_snapshot`, `state_history`, `llm_calls`, `evals`, and
`node_results` (what every succeeded node and item produced, with its fingerprint); every
`run_id` (and `runs.parent_run_id`) is a declared foreign key to `runs.id`. Each step in
`MIGRATIONS` is applied once, in order, and recorded by name in `_migrations`; a new column or
table is a new step at the end, never an edit of an old one.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlite_utils import Database


def _m001_initial(db: Database) -> None:
    db["runs"].create(
        {
            "id": str,
            "experience": str,
            "experience_dir": str,
            "spec_hash": str,
            "status": str,
            "reason": str,
            "started_at": str,
            "finished_at": str,
            "duration_ms": int,
            "args": str,
            "model": str,
            "tokens_in": int,
            "tokens_out": int,
            "cost_usd": float,
            "parent_run_id": str,
            "parent_node": str,
            "pid": int,
            "host": str,
            "log_path": str,
        },
        pk="id",
    )
    db["runs"].create_index(["experience", "started_at"])
    db["node_runs"].create(
        {
            "id": int,
            "run_id": str,
            "node_id": str,
            "item": int,
            "attempt": int,
            "status": str,
            "started_at": str,
            "finished_at": str,
            "duration_ms": int,
            "error_type": str,
            "error": str,
            "metrics": str,
        },
        pk="id",
    )
    db["node_runs"].create_index(["run_id", "node_id"])
    db["state_snapshot"].create(
        {
            "run_id": str,
            "field": str,
            "value": str,
            "initial": str,
            "updated_at": str,
            "updated_by_node": str,
        },
        pk=("run_id", "field"),
    )
    db["state_history"].create(
        {
            "id": int,
            "run_id": str,
            "field": str,
            "value_old": str,
            "value_new": str,
            "node_id": str,
            "item": int,
            "ts": str,
        },
        pk="id",
    )
    db["state_history"].create_index(["run_id", "field"])
    db["llm_calls"].create(
        {
            "id": int,
            "run_id": str,
            "node_id": str,
            "item": int,
            "attempt": int,
            "model": str,
            "key": str,
            "request": str,
            "response": str,
            "tokens_in": int,
            "tokens_out": int,
            "cost_usd": float,
            "latency_ms": int,
            "replayed": int,
            "ts": str,
        },
        pk="id",
    )
    db["llm_calls"].create_index(["run_id"])


def _m002_evals(db: Database) -> None:
    """Scores: one row per eval per run, the run's score, and suites linking their case runs."""
    runs = db["runs"]
    for column, kind in (
        ("kind", str),  # null for a run, 'suite' for an `evolve eval` suite run
        ("case_id", str),
        ("repeat", int),
        ("score", float),
        ("evals_passed", int),  # 1/0; null when the experience has no evals
        ("pass_rate", float),  # suites: the share of case runs that passed their evals
        ("cases", int),  # suites: how many case runs
        ("spec_files", str),  # {path: sha256} of the version run (top-level runs and suites)
    ):
        runs.add_column(column, kind)
    db["evals"].create(
        {
            "id": int,
            "run_id": str,
            "case_id": str,
            "eval": str,
            "kind": str,
            "score": float,
            "passed": int,
            "required": int,
            "weight": float,
            "reason": str,
            "error": int,
            "ts": str,
        },
        pk="id",
    )
    db["evals"].create_index(["run_id"])
    db["runs"].create_index(["parent_run_id"])


def _m003_results(db: Database) -> None:
    """What a later run needs to reuse a result without executing it (see docs/resume.md)."""
    db["runs"].add_column("resumed_from", str)  # the run whose results this one reused
    db["runs"].add_column("options", str)  # the run's model and replay options, for resume
    db["state_history"].add_column("reused_from", str)  # the run that made a reused write
    db["node_runs"].add_column("reused_from", str)  # status `reused`: the run that executed it
    db["node_results"].create(
        {
            "id": int,
            "run_id": str,
            "node_id": str,
            "item": int,
            "fingerprint": str,
            "delta": str,
            "edge_output": str,
            "origin_run_id": str,  # the run that executed the node (this run, or an earlier one)
            "created_at": str,
        },
        pk="id",
    )
    db["node_results"].create_index(["run_id", "node_id"])
    db["node_results"].create_index(["node_id", "fingerprint"])
    db["node_prints"].create(  # per run and node: the parts of its fingerprint besides inputs
        {
            "run_id": str,
            "node_id": str,
            "digest": str,
            "definition": str,
            "files": str,  # {path: sha256}
            "model": str,
        },
        pk=("run_id", "node_id"),
    )


LINKS = [  # (table, column) -> runs.id
    ("node_runs", "run_id"),
    ("llm_calls", "run_id"),
    ("state_history", "run_id"),
    ("state_snapshot", "run_id"),
    ("evals", "run_id"),
    ("node_results", "run_id"),
    ("runs", "parent_run_id"),
]


def _m004_links(db: Database) -> None:
    """Declare the links to `runs.id`, so Datasette and sqlite-utils show them (a run's rows are
    one click away). Declared, not enforced (`PRAGMA foreign_keys` stays off): the event log is
    the record, and a row rebuilt from a log must never be refused for its order of arrival.
    sqlite-utils rebuilds each table with its rows and indexes."""
    db.add_foreign_keys([(table, column, "runs", "id") for table, column in LINKS])


def _m005_result_lookup(db: Database) -> None:
    """Kept results are found by run (`resume`, `run --from`: the run's rows in order) and, for
    `cache:`, by node and fingerprint. An index led by the fingerprint took a random-order insert
    for every result of every node, so keeping results grew dearer as the workspace grew (a
    5,000-item fan-out 28% slower after 40 runs). Now the run-led index holds the fingerprint too
    (a run's inserts stay together), and the fingerprint-led one holds only the results of nodes
    with `cache:` (`cacheable`: 1 for every result kept before this step, or rebuilt from a log)."""
    db["node_results"].add_column("cacheable", int, not_null_default=1)
    db.execute("drop index if exists idx_node_results_node_id_fingerprint")
    db.execute("drop index if exists idx_node_results_run_id_node_id")
    db["node_results"].create_index(["run_id", "node_id", "fingerprint"])
    db.execute(
        "create index idx_node_results_cache on node_results (node_id, fingerprint) "
        "where cacheable = 1"
    )


MIGRATIONS: list[tuple[str, Callable[[Database], None]]] = [
    ("001_initial", _m001_initial),
    ("002_evals", _m002_evals),
    ("003_results", _m003_results),
    ("004_links", _m004_links),
    ("005_result_lookup", _m005_result_lookup),
]
