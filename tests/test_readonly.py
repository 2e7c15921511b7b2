"""Read-only views of state values: ordinary dicts and lists to read, refusing every change."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from evolve.runtime.readonly import ReadOnlyDict, ReadOnlyList, freeze

CHANGES = [
    lambda v: v["rows"].append(1),
    lambda v: v["rows"].extend([1]),
    lambda v: v["rows"].insert(0, 1),
    lambda v: v["rows"].pop(),
    lambda v: v["rows"].sort(),
    lambda v: v["rows"].__setitem__(0, 1),
    lambda v: v["rows"].__delitem__(0),
    lambda v: v["rows"].__iadd__([1]),
    lambda v: v["rows"][0].update(n=2),
    lambda v: v["rows"][0].__setitem__("n", 2),
    lambda v: v["rows"][0].pop("n"),
    lambda v: v["rows"][0].setdefault("m", 1),
    lambda v: v["rows"][0].clear(),
    lambda v: v.__setitem__("rows", []),
]


@pytest.mark.parametrize("change", CHANGES)
def test_every_change_is_refused(change):
    view = freeze({"rows": [{"n": 1}, {"n": 0}]})
    with pytest.raises(TypeError, match="read-only"):
        change(view)
    assert view == {"rows": [{"n": 1}, {"n": 0}]}


def test_views_read_and_encode_like_plain_values():
    value = {"rows": [{"n": 1}, [2, "x"]], "s": "t"}
    view = freeze(value)
    assert isinstance(view, dict) and isinstance(view["rows"], list)
    assert isinstance(view, ReadOnlyDict) and isinstance(view["rows"], ReadOnlyList)
    assert view == value and json.dumps(view) == json.dumps(value)
    assert freeze(view) is view


def test_copies_are_plain_and_mutable():
    view = freeze({"rows": [{"n": 1}]})
    for made in (copy.deepcopy(view), pickle.loads(pickle.dumps(view))):
        assert type(made) is dict
        made["rows"].append(2)
        assert view == {"rows": [{"n": 1}]}
    shallow = copy.copy(view["rows"])
    assert type(shallow) is list
    shallow.append(3)
    assert list(view["rows"]) == [{"n": 1}]
