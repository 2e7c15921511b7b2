"""`evolve doctor`: the workspace checked against its event logs, and rebuilt from them.

The event logs (`runs/*.jsonl`) are the source of truth; the state store is what they stand for,
kept in a form quick to query. `check` looks at three things:

- the database: it opens, SQLite's `integrity_check` passes, its migrations are applied;
- the logs: every line parses (a torn last line, left by a kill, is only noted), and each starts
  with the `run.started` of the run its file is named after;
- the runs: for every log, the rows the store holds for that run (`runs`, `node_runs`,
  `llm_calls`, `state_snapshot`) are the rows its log stands for, found by replaying the log into
  a scratch database (`store.recorder.replay`) and comparing; and every kept result its log
  reports is in `node_results` (see `store.kept`). A run still going is left alone.

With `repair`, a database that cannot be opened or fails its integrity check is moved aside
(`state.sqlite.broken-<time>`, with its -wal and -shm) and a new one is created; then every run
whose rows disagree with its log, or that has none, gets the rows of each table that disagrees
deleted and written again from its log, and the kept results its log reports and the store
lacks are added. So a lost or corrupted database loses no run: what the log does not keep is
the only loss (the text of model requests and replies and a run's spec files, which are reported;
its node prints, and kept results too large for their log line, which a resume executes again).
Nothing is ever taken from a log or deleted from one.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evolve.errors import StoreError
from evolve.events import EventType
from evolve.store.workspace import Workspace
from evolve.store.writer import StateStore, process_alive

TABLES = ("node_runs", "llm_calls", "state_snapshot", "state_history", "evals")
STATE_TABLES = ("state_snapshot", "state_history")


@dataclass
class Finding:
    """One thing doctor found: a `problem` (the workspace disagrees with itself) or a `note`."""

    subject: str  # "database", a log's file name, or a run id
    message: str
    severity: str = "problem"
    repaired: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "severity": self.severity,
            "message": self.message,
            "repaired": self.repaired,
        }


@dataclass
class Checkup:
    """What `check` found; `healthy` when no problem is left unrepaired."""

    workspace: Path
    logs: int = 0
    runs_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(f.severity != "problem" or f.repaired for f in self.findings)

    def add(self, subject: str, message: str, severity: str = "problem") -> Finding:
        finding = Finding(subject, message, severity)
        self.findings.append(finding)
        return finding

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace": str(self.workspace),
            "healthy": self.healthy,
            "logs": self.logs,
            "runs_checked": self.runs_checked,
            "findings": [f.to_json() for f in self.findings],
        }


def check(workspace: Workspace, *, repair: bool = False) -> Checkup:
    """Check the workspace (and, with `repair`, rebuild what disagrees with the logs)."""
    checkup = Checkup(workspace.root)
    logs = sorted(workspace.runs_dir.glob("*.jsonl")) if workspace.runs_dir.is_dir() else []
    checkup.logs = len(logs)
    if not workspace.database.exists() and not logs:
        return checkup  # an empty workspace is a healthy one
    store = _open_database(workspace, checkup, repair)
    try:
        for log in logs:
            events = _read_log(log, checkup, repair)
            if events is not None and store is not None:
                _check_run(log, events, store, checkup, repair)
        if store is not None:
            _kept_results(workspace, store, checkup, repair)
            _runs_without_log(workspace, store, checkup)
    finally:
        if store is not None:
            store.close()
    return checkup


# -- the database ----------------------------------------------------------------------------


def _open_database(workspace: Workspace, checkup: Checkup, repair: bool) -> StateStore | None:
    path = workspace.database
    if not path.exists():
        finding = checkup.add("database", f"{path} is missing; the logs hold {checkup.logs} runs")
        if not repair:
            return None
        finding.repaired = True
        return StateStore.open(path)
    try:
        store = StateStore.open(path)
    except StoreError as exc:
        finding = checkup.add("database", str(exc))
        if exc.kind != "corrupt" or not repair:
            return None
        return _replace(path, finding)
    problems = _integrity(store)
    if not problems:
        store.reconcile()  # runs whose process is gone end as their logs say
        return store
    finding = checkup.add("database", f"{path} fails SQLite's integrity check: {problems}")
    if not repair:
        return store
    store.db.conn.close()
    return _replace(path, finding)


def _integrity(store: StateStore) -> str | None:
    try:
        rows = [r[0] for r in store.db.conn.execute("PRAGMA integrity_check(5)")]
    except Exception as exc:  # a page too damaged to check is a failed check
        return str(exc)
    return None if rows == ["ok"] else "; ".join(rows)


def _replace(path: Path, finding: Finding) -> StateStore:
    """Move a broken database aside (never delete it) and start a new one."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.broken-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            os.replace(part, Path(f"{aside}{suffix}"))
    finding.repaired = True
    finding.message += f"; moved aside to {aside.name} and rebuilt from the logs"
    return StateStore.open(path)


# -- the logs --------------------------------------------------------------------------------


def _read_log(log: Path, checkup: Checkup, repair: bool) -> list[dict[str, Any]] | None:
    """The log's events, or None when it cannot stand for a run."""
    raw = log.read_bytes()
    if not raw.strip():
        finding = checkup.add(log.name, "empty log: a run refused before it started", "note")
        if repair:
            log.unlink()
            finding.repaired = True
        return None
    lines = raw.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    events: list[dict[str, Any]] = []
    unreadable: list[int] = []
    for number, line in enumerate(lines, start=1):
        event = _parse(line)
        if event is None:
            unreadable.append(number)
        else:
            events.append(event)
    if unreadable == [len(lines)]:
        checkup.add(log.name, "torn last line (its process was killed); readers skip it", "note")
    elif unreadable:
        shown = ", ".join(str(n) for n in unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
        checkup.add(log.name, f"lines that are not JSON events: {shown}")
    first = events[0] if events else {}
    if first.get("type") != EventType.RUN_STARTED or first.get("run_id") != log.stem:
        checkup.add(log.name, f"does not start with the run.started of {log.stem}")
        return None
    return events


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "type" in event else None


# -- the runs --------------------------------------------------------------------------------


def _check_run(
    log: Path, events: list[dict[str, Any]], store: StateStore, checkup: Checkup, repair: bool
) -> None:
    run_id = log.stem
    row = store.run(run_id)
    if row is not None and row["status"] == "running" and _alive(row):
        checkup.add(run_id, "still running: not checked", "note")
        return
    checkup.runs_checked += 1
    expected = _replayed(events, str(log))
    tables = TABLES if _holds_state(events) else tuple(t for t in TABLES if t not in STATE_TABLES)
    try:
        if row is not None and _store_knows_more(row, expected.run(run_id) or {}):
            checkup.add(
                run_id,
                f"its log ends before run.finished (it could not be written?); the store's "
                f"ending ({row['status']}) is kept",
                "note",
            )
        differences = _differences(run_id, row, store, expected, tables)
        if not differences:
            return
        said = "; ".join(message for _, message in differences if message)
        finding = checkup.add(run_id, f"the state store disagrees with its log: {said}")
        if repair:
            _rebuild(run_id, [table for table, _ in differences], expected, store)
            finding.repaired = True
            lost = _lost(events, [table for table, _ in differences])
            finding.message += "; rebuilt from the log" + (f" ({lost})" if lost else "")
    finally:
        expected.db.conn.close()


def _alive(row: dict[str, Any]) -> bool:
    return row.get("host") == socket.gethostname() and process_alive(row.get("pid"))


def _replayed(events: list[dict[str, Any]], log_path: str) -> StateStore:
    """A scratch in-memory database holding exactly the rows the log stands for (a log with no
    `run.finished` stands for an interrupted run: its process is gone, or it would be running)."""
    from evolve.store.recorder import replay

    scratch = StateStore.open(Path(":memory:"))
    done = replay(events, scratch, log_path=log_path)
    if done.run_id and not done.finished:
        scratch.reconcile_ended(done.run_id)
    return scratch


def _holds_state(events: list[dict[str, Any]]) -> bool:
    """Whether the log holds its run's state (logs written before `state.init` existed do not:
    their state rows are neither compared nor rebuilt)."""
    return any(e.get("type") == EventType.STATE_INIT for e in events)


def _differences(
    run_id: str,
    row: dict[str, Any] | None,
    store: StateStore,
    expected: StateStore,
    tables: tuple[str, ...],
) -> list[tuple[str, str]]:
    """(table, what differs) for each table whose rows for `run_id` are not the log's."""
    found: list[tuple[str, str]] = []
    want = expected.run(run_id) or {}
    if row is None:
        found.append(("runs", "it has no runs row"))
    elif row["status"] != want.get("status") and not _store_knows_more(row, want):
        found.append(("runs", f"its status is {row['status']}, the log's is {want.get('status')}"))
    for table in tables:
        have, need = _rows(store, table, run_id), _rows(expected, table, run_id)
        if have != need:
            missing, extra = sum((need - have).values()), sum((have - need).values())
            found.append((table, f"{table}: {missing} rows missing, {extra} not in the log"))
    return found


def _store_knows_more(row: dict[str, Any], want: dict[str, Any]) -> bool:
    """A log that stops before its `run.finished` (it could not be written: a full disk) reads
    as interrupted; a store that recorded how the run ended knows more, and is kept."""
    return (
        want.get("finished_at") is None
        and want.get("status") == "interrupted"
        and (row["status"] not in ("running", "interrupted"))
    )


# The columns that identify a row of each table: what a replay of the log must reproduce.
_KEYS = {
    "node_runs": ("node_id", "item", "attempt", "status", "error_type"),
    "llm_calls": ("node_id", "item", "attempt", "model", "key", "tokens_in", "tokens_out"),
    "state_snapshot": ("field", "value", "initial"),
    "state_history": ("field", "node_id", "item", "value_old", "value_new"),
    "evals": ("name", "passed", "score"),
}


def _rows(store: StateStore, table: str, run_id: str) -> Counter[tuple[Any, ...]]:
    if not store.db[table].exists():
        return Counter()
    columns = [c for c in _KEYS[table] if c in store.db[table].columns_dict]
    sql = f"select {', '.join(columns)} from {table} where run_id = ?"
    return Counter(tuple(r) for r in store.db.conn.execute(sql, [run_id]))


def _rebuild(run_id: str, tables: list[str], scratch: StateStore, store: StateStore) -> None:
    """Replace the disagreeing tables' rows of this run with the rows its log stands for."""
    with store.transaction():
        for table in tables:
            if not store.db[table].exists():
                continue
            key = "id" if table == "runs" else "run_id"
            store.db.conn.execute(f"delete from {table} where {key} = ?", [run_id])
            rows = list(scratch.db[table].rows_where(f"{key} = ?", [run_id], order_by="rowid"))
            if table != "runs":
                for r in rows:
                    r.pop("id", None)  # the target's own ids
            if rows:
                store.db[table].insert_all(rows, alter=False)


def _lost(events: list[dict[str, Any]], tables: list[str]) -> str:
    """What a rebuild could not bring back: what the log never held."""
    calls = sum(1 for e in events if e.get("type") == EventType.LLM_CALL)
    lost = []
    if "llm_calls" in tables and calls:
        lost.append(f"the request and reply texts of {calls} model calls")
    if "runs" in tables:
        lost.append("the run's copy of its spec files")
    return ", ".join(lost) + (" are not in the log" if lost else "")


def _kept_results(workspace: Workspace, store: StateStore, checkup: Checkup, repair: bool) -> None:
    """Kept results the logs report and the store lacks (see `store.kept`), per run in the order
    runs started, so the run that executed a reused result is restored before those reusing it."""
    from evolve.store.kept import restore

    rows = store.db.conn.execute("select id, status, host, pid from runs order by started_at")
    for run_id, status, host, pid in rows.fetchall():
        log = workspace.log_path(run_id)
        if not log.exists() or (status == "running" and _alive({"host": host, "pid": pid})):
            continue
        missing = restore(store, run_id, log, dry=not repair)
        if missing:
            finding = checkup.add(
                run_id,
                f"{missing} kept results its log reports are not in the state store "
                "(resuming it would execute them again)",
            )
            if repair:
                finding.repaired = True
                finding.message += "; restored from the log"


def _runs_without_log(workspace: Workspace, store: StateStore, checkup: Checkup) -> None:
    for row in store.db.conn.execute("select id from runs order by started_at"):
        if not workspace.log_path(row[0]).exists():
            checkup.add(
                row[0], "its event log is missing: the store's rows cannot be checked", "note"
            )
