"""Model calls in flight, for progress: who is waiting on which model, since when.

The litellm client registers each real call here while it waits for the reply; `report.progress`
reads `snapshot()` to show a slow call with its elapsed time. Nothing here imports litellm.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    node_id: str
    item: int | None
    model: str
    started: float  # time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


_calls: dict[int, Call] = {}
_ids = itertools.count()
_lock = threading.Lock()


def begin(node_id: str, item: int | None, model: str) -> int:
    with _lock:
        token = next(_ids)
        _calls[token] = Call(node_id, item, model, time.monotonic())
    return token


def end(token: int) -> None:
    with _lock:
        _calls.pop(token, None)


def snapshot() -> list[Call]:
    """The calls waiting now, oldest first."""
    with _lock:
        return sorted(_calls.values(), key=lambda c: c.started)
