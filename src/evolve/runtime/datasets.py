"""Dataset nodes: rows from a JSON, JSONL or CSV file, a read-only SQLite query, or an HTTP GET.

An HTTP source is fetched with a socket timeout of the node's `timeout_ms`; its failures are named
like model errors (429 `rate_limit`, 5xx `server_error`, a refused or dropped connection
`connection`, 401/403 `auth`) so the node's `on_error` policy decides whether to try again.
`${NAME}` in a header value is replaced by the environment variable NAME when the request is made;
only the header as written is recorded (in the cassette, under the run's `CallRecorder`), never
its value, so `--offline` replays the body with no network and no secret.
A SQLite source's connection is closed after the read.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import sqlite3
import time
from contextlib import closing
from typing import Any

from evolve.events import HttpCall
from evolve.runtime.attempt import Attempt, AttemptError
from evolve.runtime.recording import CallRecorder
from evolve.spec.model import DatasetSource, Node

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# Failures the same request would meet again: a wrong key, a missing environment variable.
_PERMANENT = ("auth", "missing_env")


def dataset_error(message: str, error_type: str = "dataset_error") -> AttemptError:
    """A dataset attempt that failed: unreadable, not in its format, or an HTTP failure."""
    return AttemptError(message, error_type, retryable=error_type not in _PERMANENT)


def _json_line(line: str, number: int) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise ValueError(f"line {number}: {exc}") from None


def parse_rows(text: str, format: str | None) -> list[Any]:
    """Rows of a JSON (a list, or one value), JSONL or CSV text; ValueError/csv.Error if not."""
    if format == "csv":
        return list(csv.DictReader(text.splitlines()))
    if format == "jsonl":
        return [
            _json_line(line, number)
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
    data = json.loads(text)
    return data if isinstance(data, list) else [data]


def load_rows(source: DatasetSource) -> list[Any]:
    assert source.path is not None
    try:
        if source.type == "sqlite":
            uri = source.path.as_uri() + "?mode=ro"
            # sqlite3's own context manager ends a transaction, it does not close
            with closing(sqlite3.connect(uri, uri=True)) as conn:
                conn.row_factory = sqlite3.Row
                return [dict(row) for row in conn.execute(source.query or "")]
        text = source.path.read_text("utf-8-sig")  # a BOM (as spreadsheets write) is dropped
        return parse_rows(text, source.format)
    except (OSError, ValueError, sqlite3.Error, csv.Error) as exc:
        raise dataset_error(f"reading {source.uri} failed: {exc}") from exc


async def fetch_rows(
    node: Node, attempt: Attempt, recorder: CallRecorder, timeout_ms: int
) -> list[Any]:
    """The node's rows; an http source is fetched (or replayed) through `recorder`."""
    source = node.source
    assert source is not None
    if source.type != "http":
        return await asyncio.to_thread(load_rows, source)
    timeout_s = timeout_ms / 1000
    request = {"url": source.url, "headers": source.headers, "format": source.format}

    async def live() -> dict[str, Any]:
        return await asyncio.to_thread(http_get, source, timeout_s)

    recorded = await recorder.call("http", (node.id, attempt.item, 1), request, live)
    response = recorded.response
    if "body" not in response and "json" in response:  # a hand-written cassette line
        response = {**response, "body": json.dumps(response["json"], ensure_ascii=False)}
    attempt.emit(
        HttpCall,
        url=source.url,
        status=response.get("status"),
        duration_ms=response.get("duration_ms", 0),
        bytes=len(response.get("body", "")),
        replayed=recorded.replayed,
        key=recorded.key,
    )
    try:
        return parse_rows(response.get("body", ""), source.format)
    except (ValueError, csv.Error) as exc:
        raise dataset_error(f"the body of {source.url} is not {source.format}: {exc}") from None


def resolve_headers(headers: dict[str, str]) -> dict[str, str]:
    """Header values with each ${NAME} read from the environment (a missing one is an error)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise dataset_error(
                f"header needs the environment variable {name}, which is not set", "missing_env"
            )
        return os.environ[name]

    return {k: _ENV_REF.sub(value, v) for k, v in headers.items()}


def http_get(source: DatasetSource, timeout_s: float) -> dict[str, Any]:
    """GET the source's URL: {status, body, duration_ms}; a failure is an AttemptError whose
    error type is named like a model error's."""
    import urllib.error
    import urllib.request

    assert source.url is not None
    request = urllib.request.Request(source.url, headers=resolve_headers(source.headers))
    began = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            body = reply.read().decode("utf-8-sig", "replace")
            status = reply.status
    except urllib.error.HTTPError as exc:
        raise dataset_error(
            f"GET {source.url}: HTTP {exc.code} {exc.reason}", _http_error_type(exc.code)
        ) from None
    except TimeoutError:
        raise dataset_error(
            f"GET {source.url}: timed out after {timeout_s:g} s", "timeout"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise dataset_error(f"GET {source.url}: {reason}", "connection") from None
    return {"status": status, "body": body, "duration_ms": round((time.monotonic() - began) * 1000)}


def _http_error_type(code: int) -> str:
    if code == 429:
        return "rate_limit"
    if code in (401, 403):
        return "auth"
    return "server_error" if code >= 500 else "http_error"
