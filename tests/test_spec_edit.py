"""set_values: changes to experience.yaml as minimal text edits, everything else byte for byte."""

from __future__ import annotations

import copy
import difflib
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evolve.errors import EvolveError
from evolve.spec.edit import YamlEditError, set_values

STARTER = (Path(__file__).resolve().parents[1] / "examples/starter/experience.yaml").read_text(
    encoding="utf-8"
)


def doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def intended(data: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """`data` with `value` at `path`: missing mappings created, a dict merged into a mapping."""
    data = copy.deepcopy(data)
    if not path:
        return value
    target = data
    for part in path[:-1]:
        target = target.setdefault(part, {}) if isinstance(target, dict) else target[part]
    last, old = path[-1], None
    if isinstance(target, dict):
        old = target.get(last)
    if isinstance(old, dict) and isinstance(value, dict):
        for key, item in value.items():
            old[key] = intended(old.get(key), (), item) if isinstance(item, dict) else item
    else:
        target[last] = value
    return data


def edit(before: str, changes: list[tuple[tuple[str | int, ...], Any]]) -> str:
    """set_values, checking that the result loads as the old data with the changes applied."""
    after = set_values(before, changes)
    data = yaml.safe_load(before)
    for path, value in changes:
        data = intended(data, path, value)
    assert yaml.safe_load(after) == data
    return after


def diff_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines a unified diff removes and adds."""
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    removed = [line[1:] for line in lines[2:] if line.startswith("-")]
    added = [line[1:] for line in lines[2:] if line.startswith("+")]
    return removed, added


# -- replacing a scalar --------------------------------------------------------------------------

BLOCK = doc("""
    # the runtime
    runtime:
      concurrency: 4      # workers

      timeout_ms: 10000
    name: "demo"
    """)


def test_a_scalar_in_a_block_mapping_is_replaced_in_place():
    after = edit(BLOCK, [(("runtime", "timeout_ms"), 30000)])
    assert after == BLOCK.replace("10000", "30000")
    assert diff_lines(BLOCK, after) == (["  timeout_ms: 10000"], ["  timeout_ms: 30000"])


def test_a_trailing_comment_and_its_spacing_are_kept():
    after = edit(BLOCK, [(("runtime", "concurrency"), 16)])
    assert after == BLOCK.replace("concurrency: 4      # workers", "concurrency: 16      # workers")
    assert diff_lines(BLOCK, after) == (
        ["  concurrency: 4      # workers"],
        ["  concurrency: 16      # workers"],
    )


def test_a_quoted_scalar_becomes_plain_when_plain_is_safe():
    assert edit(BLOCK, [(("name",), "other")]) == BLOCK.replace('"demo"', "other")


def test_a_scalar_in_a_flow_mapping_is_replaced_in_place():
    before = "runtime: {concurrency: 4, timeout_ms: 10000}  # defaults\nname: x\n"
    after = edit(before, [(("runtime", "timeout_ms"), 20000)])
    assert after == "runtime: {concurrency: 4, timeout_ms: 20000}  # defaults\nname: x\n"
    assert diff_lines(before, after) == ([before.splitlines()[0]], [after.splitlines()[0]])


def test_a_scalar_in_the_starter_changes_one_line():
    after = edit(STARTER, [(("graph", "nodes", 2, "for_each", "concurrency"), 6)])
    assert diff_lines(STARTER, after) == (
        ["      for_each: {source: $.paragraphs, concurrency: 2}"],
        ["      for_each: {source: $.paragraphs, concurrency: 6}"],
    )


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (True, "true"),
        (None, "null"),
        (0.5, "0.5"),
        (1e20, "1.0e+20"),
        ("exponential", "exponential"),
        ("a, b", "'a, b'"),
        ("yes", "'yes'"),
        ("8", "'8'"),
        ("", "''"),
        ("it's: here", "'it''s: here'"),
        ("two\nlines", '"two\\nlines"'),
    ],
)
def test_values_are_written_as_yaml_scalars_quoted_only_when_needed(value, written):
    before = "a: {x: 1}\nb: 1\n"
    assert (
        edit(before, [(("a", "x"), value), (("b",), value)])
        == f"a: {{x: {written}}}\nb: {written}\n"
    )


def test_an_empty_value_is_filled_in():
    before = "a:\nb:   # later\nc: [x, y]\n"
    after = edit(before, [(("a",), 1), (("b",), 2)])
    assert after == "a: 1\nb: 2   # later\nc: [x, y]\n"


def test_a_block_scalar_is_replaced_up_to_its_last_line():
    before = "prompt: |\n  Say hello\n  twice\n\n# next\nmodel: x\n"
    assert edit(before, [(("prompt",), "Hi")]) == "prompt: Hi\n\n# next\nmodel: x\n"


def test_a_block_list_replaced_by_a_value_moves_up_onto_its_key_line():
    before = "writes:   # where\n  - a\n  - b\nreads: [c]\n"
    assert edit(before, [(("writes",), ["a", "c"])]) == "writes: [a, c]   # where\nreads: [c]\n"


# -- a dict into an existing mapping ---------------------------------------------------------------

RETRY = {"policy": "retry", "attempts": 3, "backoff": "exponential", "base_ms": 500, "then": "skip"}


def test_a_dict_into_a_flow_mapping_sets_keys_in_place_and_adds_the_rest():
    before = doc("""
        nodes:
          - id: fetch
            on_error: {policy: skip}  # for now
            writes: [x]
        """)
    after = edit(before, [(("nodes", 0, "on_error"), RETRY)])
    assert after == doc("""
        nodes:
          - id: fetch
            on_error: {policy: retry, attempts: 3, backoff: exponential, base_ms: 500, then: skip}  # for now
            writes: [x]
        """)  # noqa: E501


def test_a_dict_into_a_block_mapping_sets_keys_in_place_and_appends_lines():
    before = doc("""
        nodes:
          - id: fetch
            on_error:
              policy: skip   # for now

            writes: [x]
        """)
    after = edit(before, [(("nodes", 0, "on_error"), RETRY)])
    assert after == doc("""
        nodes:
          - id: fetch
            on_error:
              policy: retry   # for now
              attempts: 3
              backoff: exponential
              base_ms: 500
              then: skip

            writes: [x]
        """)
    removed, added = diff_lines(before, after)
    assert removed == ["      policy: skip   # for now"]
    assert added == [
        "      policy: retry   # for now",
        "      attempts: 3",
        "      backoff: exponential",
        "      base_ms: 500",
        "      then: skip",
    ]


# -- adding a missing key --------------------------------------------------------------------------


def test_a_key_goes_after_a_nested_block_mapping_and_before_a_comment():
    before = doc("""
        nodes:
          - id: a
            args:
              path: data/x.txt
              options:
                deep: true
            # the next node
          - id: b
        """)
    after = edit(before, [(("nodes", 0, "timeout_ms"), 5000)])
    assert after == before.replace(
        "        deep: true\n", "        deep: true\n    timeout_ms: 5000\n"
    )
    assert diff_lines(before, after) == ([], ["    timeout_ms: 5000"])


def test_a_key_goes_after_a_block_sequence():
    before = doc("""
        nodes:
          - id: a
            writes:
            - x
            - y: 1
              z: 2
          - id: b
        """)
    after = edit(before, [(("nodes", 0, "on_error"), {"policy": "retry", "attempts": 3})])
    assert after == before.replace(
        "      z: 2\n", "      z: 2\n    on_error: {policy: retry, attempts: 3}\n"
    )


def test_a_key_goes_after_a_literal_block_scalar_and_its_blank_lines():
    before = doc("""
        nodes:
          - id: a
            prompt: |
              Summarise this.

              Be brief.

          # b is next
          - id: b
        """)
    after = edit(before, [(("nodes", 0, "max_tokens"), 800)])
    assert after == before.replace(
        "      Be brief.\n\n", "      Be brief.\n\n    max_tokens: 800\n"
    )


def test_a_key_keeps_the_kept_trailing_lines_of_a_block_scalar():
    before = "a:\n  text: |+\n    x\n\n\nb: 1\n"
    assert edit(before, [(("a", "n"), 1)]) == "a:\n  text: |+\n    x\n\n\n  n: 1\nb: 1\n"


def test_a_key_goes_into_a_flow_style_node():
    before = "nodes:\n  - {id: a, kind: tool, impl: t.py}\n  - {id: b, kind: tool, impl: u.py}\n"
    after = edit(before, [(("nodes", 0, "timeout_ms"), 5000)])
    assert after == before.replace("impl: t.py}", "impl: t.py, timeout_ms: 5000}")
    assert diff_lines(before, after) == (
        ["  - {id: a, kind: tool, impl: t.py}"],
        ["  - {id: a, kind: tool, impl: t.py, timeout_ms: 5000}"],
    )


def test_keys_go_into_empty_and_multi_line_flow_mappings():
    before = "a: {}\nb: {\n  x: 1,\n}\nc: {d}\n"
    after = edit(before, [(("a", "k"), 1), (("b", "y"), [1, 2]), (("c", "e"), 2)])
    assert after == "a: {k: 1}\nb: {\n  x: 1, y: [1, 2],\n}\nc: {d, e: 2}\n"


def test_a_missing_top_level_mapping_is_created():
    before = "name: demo\ngraph:\n  nodes:\n    - id: a\n      kind: tool\n# end of file\n"
    after = edit(before, [(("runtime", "concurrency"), 8)])
    assert after == before.replace("# end", "runtime: {concurrency: 8}\n# end")
    assert diff_lines(before, after) == ([], ["runtime: {concurrency: 8}"])


def test_a_missing_nested_mapping_is_created_in_the_nearest_ancestor():
    after = edit(STARTER, [(("graph", "nodes", 0, "for_each", "concurrency"), 3)])
    assert diff_lines(STARTER, after) == ([], ["      for_each: {concurrency: 3}"])
    assert after.index("for_each: {concurrency: 3}") > after.index("writes: [text]")


def test_a_file_without_a_final_line_break_gets_a_new_last_line():
    before = "a:\n  b: 1  # note"
    assert edit(before, [(("a", "c"), 2)]) == "a:\n  b: 1  # note\n  c: 2"


def test_crlf_line_ends_are_kept():
    before = "a: 1\r\nb:\r\n  c: 2\r\n"
    assert edit(before, [(("b", "d"), 3), (("a",), 5)]) == "a: 5\r\nb:\r\n  c: 2\r\n  d: 3\r\n"


def test_an_anchor_before_a_replaced_value_is_kept():
    before = "a: &limit 5\n"
    assert edit(before, [(("a",), 6)]) == "a: &limit 6\n"


# -- several changes -------------------------------------------------------------------------------


def test_several_changes_compose():
    changes = [
        (("runtime", "concurrency"), 8),
        (("graph", "nodes", 0, "timeout_ms"), 2000),
        (("graph", "nodes", 2, "on_error"), {"attempts": 4, "backoff": "exponential"}),
        (("graph", "nodes", 3, "on_error"), {"policy": "retry", "attempts": 2}),
        (("graph", "nodes", 0, "timeout_ms"), 3000),
        (("state", "schema", "total", "default"), 1),
    ]
    after = edit(STARTER, changes)
    assert diff_lines(STARTER, after) == (
        [
            "  concurrency: 4",
            "    total:      {type: integer, default: 0}",
            "      on_error: {policy: retry, attempts: 2, backoff: linear, base_ms: 50}",
        ],
        [
            "  concurrency: 8",
            "    total:      {type: integer, default: 1}",
            "      timeout_ms: 3000",
            "      on_error: {policy: retry, attempts: 4, backoff: exponential, base_ms: 50}",
            "      on_error: {policy: retry, attempts: 2}",
        ],
    )


def test_no_changes_leave_the_text_as_it_is():
    assert set_values(STARTER, []) == STARTER


# -- what cannot be done ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            ("name", "x"),
            "cannot set $.name.x: $.name is the value 'starter' at line 2, column 7, not a mapping",
        ),
        (
            ("graph", "nodes", 9, "timeout_ms"),
            "cannot set $.graph.nodes[9].timeout_ms: "
            "$.graph.nodes (at line 17, column 5) has 4 items, "
            "so no item 9",
        ),
        (
            ("graph", "nodes", "split"),
            "cannot set $.graph.nodes.split: $.graph.nodes is a list "
            "at line 17, column 5, not a mapping",
        ),
        (
            ("graph", 0),
            "cannot set $.graph[0]: $.graph is a mapping at line 16, column 3, not a list",
        ),
        (
            ("limits", "tokens", 0),
            "cannot set $.limits.tokens[0]: $.limits does not exist, and "
            "a list item cannot be created by its index",
        ),
    ],
)
def test_a_path_that_cannot_be_followed_is_refused(path, message):
    with pytest.raises(YamlEditError) as caught:
        set_values(STARTER, [(path, 1)])
    assert str(caught.value) == message
    assert isinstance(caught.value, EvolveError)


def test_invalid_yaml_is_refused():
    with pytest.raises(YamlEditError, match=r"^the YAML text is not valid: line 2, column 1: "):
        set_values("a: [1,\n", [(("a",), 1)])


def test_a_path_through_an_alias_is_refused():
    before = "base: &retry {policy: retry}\nnode: *retry\n"
    with pytest.raises(YamlEditError, match=r"\$\.node is an alias \(\*retry\) at line 2"):
        set_values(before, [(("node", "attempts"), 3)])


def test_an_edit_that_would_change_another_value_is_refused():
    before = "a: &n 1\nb: *n\n"
    with pytest.raises(YamlEditError, match=r"^cannot set \$\.a safely: .* make \$\.b differ"):
        set_values(before, [(("a",), 2)])


def test_a_line_that_would_change_a_block_scalar_is_refused():
    before = "a:\n  text: |\n    x"  # no final line break: a new line would add one to `text`
    with pytest.raises(YamlEditError, match=r"make \$\.a\.text differ from what was asked"):
        set_values(before, [(("a", "n"), 1)])


# -- any node, any of the tuned keys -------------------------------------------------------------

_scalars = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
)
_on_error = st.fixed_dictionaries(
    {"policy": st.sampled_from(["retry", "skip", "fail_run"])},
    optional={
        "attempts": st.integers(1, 10),
        "backoff": st.sampled_from(["none", "linear", "exponential"]),
        "base_ms": st.integers(0, 60_000),
        "then": st.sampled_from(["skip", "fail_run"]),
    },
)
_keys = st.sampled_from([("timeout_ms",), ("on_error",), ("for_each", "concurrency")])


@st.composite
def _changes(draw) -> list[tuple[tuple[str | int, ...], Any]]:
    changes = []
    for _ in range(draw(st.integers(1, 3))):
        index, keys = draw(st.integers(0, 3)), draw(_keys)
        value = draw(_on_error | _scalars if keys == ("on_error",) else _scalars)
        changes.append((("graph", "nodes", index, *keys), value))
    return changes


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_changes())
def test_any_tuned_key_of_any_starter_node_changes_only_that_value(changes):
    after = set_values(STARTER, changes)
    data = yaml.safe_load(STARTER)
    for path, value in changes:
        data = intended(data, path, value)
    loaded = yaml.safe_load(after)
    assert loaded == data  # everything else is unchanged
    path, value = changes[-1]
    found = loaded
    for part in path:
        found = found[part]
    assert found == value or (isinstance(value, dict) and value.items() <= found.items())
    removed, added = diff_lines(STARTER, after)
    assert len(removed) <= len(changes) and len(added) <= len(changes)
