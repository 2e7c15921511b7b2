"""The state store's writer: `.evolve/state.sqlite`, written through sqlite-utils.

The schema and its migrations are in `store.schema`, reading back is `store.queries`.
The database is in WAL mode with a busy timeout. Node and state records of a running run are
queued and written in one short transaction at most `FLUSH_SECONDS` later (or as soon as
`FLUSH_ROWS` are waiting): a run then costs one commit per batch instead of one per row, several
evolve processes can share a workspace, and readers never wait for a running run. The event log,
written line by line, stays the first record; a kill can lose at most the last batch here, never
the database's consistency.
A run whose process died without finishing is reported as `interrupted` (see `reconcile`).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from evolve import jsonvalue
from evolve.errors import StoreError
from evolve.events import EventType
from evolve.store.log import utc_now
from evolve.store.schema import MIGRATIONS

BUSY_TIMEOUT_MS = 30_000
FLUSH_SECONDS = 0.05
FLUSH_ROWS = 500
KEEP_RESULT = (
    "insert into node_results (run_id, node_id, item, fingerprint, delta, edge_output, "
    "origin_run_id, created_at, cacheable) values (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """One line a person can act on, for what SQLite said about the workspace database."""
    said = str(exc)
    text = said.lower()
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StoreError(
            f"the state store {path} is corrupted ({said}); the event logs still hold every "
            "run: `evolve doctor --repair` rebuilds it from them",
            "corrupt",
        )
    if "readonly" in text or "read-only" in text:
        return StoreError(
            f"the state store {path} is read-only ({said}); evolve must write it: check the "
            "permissions of the file and its folder",
            "readonly",
        )
    if "full" in text:
        return StoreError(
            f"the state store {path} could not be written: the disk is full ({said}); free "
            "some space, then `evolve doctor` checks the workspace",
            "full",
        )
    return StoreError(f"the state store {path} could not be used: {said}")


def when_free(step: Callable[[], Any]) -> Any:
    """Run `step`, again while SQLite answers busy, for up to the busy timeout.

    SQLite's busy handler covers locks taken inside transactions, not all of them: switching a
    new database to WAL while another process does the same, or reading one whose WAL index
    another process is still building, answers `database is locked` at once. Two evolve
    processes that open a fresh workspace together meet exactly that.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


class StateStore:
    """One connection to the workspace database. Open with `StateStore.open(path)`.

    Every value it writes passes through the secrets redactor first (SPEC §8), so a key that a
    tool put into state, an argument or an error message never lands in the database.
    """

    def __init__(self, db: Database, path: Path):
        from evolve.redaction import Redactor

        self.db = db
        self.path = path
        self.failure: StoreError | None = None  # the first write that failed during a run
        self.on_failure: Callable[[StoreError], None] | None = None
        self._redactor = Redactor()
        self._redact = self._redactor.text
        self._pending: list[tuple[str, dict[str, Any]]] = []  # (table, row), in write order
        self._results: list[tuple[Any, ...]] = []  # node_results rows, encoded (KEEP_RESULT)
        self._snapshots: dict[tuple[str, str], dict[str, Any]] = {}
        self._timer: Any = None

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> StateStore:
        """Open (and migrate) the store; a store that cannot be opened is a `StoreError`.

        `readonly` opens it for reading only, which works on a read-only file too.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if readonly:
                conn = sqlite3.connect(
                    f"{path.absolute().as_uri()}?mode=ro",
                    uri=True,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                when_free(lambda: conn.execute("select count(*) from sqlite_master").fetchone())
                return cls(Database(conn, execute_plugins=False), path)
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            when_free(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = NORMAL")
            store = cls(Database(conn, execute_plugins=False), path)
            store.migrate()
        except sqlite3.DatabaseError as exc:
            raise store_error(path, exc) from None
        return store

    def _json(self, value: Any) -> str:
        return jsonvalue.record(self._redactor.value(value))

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.db.conn.close()

    def _queue(self, table: str, row: dict[str, Any]) -> None:
        """Queue a row whose values are as SQLite stores them (structures encoded by the caller,
        through `_json`, which redacts)."""
        self._pending.append((table, row))
        self._schedule()

    def _schedule(self) -> None:
        """Flush now if the batch is full, else make sure a flush follows soon."""
        if len(self._pending) + len(self._results) >= FLUSH_ROWS:
            self.flush()
        elif self._timer is None:
            try:
                import asyncio

                self._timer = asyncio.get_running_loop().call_later(
                    FLUSH_SECONDS, self._flush_later
                )
            except RuntimeError:  # no running loop: nobody would flush later, so now
                self.flush()

    def _flush_later(self) -> None:
        """The batch timer's flush: a failure here has no caller to raise to, so it is kept in
        `failure` and reported through `on_failure` (a run stops), and the rows stay queued
        for the next flush."""
        self._timer = None
        try:
            self.flush()
        except StoreError as exc:
            if self.failure is None:
                self.failure = exc
                if self.on_failure is not None:
                    self.on_failure(exc)

    def flush(self) -> None:
        """Write everything queued, in one transaction; on failure the rows stay queued."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending and not self._snapshots and not self._results:
            return
        with self.transaction():
            # rows of one table and shape go in one executemany: the writers below queue
            # values encoded already (sqlite-utils' insert_all would inspect each one again)
            by_shape: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
            for table, row in self._pending:
                by_shape.setdefault((table, tuple(row)), []).append(tuple(row.values()))
            for (table, columns), rows in by_shape.items():
                names = ", ".join(f'"{c}"' for c in columns)
                marks = ", ".join("?" * len(columns))
                self.db.conn.executemany(f"insert into {table} ({names}) values ({marks})", rows)
            if self._results:
                self.db.conn.executemany(KEEP_RESULT, self._results)
            if self._snapshots:
                self.db["state_snapshot"].upsert_all(
                    self._snapshots.values(), pk=("run_id", "field")
                )
        self._pending, self._snapshots, self._results = [], {}, []

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A short write transaction that takes the write lock up front (no upgrade deadlock).
        A database that cannot be written (full, read-only, corrupted) is a `StoreError`."""
        try:
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self.db.conn.in_transaction:
                    self.db.conn.execute("ROLLBACK")
                raise
            self.db.conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
                raise  # evolve's own mistake, not the database's state
            if self.db.conn.in_transaction:
                self.db.conn.execute("ROLLBACK")
            raise store_error(self.path, exc) from None

    def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen, in order; returns their names."""
        applied: list[str] = []
        with self.transaction():
            if not self.db["_migrations"].exists():
                self.db["_migrations"].create({"name": str, "applied_at": str}, pk="name")
            done = {row["name"] for row in self.db["_migrations"].rows}
            for name, step in MIGRATIONS:
                if name not in done:
                    step(self.db)
                    self.db["_migrations"].insert({"name": name, "applied_at": utc_now()})
                    applied.append(name)
        return applied

    # -- runs ------------------------------------------------------------------------------------

    def begin_run(self, run: dict[str, Any], *, owned: bool = True) -> None:
        """Insert a run's row as `running`. An owned run belongs to this process (its pid is
        kept, so `reconcile` can tell when the process is gone); a row rebuilt from a log has
        no pid, so it reads as interrupted until its end is recorded."""
        row = {
            **run,
            "status": "running",
            "pid": os.getpid() if owned else None,
            "host": socket.gethostname(),
            "args": self._json(run.get("args", {})),
            "options": self._json(run["options"]) if run.get("options") else None,
        }
        if run.get("spec_files") is not None:
            row["spec_files"] = self._json(run["spec_files"])
        with self.transaction():
            self.db["runs"].insert(row)

    def finish_run(self, run_id: str, *, durable: bool = False, **fields: Any) -> None:
        """Write every queued row, then the run's end. `durable` commits with a full sync, so the
        end survives a power loss too, not just a killed process."""
        if fields.get("reason"):
            fields["reason"] = self._redact(fields["reason"])
        self.flush()
        if durable:
            self.db.conn.execute("PRAGMA synchronous = FULL")
        try:
            with self.transaction():
                self.db["runs"].update(run_id, fields)
        finally:
            if durable:
                self.db.conn.execute("PRAGMA synchronous = NORMAL")

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = list(self.db["runs"].rows_where("id = ?", [run_id]))
        return rows[0] if rows else None

    def needs_upkeep(self) -> bool:
        """Whether a reader would see a stale store: migrations this database has not had, or
        runs of this host still `running` whose process is gone (see `reconcile`)."""
        try:
            if not self.db["_migrations"].exists():
                return True
            done = {row["name"] for row in self.db["_migrations"].rows}
            if any(name not in done for name, _ in MIGRATIONS):
                return True
            return any(
                not process_alive(r["pid"])
                for r in self.db["runs"].rows_where(
                    "status = 'running' and host = ?", [socket.gethostname()], select="pid"
                )
            )
        except sqlite3.DatabaseError as exc:
            raise store_error(self.path, exc) from None

    def reconcile(self) -> int:
        """End the runs on this host whose process is gone. Returns how many.

        The log decides how: a log whose last event is `run.finished` (the store missed the
        end, e.g. a full disk at the final write) gives its status, reason and figures; any
        other run was killed or crashed and is `interrupted`.
        """
        host = socket.gethostname()
        dead = [
            r
            for r in self.db["runs"].rows_where(
                "status = 'running' and host = ?", [host], order_by="started_at"
            )
            if not process_alive(r["pid"])
        ]
        for row in dead:  # in the order they started: a run restored before those reusing it
            self._end_dead(row)
        return len(dead)

    def _end_dead(self, row: dict[str, Any]) -> None:
        """End a run whose process is gone: first the kept results its log reports and the
        store lost with the last batch (see `store.kept`), then its ending, as its log says."""
        from evolve.store.kept import restore

        if row.get("log_path"):
            restore(self, row["id"], Path(row["log_path"]))
        self.finish_run(row["id"], **_ending(row.get("log_path")))

    def reconcile_ended(self, run_id: str) -> None:
        """End one run whose process is gone, as its log says (see `reconcile`)."""
        row = self.run(run_id)
        if row is not None and row["status"] == "running":
            self.finish_run(run_id, **_ending(row.get("log_path")))

    # -- nodes -----------------------------------------------------------------------------------

    def record_attempt(self, row: dict[str, Any]) -> None:
        if row.get("metrics") is not None:
            row = {**row, "metrics": self._json(row["metrics"])}
        if row.get("error"):
            row = {**row, "error": self._redact(row["error"])}
        self._queue("node_runs", row)

    # -- state -----------------------------------------------------------------------------------

    def init_state(self, run_id: str, values: dict[str, Any]) -> None:
        now = utc_now()
        with self.transaction():
            self.db["state_snapshot"].insert_all(
                {
                    "run_id": run_id,
                    "field": name,
                    "value": self._json(value),
                    "initial": self._json(value),
                    "updated_at": now,
                    "updated_by_node": None,
                }
                for name, value in values.items()
            )

    def write_state(self, run_id: str, writes: list[dict[str, Any]]) -> None:
        """Record writes `{field, old, new, node_id, item}` in history and snapshot."""
        now = utc_now()
        for w in writes:
            new = self._json(w["new"])
            self._queue(
                "state_history",
                {
                    "run_id": run_id,
                    "field": w["field"],
                    "value_old": self._json(w["old"]),
                    "value_new": new,
                    "node_id": w["node_id"],
                    "item": w.get("item"),
                    "reused_from": w.get("reused_from"),
                    "ts": now,
                },
            )
            key = (run_id, w["field"])
            self._snapshots[key] = {
                "run_id": run_id,
                "field": w["field"],
                "value": new,
                "updated_at": now,
                "updated_by_node": w["node_id"],
            }

    # -- evals -----------------------------------------------------------------------------------

    def record_evals(self, run_id: str, case_id: str | None, results: list[dict[str, Any]]) -> None:
        """One row per eval result {name, kind, score, passed, required, weight, reason, error}."""
        now = utc_now()
        for r in results:
            self._queue(
                "evals",
                {
                    "run_id": run_id,
                    "case_id": case_id,
                    "eval": r["name"],
                    "kind": r["kind"],
                    "score": r["score"],
                    "passed": int(r["passed"]),
                    "required": int(r["required"]),
                    "weight": r["weight"],
                    "reason": self._redact(r["reason"]) if r.get("reason") else None,
                    "error": int(r.get("error", False)),
                    "ts": now,
                },
            )

    # -- kept results ----------------------------------------------------------------------------

    def result_values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """A `node_results` row as `KEEP_RESULT` takes it: delta and edge output encoded (and
        redacted), so a caller can see their size before deciding where the result goes."""
        delta = self._json(row["delta"])
        same = row["edge_output"] is row["delta"]  # the default edge output: encoded once
        return (
            row["run_id"],
            row["node_id"],
            row["item"],
            row["fingerprint"],
            delta,
            delta if same else self._json(row["edge_output"]),
            row["origin_run_id"],
            row.get("created_at") or utc_now(),
            int(row.get("cacheable", True)),
        )

    def queue_result(self, values: tuple[Any, ...]) -> None:
        """Keep a result with the next batch (its success line carries it meanwhile)."""
        self._results.append(values)
        self._schedule()

    def commit_results(self, values: list[tuple[Any, ...]]) -> None:
        """Keep results now, in one short transaction of their own (a result too large for its
        success line is committed before the line is written; see `store.kept`)."""
        with self.transaction():
            self.db.conn.executemany(KEEP_RESULT, values)

    def kept_keys(self, run_id: str) -> list[tuple[str, int | None, str]]:
        """(node, item, fingerprint) of every result run `run_id` has in the store."""
        return self.db.conn.execute(
            "select node_id, item, fingerprint from node_results where run_id = ?", [run_id]
        ).fetchall()

    def origin_result(
        self, node_id: str, fingerprint: str, origin: str
    ) -> tuple[Any, Any, str, str] | None:
        """(delta, edge output, origin run, created at) of a result run `origin` executed, as any
        run keeps it: what a `node.reused` line stands for."""
        found = (
            self.db.conn.execute(  # the origin run's own row, through its index
                "select delta, edge_output, created_at from node_results where run_id = ? and "
                "node_id = ? and fingerprint = ? limit 1",
                [origin, node_id, fingerprint],
            ).fetchone()
            or self.db.conn.execute(  # or a row reusing it (the origin's is gone)
                "select delta, edge_output, created_at from node_results where node_id = ? and "
                "fingerprint = ? and origin_run_id = ? limit 1",
                [node_id, fingerprint, origin],
            ).fetchone()
        )
        if found is None:
            return None
        return json.loads(found[0]), json.loads(found[1]), origin, found[2]

    def record_prints(self, rows: list[dict[str, Any]]) -> None:
        """The per-node parts of this run's fingerprints (what `resume` compares to explain)."""
        encoded: dict[int, tuple[Any, str]] = {}  # nodes of one tool share one files dict
        for row in rows:
            files = row["files"]
            seen = encoded.get(id(files))
            if seen is None:
                seen = encoded[id(files)] = (files, self._json(files))
            self._queue("node_prints", {**row, "files": seen[1]})

    # -- llm calls -------------------------------------------------------------------------------

    def record_llm_call(self, row: dict[str, Any]) -> None:
        self._queue(
            "llm_calls",
            {
                **row,
                "request": self._json(row.get("request")),
                "response": self._json(row.get("response")),
                "ts": row.get("ts") or utc_now(),
            },
        )


def _ending(log_path: str | None) -> dict[str, Any]:
    """The `runs` fields for a run whose process is gone, from its log's last event."""
    from evolve.store.log import last_event

    last = last_event(Path(log_path)) if log_path else None
    if last is None or last.get("type") != EventType.RUN_FINISHED:
        return {
            "status": "interrupted",
            "reason": "the process ended without finishing the run (killed or crashed)",
        }
    tokens = last.get("tokens") or {}
    return {
        "status": last.get("status"),
        "reason": last.get("reason"),
        "finished_at": last.get("ts"),
        "duration_ms": last.get("duration_ms"),
        "tokens_in": tokens.get("in"),
        "tokens_out": tokens.get("out"),
        "cost_usd": last.get("cost_usd"),
    }


def process_alive(pid: int | None) -> bool:
    """Whether a process with this id runs on this host (a run's, to tell a dead run)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
