"""Dataset nodes: rows from a JSON, JSONL or CSV file, or from a read-only SQLite query."""

from __future__ import annotations

import csv
import json
import sqlite3
from typing import Any

from evolve.errors import EvolveError
from evolve.spec.model import DatasetSource


class DatasetError(EvolveError):
    error_type = "dataset_error"


def _json_line(line: str, number: int) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise ValueError(f"line {number}: {exc}") from None


def load_rows(source: DatasetSource) -> list[Any]:
    try:
        if source.type == "sqlite":
            uri = source.path.as_uri() + "?mode=ro"
            with sqlite3.connect(uri, uri=True) as conn:
                conn.row_factory = sqlite3.Row
                return [dict(row) for row in conn.execute(source.query or "")]
        text = source.path.read_text("utf-8-sig")  # a BOM (as spreadsheets write) is dropped
        if source.format == "csv":
            return list(csv.DictReader(text.splitlines()))
        if source.format == "jsonl":
            return [
                _json_line(line, number)
                for number, line in enumerate(text.splitlines(), start=1)
                if line.strip()
            ]
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except (OSError, ValueError, sqlite3.Error, csv.Error) as exc:
        raise DatasetError(f"reading {source.uri} failed: {exc}") from exc
