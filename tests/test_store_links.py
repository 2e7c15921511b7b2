"""The store's links: every run_id is a declared foreign key to runs.id (what Datasette and
sqlite-utils show), added by the named migration 004_links to stores that already hold runs,
their rows and indexes kept."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from sqlite_utils import Database
from typer.testing import CliRunner

from evolve.cli import app
from evolve.store.schema import LINKS, MIGRATIONS

runner = CliRunner()
EXAMPLE = Path(__file__).parent.parent / "examples" / "review-branch"


def counts(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    names = [r[0] for r in db.execute("select name from sqlite_master where type = 'table'")]
    found = {n: db.execute(f"select count(*) from [{n}]").fetchone()[0] for n in names}
    db.close()
    return found


def indexes(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    found = {r[0] for r in db.execute("select name from sqlite_master where type = 'index'")}
    db.close()
    return {n for n in found if not n.startswith("sqlite_autoindex")}


def test_a_store_made_before_the_links_migrates_with_its_rows(tmp_path, monkeypatch):
    exp = tmp_path / "review-branch"
    shutil.copytree(EXAMPLE, exp)
    ws = tmp_path / "ws"
    import evolve.store.writer as writer

    before = [m for m in MIGRATIONS if m[0] != "004_links"]
    monkeypatch.setattr(writer, "MIGRATIONS", before)  # a store as the last release left it
    assert runner.invoke(
        app, ["eval", str(exp), "--offline", "--workspace", str(ws)]
    ).exit_code in (0, 1)
    database = ws / "state.sqlite"
    assert Database(database)["node_runs"].foreign_keys == []
    rows, kept_indexes = counts(database), indexes(database)
    assert rows["runs"] > 1 and rows["llm_calls"] > 0 and rows["evals"] > 0
    monkeypatch.undo()

    listed = runner.invoke(app, ["runs", "--workspace", str(ws)])  # opening the store migrates
    assert listed.exit_code == 0, listed.output
    db = Database(database)
    applied = [r["name"] for r in db["_migrations"].rows]
    assert applied[-1] == "004_links"
    for table, column in LINKS:
        assert [(f.column, f.other_table, f.other_column) for f in db[table].foreign_keys] == [
            (column, "runs", "id")
        ], table
    assert counts(database) == {**rows, "_migrations": rows["_migrations"] + 1}
    assert indexes(database) >= kept_indexes
    assert db.execute("pragma foreign_key_check").fetchall() == []  # every link resolves
    doctor = runner.invoke(app, ["doctor", "--workspace", str(ws)])
    assert doctor.exit_code == 0, doctor.output


def test_a_new_store_has_the_links(tmp_path):
    ws = tmp_path / "ws"
    ran = runner.invoke(app, ["run", str(EXAMPLE.parent / "starter"), "--workspace", str(ws)])
    assert ran.exit_code == 0, ran.output
    db = Database(ws / "state.sqlite")
    assert {t for t, _ in LINKS} <= {t.name for t in db.tables if t.foreign_keys}
