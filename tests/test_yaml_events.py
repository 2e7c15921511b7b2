"""The YAML fast path (values built from the parser's events) says exactly what the composed
tree says: the same values, locations and problems, for every document it takes; and it hands
every other document to the tree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evolve.spec.source import _from_events, _from_tree
from test_spec_corpus import CASES

ROOT = Path(__file__).resolve().parent.parent


def same(text: str) -> bool:
    """Whether the fast path took `text`; when it did, it agrees with the tree field by field."""
    fast = _from_events(text, "x.yaml")
    if fast is None:
        return False
    data, loc, problems = fast
    tree_data, tree_loc, tree_problems = _from_tree(text, "x.yaml")
    assert data == tree_data and type(data) is type(tree_data)
    assert repr(data) == repr(tree_data)  # 1 and True, 1.0 and 1 are told apart
    assert loc.values == tree_loc.values
    assert loc.keys == tree_loc.keys
    assert loc.scalars == tree_loc.scalars
    assert loc.broken == tree_loc.broken
    assert problems == tree_problems
    return True


SPECS = sorted(ROOT.glob("examples/*/experience.yaml")) + sorted(
    ROOT.glob("src/evolve/templates/**/experience.yaml")
)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.parent.name)
def test_every_shipped_spec_takes_the_fast_path_and_agrees(path):
    assert same(path.read_text("utf-8"))


def test_the_corpus_agrees_wherever_the_fast_path_goes():
    taken = sum(same(case.values[0]) for case in CASES)
    assert taken > len(CASES) // 2  # most take it: the comparison is not empty


ODD = {
    "scalars of every kind": "a: 1\nb: -2.5\nc: true\nd: null\ne: ~\nf: 2026-11-30\ng: .nan\n"
    "h: 0x1f\ni: 'quoted'\nj: \"é\\n\"\nk: |\n  block\n  text\nl: >\n  folded\n  text\nm: =\n",
    "keys that are not strings": "1: one\ntrue: yes\n2.5: x\n2026-01-01: date\n",
    "flow collections": "a: [1, [2, {b: c}], {}]\nd: {e: [], f: {g: h}}\n",
    "a merge": "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n",
    "a duplicate key": "a: 1\nb: 2\na: 3\n",
    "a null key": "~: 1\n",
    "a tag": "a: !!str 1\nb: !custom x\n",
    "a list at the top": "- a\n- b\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "a complex key": "? [a, b]\n: c\n",
    "a syntax error": "a: [1, 2\nb: 3\n",
    "deep nesting": "a: " + "[" * 205 + "]" * 205 + "\n",
    "just under the depth limit": "a: " + "[" * 199 + "1" + "]" * 199 + "\n",
}
TAKEN = {
    "scalars of every kind",
    "keys that are not strings",
    "flow collections",
    "just under the depth limit",
}


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_documents_agree_or_go_to_the_tree(name):
    assert same(ODD[name]) is (name in TAKEN)


WORDS = st.sampled_from(["a", "id", "n1", "1", "-1", "2.5", "true", "null", "~", "é", "a b", ""])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | WORDS
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(WORDS, inner, max_size=3),
    max_leaves=8,
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(WORDS, VALUES, min_size=1, max_size=4), st.booleans())
def test_generated_documents_agree(document, flow):
    same(yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True))
