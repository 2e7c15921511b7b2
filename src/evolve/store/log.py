"""The event log of a run: `.evolve/runs/<run-id>.jsonl`, one JSON object per line.

`EventLog` is the one writer. Each event is written with a single `write` of a whole line and
flushed at once, so a crash can tear at most the last line; `read_events` skips a torn last line
instead of failing. Every event carries `v`, `seq` (1, 2, ...), `ts` (ISO-8601 UTC), `run_id` and
`type`; the other fields per type are declared in `evolve.events` (and listed in docs/events.md).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from evolve import jsonvalue
from evolve.errors import StoreError
from evolve.events import EVENT_VERSION, Event

READ_BATCH = 1 << 18  # bytes of lines decoded at once
_decode = json.JSONDecoder().decode

Listener = Callable[[dict[str, Any]], None]


_SECOND: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def utc_now() -> str:
    """Now, as every event and row has it: `2026-11-30T12:00:00.123Z` (milliseconds, cut)."""
    global _SECOND
    now = time.time()
    whole = int(now)
    if whole != _SECOND[0]:  # a run writes many events a second: format the date part once
        _SECOND = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_SECOND[1]}.{int((now - whole) * 1000):03d}Z"


class EventLog:
    """Appends events for one run; listeners (progress displays) see each event as it is written."""

    def __init__(self, path: Path, run_id: str, listeners: list[Listener] | None = None):
        from evolve.redaction import Redactor

        self.redactor = Redactor()
        self.path = path
        self.run_id = run_id
        self.seq = 0
        self.listeners = list(listeners or [])
        self._fd = -1  # opened by the first event: a run refused before it starts leaves no log

    def write(self, record: Event, ts: str | None = None) -> dict[str, Any]:
        """Append one event (at `ts`, default now); returns it as written and as listeners saw
        it."""
        self.seq += 1
        event = {
            "v": EVENT_VERSION,
            "seq": self.seq,
            "ts": ts or utc_now(),
            "run_id": self.run_id,
            "type": str(record.TYPE),
            **record.fields(),
        }
        event = self.redactor.value(event)  # values, before encoding: listeners see it clean too
        line = jsonvalue.record(event) + "\n"
        try:
            if self._fd < 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(self._fd, line.encode("utf-8"))  # one write per line: a crash tears one line
        except OSError as exc:
            raise StoreError(
                f"cannot write the event log {self.path}: {exc.strerror or exc}"
            ) from None
        for listener in self.listeners:
            listener(event)
        return event

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_events(path: Path, containing: bytes = b"") -> Iterator[dict[str, Any]]:
    """Stream the events of a log, skipping a torn or unparsable line rather than failing;
    with `containing`, only the lines holding those bytes are parsed (the others are skipped).

    Lines are decoded about 256 KB at a time as one JSON array (one parser call for a
    thousand lines); a batch that does not parse whole is decoded line by line, so a torn or
    broken line costs only itself. Each line is a whole object, so a batch parses whole only
    when every line does."""
    with path.open("rb") as f:
        while lines := f.readlines(READ_BATCH):
            if containing:
                lines = [raw for raw in lines if containing in raw]
                if not lines:
                    continue
            try:  # the log is UTF-8: decoded here, json skips guessing the encoding of bytes
                batch = _decode("[" + b",".join(lines).decode("utf-8") + "]")
            except ValueError:  # also a line torn inside a UTF-8 sequence
                batch = _each(lines)
            for event in batch:
                if isinstance(event, dict):
                    yield event


def _each(lines: list[bytes]) -> Iterator[Any]:
    for raw in lines:
        try:
            yield _decode(raw.decode("utf-8"))
        except ValueError:
            continue


def last_event(path: Path, tail_bytes: int = 1 << 16) -> dict[str, Any] | None:
    """The last readable event of a log, reading only its tail (None if there is none)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            lines = f.read().splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict):
            return event
    return None
