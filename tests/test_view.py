"""The fold's items: plain items kept as compact rows read exactly like the others."""

from __future__ import annotations

import tracemalloc
from typing import Any

from evolve.events import EventType
from evolve.view import Folder, fold

T0 = "2026-01-01T00:00:00.000000+00:00"


def _ts(ms: int) -> str:
    return f"2026-01-01T00:00:{ms // 1000:02d}.{ms % 1000:03d}000+00:00"


class Log:
    """Events of a one-node fan-out, numbered as a run writes them."""

    def __init__(self) -> None:
        graph = {"steps": ["fan"], "nodes": {"fan": {"kind": "tool", "for_each": True}}}
        self.events: list[dict[str, Any]] = []
        self.add(EventType.RUN_STARTED, 0, run_id="r-1", graph=graph)
        self.add(EventType.NODE_READY, 0, node_id="fan")

    def add(self, kind: EventType, ms: int, **fields: Any) -> None:
        seq = len(self.events) + 1
        self.events.append({"type": str(kind), "seq": seq, "ts": _ts(ms), **fields})

    def attempt(self, item: int, start: int, end: int, *, number: int = 1, **ended: Any) -> None:
        self.add(EventType.NODE_STARTED, start, node_id="fan", item=item, attempt=number)
        failed = "error_type" in ended
        kind = EventType.NODE_FAILED if failed else EventType.NODE_FINISHED
        self.add(kind, end, node_id="fan", item=item, attempt=number, **ended)


def _attempt(item: int, number: int, start: int, end: int, seq: int, **more: Any) -> dict:
    return {
        "number": number,
        "item": item,
        "start_ms": start,
        "status": more.pop("status", "succeeded"),
        "end_ms": end,
        "duration_ms": end - start,
        "error_type": more.pop("error_type", None),
        "error": more.pop("error", None),
        "seq": seq,
        "tokens_in": more.pop("tokens_in", 0),
        "tokens_out": more.pop("tokens_out", 0),
        "cost_usd": more.pop("cost_usd", None),
    }


def _item(index: int, *attempts: dict, status: str = "succeeded", **more: Any) -> dict:
    return {
        "index": index,
        "status": status,
        "skipped": more.get("skipped"),
        "reused_from": more.get("reused_from"),
        "attempts": list(attempts),
    }


def test_plain_and_other_items_read_the_same_in_index_order():
    log = Log()
    log.attempt(2, 10, 30)  # seq 3, 4: plain, finished before item 0
    log.attempt(0, 11, 40)  # 5, 6: plain
    log.attempt(1, 12, 20, error_type="connection", error="reset")  # 7, 8
    log.add(EventType.NODE_RETRY, 21, node_id="fan", item=1)  # 9
    log.attempt(1, 22, 50, number=2)  # 10, 11: retried, then succeeded
    log.add(EventType.NODE_STARTED, 60, node_id="fan", item=3, attempt=1)  # 12
    log.add(EventType.LLM_CALL, 61, node_id="fan", item=3, tokens_in=5, tokens_out=2)  # 13
    log.add(EventType.NODE_FINISHED, 70, node_id="fan", item=3, attempt=1)  # 14: has tokens
    log.attempt(10**9, 80, 90)  # 15, 16: plain, far past the others
    log.attempt(4, 91, 95)  # 17, 18: plain, then skipped: taken back from its row
    log.add(EventType.NODE_SKIPPED, 96, node_id="fan", item=4, reason="why not")  # 19
    view = fold(log.events)
    node = view.nodes["fan"]

    assert node.items.plain == 3  # items 0, 2 and 10**9
    assert len(node.items) == 6
    assert list(node.items_json()) == [
        _item(0, _attempt(0, 1, 11, 40, 6)),
        _item(
            1,
            _attempt(1, 1, 12, 20, 8, status="failed", error_type="connection", error="reset"),
            _attempt(1, 2, 22, 50, 11),
        ),
        _item(2, _attempt(2, 1, 10, 30, 4)),
        _item(3, _attempt(3, 1, 60, 70, 14, tokens_in=5, tokens_out=2)),
        _item(4, _attempt(4, 1, 91, 95, 18), status="failed", skipped="why not"),
        _item(10**9, _attempt(10**9, 1, 80, 90, 16)),
    ]
    assert [i.to_json() for i in node.items.values()] == list(node.items_json())
    assert node.items[2].to_json() == _item(2, _attempt(2, 1, 10, 30, 4))
    assert 10**9 in node.items and 5 not in node.items
    # what a report shows of many items: failed or retried ones first, then the lowest indexes
    assert [i.index for i in node.items.notable_then_lowest(1)] == [1]
    assert [i.index for i in node.items.notable_then_lowest(2)] == [1, 4]
    assert [i.index for i in node.items.notable_then_lowest(4)] == [0, 1, 2, 4]
    assert (node.items_failed, node.items_succeeded, node.items_done) == (1, 5, 6)
    assert node.attempt_count == 7
    assert sorted(d for d, _ in node.items.plain_attempts()) == [10, 20, 29]
    assert node.last_attempt is not None and node.last_attempt.item == 4


def test_a_plain_item_costs_tens_of_bytes():
    log = Log()
    items = 20_000
    for i in range(items):
        log.attempt(i, i, i + 5)
    folder = Folder()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for event in log.events:
            folder.feed(event)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert folder.view.nodes["fan"].items.plain == items
    assert held / items < 100  # bytes an item; a view per item and attempt took about 550
