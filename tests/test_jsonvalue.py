"""`jsonvalue.problem`: every JSON value passes, and a value that is not JSON is named by where."""

from __future__ import annotations

import enum

from evolve.jsonvalue import MAX_DEPTH, problem


class Colour(enum.IntEnum):
    RED = 1


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_json_values_pass_whatever_their_size_and_shape():
    rows = [{"id": i, "name": f"n{i}", "tags": ["a", "b"], "ok": i % 2 == 0} for i in range(2000)]
    assert problem({"state_delta": {"rows": rows, "score": 0.5, "none": None}}) is None
    assert problem(("a", 1, 2.5, True, Colour.RED, {"k": []})) is None
    assert problem(nested(MAX_DEPTH - 1)) is None


def test_a_value_that_is_not_json_is_named_by_where_it_is():
    rows = [{"id": i, "score": 1.0} for i in range(100)]
    rows[57]["score"] = float("nan")
    assert problem({"state_delta": {"rows": rows}}, "output") == (
        "output.state_delta.rows[57].score is NaN, which is not a JSON number"
    )
    assert problem({"a": [{"b": {2: "x"}}]}, "output") == (
        "output.a[0].b has the key 2 (int); JSON object keys are strings"
    )
    assert "nests deeper than 200 levels" in (problem(nested(MAX_DEPTH + 1)) or "")
    assert problem([1.0, float("-inf")]) == "the value[1] is -Infinity, which is not a JSON number"
