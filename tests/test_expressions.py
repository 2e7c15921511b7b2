"""The when/until expression language: parsing, precedence, evaluation, and error offsets."""

from __future__ import annotations

import pytest

from evolve.spec.expressions import (
    MISSING,
    Binary,
    ExpressionError,
    Length,
    Literal,
    Not,
    Path,
    parse_expression,
    resolve_path,
)

STATE = {
    "n": 3,
    "x": 0.5,
    "name": "evolve",
    "empty": "",
    "flag": True,
    "off": False,
    "none": None,
    "items": [{"ok": True}, {"ok": False}, {"ok": True}],
    "doc": {"title": "T", "tags": ["a", "b"], "meta": {}},
}


def value(source: str, state=STATE, **bound):
    return parse_expression(source).evaluate(state, **bound)


# -- precedence and grouping ---------------------------------------------------------------------


def test_and_binds_tighter_than_or():
    assert parse_expression("true || false && false").tree == Binary(
        "||", Literal(True), Binary("&&", Literal(False), Literal(False))
    )
    assert value("true || false && false") is True
    assert value("(true || false) && false") is False


def test_and_and_or_are_left_associative():
    assert parse_expression("1 && 2 && 3").tree == Binary(
        "&&", Binary("&&", Literal(1), Literal(2)), Literal(3)
    )


def test_comparison_binds_tighter_than_and():
    tree = parse_expression("$.n > 1 && $.x < 1").tree
    assert tree.op == "&&"
    assert tree.left.op == ">" and tree.right.op == "<"
    assert value("$.n > 1 && $.x < 1") is True
    assert value("$.n > 5 || $.x == 0.5") is True


def test_not_applies_to_a_whole_comparison():
    # the documented grammar: not := '!' not | compare, so `!a == b` is `!(a == b)`
    assert parse_expression("!$.n == 3").tree == Not(Binary("==", Path("$", ("n",), 1), Literal(3)))
    assert value("!$.n == 3") is False
    assert value("!$.n == 4") is True
    assert value("!!$.flag") is True
    assert value("!($.flag && $.off)") is True


def test_comparisons_do_not_chain():
    with pytest.raises(ExpressionError) as caught:
        parse_expression("1 < 2 < 3")
    assert caught.value.offset == 6
    assert "unexpected '<' after a complete expression" in str(caught.value)


def test_parentheses_and_whitespace():
    assert value("(($.n))==3") is True
    assert value("  ( $.n  >=  3 )  ") is True
    assert value("\t$.n\n<=\n3") is True


# -- literals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("42", 42),
        ("-7", -7),
        ("2.5", 2.5),
        ("1e3", 1000.0),
        ("-1.5E-1", -0.15),
        ("true", True),
        ("false", False),
        ("null", None),
        ("'single'", "single"),
        ('"double"', "double"),
        ("''", ""),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'back\\slash'", "back\\slash"),
        ("'has \"other\" quotes'", 'has "other" quotes'),
        ("'&& || ( ) == !'", "&& || ( ) == !"),
    ],
)
def test_literals(source, expected):
    result = value(source)
    assert result == expected and type(result) is type(expected)


def test_number_types_are_kept():
    assert parse_expression("1").tree == Literal(1)
    assert isinstance(parse_expression("1.0").tree.value, float)


# -- comparisons ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("$.n == 3", True),
        ("$.n == 3.0", True),
        ("$.n != 3", False),
        ("$.n > 2", True),
        ("$.n >= 3", True),
        ("$.n < 3", False),
        ("$.n <= 3", True),
        ("$.x < $.n", True),
        ("$.name == 'evolve'", True),
        ('$.name == "evolve"', True),
        ("$.name > 'abc'", True),
        ("$.name < 'abc'", False),
        # no comparing across types
        ("$.name > 1", False),
        ("$.n < 'z'", False),
        ("$.n == '3'", False),
        # booleans are not numbers
        ("$.flag == 1", False),
        ("$.off == 0", False),
        ("$.flag == true", True),
        ("$.flag > 0", False),
        ("$.none == null", True),
        ("$.none != null", False),
        ("$.items == $.items", True),
        ("$.doc.tags == $.doc.tags", True),
    ],
)
def test_comparisons(source, expected):
    assert value(source) is expected


# -- paths and missing values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("$.doc.title == 'T'", True),
        ("$.doc.tags.1 == 'b'", True),
        ("$.items.0.ok == true", True),
        ("$.items.1.ok", False),
        ("$.items.2.ok", True),
    ],
)
def test_paths_reach_into_objects_and_lists(source, expected):
    assert value(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("$.missing == 1", False),
        ("$.missing == null", False),  # missing is not null
        ("$.missing > 0", False),
        ("$.missing < 0", False),
        ("$.missing >= 0", False),
        ("$.missing <= 0", False),
        ("$.missing != 1", True),  # ... except !=
        ("$.missing != null", True),
        ("$.missing == $.also_missing", False),
        ("$.missing != $.also_missing", True),
        ("1 == $.missing", False),
        ("1 != $.missing", True),
        ("$.items.9.ok == true", False),
        ("$.items.-1 == null", False),
        ("$.name.first == 'e'", False),
        ("$.doc.meta.x != 1", True),
        ("!$.missing", True),  # missing is falsy
        ("$.missing || $.flag", True),
        ("$.missing && true", False),
        ("length($.missing) == 0", False),
        ("length($.missing) != 0", True),
    ],
)
def test_missing_paths_compare_false_except_not_equal(source, expected):
    assert value(source) is expected


def test_a_missing_path_evaluates_to_missing():
    assert value("$.missing") is MISSING
    assert value("$.items.7") is MISSING
    assert not MISSING
    assert repr(MISSING) == "MISSING"


def test_resolve_path():
    assert resolve_path(STATE, ["doc", "tags", "0"]) == "a"
    assert resolve_path(STATE, ()) is STATE
    assert resolve_path(STATE, ["items", "3"]) is MISSING
    assert resolve_path(STATE, ["n", "x"]) is MISSING
    assert resolve_path({"a": None}, ["a"]) is None
    assert resolve_path({"a": None}, ["a", "b"]) is MISSING


def test_item_and_index():
    expr = parse_expression("$item.ok == true && $index < 2")
    assert [p.root for p in expr.paths] == ["$item", "$index"]
    assert expr.holds({}, item={"ok": True}, index=1) is True
    assert expr.holds({}, item={"ok": True}, index=2) is False
    assert expr.holds({}, item={"ok": False}, index=0) is False
    assert value("$item == 'x'", item="x") is True
    # unbound outside for_each: missing
    assert value("$item.ok != true") is True
    assert value("$index == 0") is False


def test_paths_are_listed_with_their_offsets():
    expr = parse_expression("length($.doc.tags) > 0 || $item.a.b == $index")
    assert [(p.root, p.parts, p.offset) for p in expr.paths] == [
        ("$", ("doc", "tags"), 7),
        ("$item", ("a", "b"), 26),
        ("$index", (), 39),
    ]
    assert [p.text for p in expr.paths] == ["$.doc.tags", "$item.a.b", "$index"]


def test_field_names_may_contain_dashes_and_digits():
    assert value("$.a-b.0 == 1", state={"a-b": [1]}) is True


# -- length() ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("length($.items)", 3),
        ("length($.name)", 6),
        ("length($.empty)", 0),
        ("length($.doc)", 3),
        ("length($.doc.meta)", 0),
        ("length('abc')", 3),
        ("length(($.doc.tags))", 2),
    ],
)
def test_length(source, expected):
    assert value(source) == expected


@pytest.mark.parametrize(
    "source", ["length($.n)", "length($.flag)", "length($.none)", "length(null)", "length(1)"]
)
def test_length_of_what_has_none_is_missing(source):
    assert value(source) is MISSING
    assert value(f"{source} == 0") is False
    assert value(f"{source} != 0") is True


def test_length_in_comparisons():
    assert parse_expression("length($.items) > 0").tree == Binary(
        ">", Length(Path("$", ("items",), 7)), Literal(0)
    )
    assert value("length($.items) > 2 && length($.name) == 6") is True


def test_holds_is_a_bool():
    assert parse_expression("$.n").holds(STATE) is True
    assert parse_expression("$.empty").holds(STATE) is False
    assert parse_expression("length($.items)").holds(STATE) is True
    assert parse_expression("$.missing").holds(STATE) is False


# -- syntax errors, with the 0-based offset of the problem --------------------------------------


@pytest.mark.parametrize(
    ("source", "offset", "message"),
    [
        ("", 0, "the expression is empty"),
        ("   ", 0, "the expression is empty"),
        ("$.n >", 5, "expected a value but found end of expression"),
        ("$.n > > 1", 6, "expected a value but found '>'"),
        ("$.n @ 1", 4, "unexpected character '@'"),
        ("$.n ==   # 1", 9, "unexpected character '#'"),
        ("$.n = 1", 4, "unexpected character '='"),
        ("$.n == 1 1", 9, "unexpected '1' after a complete expression"),
        ("($.n == 1", 9, "expected ')' but found end of expression"),
        ("($.n == 1]", 9, "unexpected character ']'"),
        ("$.n == 1)", 8, "unexpected ')' after a complete expression"),
        ("()", 1, "expected a value but found ')'"),
        ("length $.n", 7, "expected '(' but found '$.n'"),
        ("length($.n", 10, "expected ')' but found end of expression"),
        ("length", 6, "expected '(' but found end of expression"),
        ("items == 1", 0, "unknown name 'items' (use $.field for state"),
        ("$.n == True", 7, "unknown name 'True'"),
        ("$.n and true", 4, "unexpected 'and' after a complete expression"),
        ("$ == 1", 0, "a state path needs a field"),
        ("1 == $index.x", 5, "$index has no fields"),
        ("$.n == 'open", 7, 'unexpected character "\'"'),
        ('"', 0, "unexpected character '\"'"),
        ("!", 1, "expected a value but found end of expression"),
        ("&& $.n", 0, "expected a value but found '&&'"),
        ("$items == 1", 5, "unexpected 's' after a complete expression"),
    ],
)
def test_syntax_errors_carry_the_offset(source, offset, message):
    with pytest.raises(ExpressionError) as caught:
        parse_expression(source)
    assert caught.value.offset == offset
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("source", "offset"),
    [
        ("(" * 1000 + "1" + ")" * 1000, 64),
        ("!" * 1000 + "true", 64),
        ("length(" * 100 + "$.a" + ")" * 100, 64 * 7),
    ],
)
def test_deep_nesting_is_an_error_not_a_crash(source, offset):
    with pytest.raises(ExpressionError) as caught:
        parse_expression(source)
    assert "nested too deeply" in str(caught.value)
    assert caught.value.offset == offset


def test_nesting_within_the_limit_is_fine():
    assert value("(" * 60 + "$.n" + ")" * 60 + " == 3") is True
    assert value("!" * 60 + "$.flag") is True


def test_the_expression_keeps_its_source():
    expr = parse_expression(" $.n > 1 ")
    assert expr.source == " $.n > 1 "


# -- functions for evals: contains, lower, any/all, $case ------------------------------------

FINDINGS = {
    "findings": [
        {"title": "SQL Injection in get_user", "file": "a.py", "sev": "high"},
        {"title": "N+1 query", "file": "b.py", "sev": "low"},
    ],
    "files": ["a.py", "b.py"],
    "label": "Bug",
}
CASE = {"id": "c1", "expect": {"label": "bug", "sev": "high", "files": ["a.py"]}}


@pytest.mark.parametrize(
    "source, expected",
    [
        ('contains($.files, "a.py")', True),
        ('contains($.files, "c.py")', False),
        ('contains($.label, "ug")', True),
        ('contains($.findings.0, "file")', True),  # a mapping: has the key
        ("contains($.missing, 1)", False),
        ('lower($.label) == "bug"', True),
        ("lower($.label) == $case.expect.label", True),
        ("lower($.findings)", MISSING),
        ('any($.findings, contains(lower($item.title), "sql injection"))', True),
        ("all($.findings, contains($.files, $item.file))", True),
        ('all($.findings, $item.sev == "high")', False),
        ('any($.findings, "sev", "high")', True),
        ('any($.findings, "sev", $case.expect.sev)', True),
        ('all($.findings, "sev", "high")', False),
        ("all($.empty_list, false)", True),
        ("any($.empty_list, true)", False),
        ("any($.label, true)", False),  # not a list
        ("all($case.expect.files, contains($.files, $item))", True),
        ("$case.id == 'c1' && length($case.expect.files) == 1", True),
        ("any($.findings, any($.files, $item == 'b.py'))", True),  # the innermost $item wins
    ],
)
def test_eval_functions(source, expected):
    got = parse_expression(source).evaluate({**FINDINGS, "empty_list": []}, case=CASE)
    assert got is expected if isinstance(expected, bool) or expected is MISSING else got == expected


def test_case_is_missing_without_a_case():
    assert parse_expression("$case.expect.label == 'bug'").evaluate(FINDINGS) is False
    assert parse_expression("$case.id != 'x'").evaluate(FINDINGS) is True


def test_item_inside_any_is_the_element_not_a_read_path():
    expression = parse_expression('any($.findings, $item.sev == "high") && $item.x')
    assert [p.text for p in expression.paths] == ["$.findings", "$item.x"]


@pytest.mark.parametrize(
    "source, message, offset",
    [
        ("any($.findings)", "any() takes 2 or 3 arguments, not 1", 0),
        ("lower($.a, $.b)", "lower() takes 1 argument, not 2", 0),
        ("contains($.a)", "contains() takes 2 arguments, not 1", 0),
        ("$.a && all($.f, 1, 2)", "the field of all(xs, field, value) must be a string", 7),
        ("count($.a)", "unknown name 'count'", 0),
        ("contains($.a 'x')", "expected ')' but found \"'x'\"", 13),
        ("any($.a, )", "expected a value but found ')'", 9),
    ],
)
def test_bad_calls_are_located(source, message, offset):
    with pytest.raises(ExpressionError) as caught:
        parse_expression(source)
    assert message in str(caught.value) and caught.value.offset == offset
