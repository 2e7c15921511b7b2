"""A workspace whose database is corrupted, read-only or full: one clear line and exit code 1,
never a traceback, and never a log and a store that tell different stories."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from evolve.store import writer
from evolve.store.writer import StateStore, when_free
from helpers import build, spec, tool

runner = CliRunner()

WRITER = (
    "import time\n\ndef run(i):\n    time.sleep(0.06)\n"
    "    return {'state_delta': {'big': ['x' * 3000]}}\n"
)


def experience(tmp_path: Path) -> Path:
    """A chain of twelve nodes, each adding 3 KB to state a little after the one before."""
    nodes = [tool(f"n{i}", "tools/fill.py", writes=["big"]) for i in range(12)]
    edges = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(11)]
    state = {"big": {"type": "array", "merge": "array_append"}}
    return build(tmp_path / "x", spec(nodes, edges, state=state), {"tools/fill.py": WRITER})


def invoke(tmp_path: Path, *args: str):
    return runner.invoke(app, [*args, "--workspace", str(tmp_path / "ws")])


def one_line(result) -> str:
    """The error line (after any progress lines), checking there is no traceback."""
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.endswith(errors[0] + "\n")
    return errors[0]


@pytest.fixture
def workspace_with_a_run(tmp_path):
    exp = experience(tmp_path)
    done = invoke(tmp_path, "run", str(exp))
    assert done.exit_code == 0, done.output
    return exp


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupted_database_is_one_clear_line(tmp_path, workspace_with_a_run, damage):
    database = tmp_path / "ws" / "state.sqlite"
    StateStore.open(database).close()  # checkpointed: the file holds every page
    for extra in ("-wal", "-shm"):
        Path(f"{database}{extra}").unlink(missing_ok=True)
    data = database.read_bytes()
    database.write_bytes(os.urandom(4096) if damage == "garbage" else data[: len(data) // 3])
    said = "file is not a database" if damage == "garbage" else "database disk image is malformed"
    expected = (
        f"error: the state store {database} is corrupted ({said}); the event logs still hold "
        "every run: `evolve doctor --repair` rebuilds it from them"
    )
    for args in (
        ["runs"],
        ["inspect", "last"],
        ["state", "last"],
        ["run", str(workspace_with_a_run)],
    ):
        result = invoke(tmp_path, *args)
        assert result.exit_code == 1, args
        assert one_line(result) == expected, args
    assert len(list((tmp_path / "ws" / "runs").iterdir())) == 1  # the refused run left no log


def make_read_only(path: Path) -> None:
    """A file nobody may write: chmod for a user; for root (who ignores modes), immutable."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: a read-only file cannot be made here")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root and chattr +i is not permitted: {done.stderr.strip()}")


def writable_again(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o644)


def test_a_read_only_database_is_read_and_a_run_refused_in_one_line(tmp_path, workspace_with_a_run):
    database = tmp_path / "ws" / "state.sqlite"
    StateStore.open(database).close()
    make_read_only(database)
    try:
        listed = invoke(tmp_path, "runs", "--json")
        assert listed.exit_code == 0, listed.output
        assert [r["status"] for r in json.loads(listed.stdout)] == ["success"]
        assert invoke(tmp_path, "state", "last", "--json").exit_code == 0
        refused = invoke(tmp_path, "run", str(workspace_with_a_run))
        assert refused.exit_code == 1
        assert one_line(refused) == (
            f"error: the state store {database} is read-only (attempt to write a readonly "
            "database); evolve must write it: check the permissions of the file and its folder"
        )
    finally:
        writable_again(database)
    assert len(list((tmp_path / "ws" / "runs").iterdir())) == 1


SMALL_DISK = """
import sys
from evolve.store.writer import StateStore

opened = StateStore.open


def small_disk(path, *, readonly=False):
    store = opened(path, readonly=readonly)
    pages = store.db.conn.execute("pragma page_count").fetchone()[0]
    store.db.conn.execute(f"pragma max_page_count = {pages + 3}")  # SQLite's own 'disk full'
    return store


StateStore.open = small_disk
from evolve.cli import app

app(sys.argv[1:], prog_name="evolve")
"""


@pytest.mark.slow
def test_a_full_disk_mid_run_stops_it_and_the_log_and_store_agree(tmp_path):
    exp = experience(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", SMALL_DISK, "run", str(exp), "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    database = tmp_path / "ws" / "state.sqlite"
    reason = (
        f"the state store {database} could not be written: the disk is full (database or disk is "
        "full); free some space, then `evolve doctor` checks the workspace"
    )
    assert one_line(result) == f"error: {reason}"
    log = next((tmp_path / "ws" / "runs").iterdir())
    finished = [json.loads(x) for x in log.read_text().splitlines()][-1]
    # the run stopped for the store; when the full disk refused its end too, the log says that
    assert (finished["type"], finished["status"]) == ("run.finished", "failed")
    assert finished["reason"] in (
        reason,
        f"the state store could not record the end of the run: {reason}",
    )
    listed = invoke(tmp_path, "runs", "--json")  # a later command agrees with the log
    assert [(r["status"], r["reason"]) for r in json.loads(listed.stdout)] == [
        ("failed", finished["reason"])
    ]
    # the rows the full disk refused are rebuilt from the log: no write is lost
    writes = [
        e for e in map(json.loads, log.read_text().splitlines()) if e["type"] == "state.write"
    ]
    assert invoke(tmp_path, "doctor").exit_code == 1
    assert invoke(tmp_path, "doctor", "--repair").exit_code == 0
    state = json.loads(invoke(tmp_path, "state", "last", "--json").stdout)
    assert len(state["big"]) == len(writes) > 0


FULL_LOG = """
import errno, os, sys
import evolve.store.log as log

written = [0]
real_write = os.write


class FullDisk:
    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def write(fd, data):
        written[0] += 1
        if written[0] > 6:  # the disk fills up after six lines
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)


log.os = FullDisk()
from evolve.cli import app

app(sys.argv[1:], prog_name="evolve")
"""


@pytest.mark.slow
def test_an_event_log_that_cannot_be_written_is_one_clear_line(tmp_path):
    exp = experience(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", FULL_LOG, "run", str(exp), "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    log = next((tmp_path / "ws" / "runs").iterdir())
    assert one_line(result) == (f"error: cannot write the event log {log}: No space left on device")
    assert len([json.loads(line) for line in log.read_text().splitlines()]) == 6
    # the store recorded the end the log could not: both say the run failed, and why
    listed = json.loads(invoke(tmp_path, "runs", "--json").stdout)
    assert [(r["status"], r["reason"]) for r in listed] == [
        ("failed", f"cannot write the event log {log}: No space left on device")
    ]
    checked = invoke(tmp_path, "doctor")
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.splitlines()[0] == (
        f"note: {log.stem}: its log ends before run.finished (it could not be written?); the "
        "store's ending (failed) is kept"
    )


def test_read_commands_read_while_another_process_holds_the_write_lock(
    tmp_path, workspace_with_a_run
):
    """Read commands open the store for reading: a writer holding the lock (a long run's
    flush, a doctor --repair) does not stall or fail `runs`, `inspect` or `state`."""
    import sqlite3

    holder = sqlite3.connect(tmp_path / "ws" / "state.sqlite", isolation_level=None)
    holder.execute("PRAGMA busy_timeout = 0")
    holder.execute("BEGIN IMMEDIATE")
    try:
        for command in (["runs"], ["inspect", "last"], ["state", "last"]):
            result = invoke(tmp_path, *command)
            assert result.exit_code == 0, (command, result.output)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_reader_ends_a_dead_run_once_then_reads_without_writing(tmp_path, workspace_with_a_run):
    database = tmp_path / "ws" / "state.sqlite"
    store = StateStore.open(database)
    store.db.conn.execute("update runs set status = 'running', pid = 999999999")
    store.close()
    reader = StateStore.open(database, readonly=True)
    assert reader.needs_upkeep()  # a running run whose process is gone
    reader.db.conn.close()
    shown = invoke(tmp_path, "runs", "--json")
    # the log ends with run.finished, so the reader takes the run's ending from it
    assert json.loads(shown.stdout)[0]["status"] == "success"
    reader = StateStore.open(database, readonly=True)
    assert not reader.needs_upkeep()
    reader.db.conn.close()


def _sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


def test_opening_waits_out_a_lock_sqlite_reports_at_once(monkeypatch):
    """Switching a fresh database to WAL while another process does the same answers `database
    is locked` without calling SQLite's busy handler; two runs starting in one new workspace
    met it. The store tries again until the busy timeout instead of failing the run."""
    answers = iter([_sqlite_error("database is locked", 5), _sqlite_error("locked", 517), "wal"])

    def step():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert when_free(step) == "wal"
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        when_free(lambda: (_ for _ in ()).throw(_sqlite_error("no such table: x", 1)))
    monkeypatch.setattr(writer, "BUSY_TIMEOUT_MS", 20)
    calls = []

    def always_busy():
        calls.append(1)
        raise _sqlite_error("database is locked", 5)

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        when_free(always_busy)
    assert 1 < len(calls) < 10
