"""Dataset nodes: what they read, and that they leave nothing open behind them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from evolve.runtime import datasets
from evolve.runtime.attempt import AttemptError
from evolve.spec.model import DatasetSource


def _database(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.execute("create table t (a integer)")
    db.executemany("insert into t values (?)", [(1,), (2,)])
    db.commit()
    db.close()
    return path


def test_a_sqlite_dataset_closes_its_connection_after_reading(tmp_path, monkeypatch):
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        opened.append(conn)
        return conn

    path = _database(tmp_path / "d.sqlite")
    monkeypatch.setattr(datasets.sqlite3, "connect", connect)
    source = DatasetSource("sqlite", path, "d.sqlite", query="select a from t order by a")
    assert datasets.load_rows(source) == [{"a": 1}, {"a": 2}]
    assert len(opened) == 1
    try:
        opened[0].execute("select 1")
    except sqlite3.ProgrammingError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("the dataset's connection is still open after reading")


def test_a_failing_sqlite_query_closes_its_connection_too(tmp_path, monkeypatch):
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect
    path = _database(tmp_path / "d.sqlite")
    monkeypatch.setattr(
        datasets.sqlite3,
        "connect",
        lambda *a, **k: opened.append(real_connect(*a, **k)) or opened[-1],
    )
    source = DatasetSource("sqlite", path, "d.sqlite", query="select nope from t")
    with pytest.raises(AttemptError, match="no such column"):
        datasets.load_rows(source)
    assert len(opened) == 1
    try:
        opened[0].execute("select 1")
    except sqlite3.ProgrammingError:
        pass
    else:
        raise AssertionError("the dataset's connection is still open after a failed query")
