"""Prompt placeholders: finding them (with offsets), rendering them, and checking them in specs."""

from __future__ import annotations

import pytest

from conftest import write_experience
from evolve.errors import EvolveError, SpecError
from evolve.spec import load_experience
from evolve.spec.templates import TemplateError, line_col, placeholders, render

VALUES = {
    "text": "Hello",
    "n": 3,
    "x": 0.5,
    "flag": True,
    "none": None,
    "doc": {"title": "T", "tags": ["a", "b"], "my-key": "dash", "nested": {"k": "é"}},
    "rows": [{"id": 1}, {"id": 2}],
    "$item": {"focus": "security", "weight": 2},
    "$index": 0,
}


# -- finding placeholders ------------------------------------------------------------------------


def test_placeholders_with_offsets_roots_and_parts():
    template = "A {{ text }} B {{doc.tags.0}}\n{{ $item.focus }} {{ $index }}"
    found = placeholders(template)
    assert [(p.text, p.root, p.parts, p.offset, p.valid) for p in found] == [
        ("text", "text", (), 2, True),
        ("doc.tags.0", "doc", ("tags", "0"), 15, True),
        ("$item.focus", "$item", ("focus",), 30, True),
        ("$index", "$index", (), 48, True),
    ]


@pytest.mark.parametrize(
    "inner",
    ["text", " text ", "\ttext\n", "doc.my-key", "_private", "a1.b2.3", "$item", "$item.a.b"],
)
def test_valid_placeholders(inner):
    (found,) = placeholders("{{" + inner + "}}")
    assert found.valid
    assert found.text == inner.strip()


@pytest.mark.parametrize(
    "inner",
    [
        "",
        "  ",
        "a b",
        "text | upper",
        "$.text",
        "my-field",
        "1abc",
        "doc.",
        ".doc",
        "doc..a",
        "$index.x",
        "$items",
        "text()",
        "'text'",
        "{ text",
    ],
)
def test_malformed_placeholders(inner):
    (found,) = placeholders("x {{" + inner + "}} y")
    assert not found.valid
    assert found.offset == 2


def test_triple_braces_and_unclosed_braces():
    # the first `{{` opens, the first `}}` closes: `{{{ x }}}` holds "{ x", which is malformed
    (found,) = placeholders("{{{ x }}}")
    assert (found.text, found.valid) == ("{ x", False)
    # an opening `{{` without a closing `}}` is not a placeholder at all
    assert placeholders("a {{ b") == []
    assert placeholders("a }} b {{") == []
    assert placeholders("{ x }") == []


def test_a_placeholder_may_span_lines():
    (found,) = placeholders("one {{\n  text\n}} two")
    assert (found.text, found.valid, found.offset) == ("text", True, 4)


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("abc", 0, (1, 1)),
        ("abc", 2, (1, 3)),
        ("abc", 3, (1, 4)),
        ("a\nbc", 2, (2, 1)),
        ("a\nbc", 3, (2, 2)),
        ("a\n\n\nxyz", 5, (4, 2)),
        ("é\nü", 2, (2, 1)),
    ],
)
def test_line_col(text, offset, expected):
    assert line_col(text, offset) == expected


# -- rendering -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ text }}", "Hello"),
        ("{{text}}!", "Hello!"),
        ("{{ n }}", "3"),
        ("{{ x }}", "0.5"),
        ("{{ flag }}", "true"),
        ("{{ none }}", "null"),
        ("{{ doc.title }}", "T"),
        ("{{ doc.tags }}", '["a", "b"]'),
        ("{{ doc.tags.1 }}", "b"),
        ("{{ doc.my-key }}", "dash"),
        ("{{ doc.nested }}", '{"k": "é"}'),
        ("{{ rows.1.id }}", "2"),
        ("{{ rows }}", '[{"id": 1}, {"id": 2}]'),
        ("{{ $item.focus }} x{{ $item.weight }}", "security x2"),
        ("{{ $item }}", '{"focus": "security", "weight": 2}'),
        ("#{{ $index }}", "#0"),
        ("{{ text }} {{ text }}", "Hello Hello"),
        ("no placeholders {here}", "no placeholders {here}"),
        ("line 1\n{{\n text\n}}\nline 3", "line 1\nHello\nline 3"),
    ],
)
def test_render(template, expected):
    assert render(template, VALUES) == expected


def test_rendered_values_are_not_rendered_again():
    assert render("{{ a }}", {"a": "{{ b }}", "b": "no"}) == "{{ b }}"


def test_falsy_values_are_still_values():
    assert render("[{{ e }}|{{ z }}|{{ f }}|{{ l }}]", {"e": "", "z": 0, "f": False, "l": []}) == (
        "[|0|false|[]]"
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ nope }}", "placeholder '{{ nope }}' names nothing the node can read"),
        ("{{ doc.nope }}", "placeholder '{{ doc.nope }}' names nothing the node can read"),
        ("{{ doc.tags.5 }}", "'{{ doc.tags.5 }}' names nothing"),
        ("{{ text.length }}", "'{{ text.length }}' names nothing"),
        ("{{ none.x }}", "'{{ none.x }}' names nothing"),
        ("ok {{ text }} then {{ a b }}", "malformed placeholder '{{ a b }}'"),
        ("{{ }}", "malformed placeholder"),
        ("{{ $.text }}", "malformed placeholder '{{ $.text }}'"),
        # like `$index.x` in an expression: an index has no fields
        ("{{ $index.x }}", "malformed placeholder '{{ $index.x }}'"),
    ],
)
def test_render_refuses_what_it_cannot_fill(template, message):
    with pytest.raises(TemplateError) as caught:
        render(template, VALUES)
    assert message in str(caught.value)
    assert isinstance(caught.value, EvolveError)


def test_item_and_index_are_missing_unless_given():
    with pytest.raises(TemplateError):
        render("{{ $item.focus }}", {"text": "x"})
    with pytest.raises(TemplateError):
        render("{{ $index }}", {})


# -- placeholders checked when an experience is loaded ---------------------------------------------

SPEC = """\
name: demo
version: 0.1.0
state:
  schema:
    docs: {type: array}
    text: {type: string}
    out: {type: array, merge: array_append}
graph:
  nodes:
    - id: per_doc
      kind: agent
      prompt: prompts/each.md
      reads: [text]
      writes: [out]
      args: {tone: dry}
      for_each: {source: $.docs}
    - id: staged
      kind: agent
      prompt: prompts/stage.md
      writes: [out]
    - id: plain
      kind: agent
      prompt: prompts/plain.md
      reads: [text]
      writes: [out]
  pipelines:
    - {id: pipe, items: $.docs, stages: [staged]}
"""


def test_readable_placeholders_pass(tmp_path):
    exp = write_experience(
        tmp_path,
        SPEC,
        {
            # reads, args, $item and $index under for_each
            "prompts/each.md": "{{ text }} {{ text.sub }} in a {{ tone }} way: {{ $item.t }} "
            "#{{ $index }}",
            # a pipeline stage gets $item and $index too
            "prompts/stage.md": "Stage {{ $item }} {{$index}}",
            "prompts/plain.md": "Just {{ text }}. Braces { alone } are text, so is {{ unclosed",
        },
    )
    experience = load_experience(exp)
    assert experience.nodes["per_doc"].prompt == exp / "prompts" / "each.md"


def test_unreadable_placeholders_are_located_in_the_prompt(tmp_path):
    exp = write_experience(
        tmp_path,
        SPEC,
        {
            "prompts/each.md": "{{ tone }}\n  {{ txet }} {{ out }}",
            "prompts/stage.md": "{{ $item.x }} {{ $.text }}",
            "prompts/plain.md": "{{ text }}\n\n{{ $item }}{{ $index }}",
        },
    )
    with pytest.raises(SpecError) as caught:
        load_experience(exp, display="exp/experience.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "exp/prompts/each.md:2:3: placeholder '{{ txet }}' names no readable field; did you "
        "mean 'text'? (add it to reads or args) [$.graph.nodes[0].prompt]",
        # writes are not readable
        "exp/prompts/each.md:2:14: placeholder '{{ out }}' names no readable field (add it to "
        "reads or args) [$.graph.nodes[0].prompt]",
        "exp/prompts/plain.md:3:1: placeholder '{{ $item }}' needs for_each on the node "
        "[$.graph.nodes[2].prompt]",
        "exp/prompts/plain.md:3:12: placeholder '{{ $index }}' needs for_each on the node "
        "[$.graph.nodes[2].prompt]",
        "exp/prompts/stage.md:1:15: malformed placeholder '{{ $.text }}' [$.graph.nodes[1].prompt]",
    ]


def test_prompt_that_is_not_utf8(tmp_path):
    exp = write_experience(
        tmp_path, SPEC, {"prompts/each.md": "", "prompts/stage.md": "", "prompts/plain.md": ""}
    )
    (exp / "prompts" / "plain.md").write_bytes(b"\xff\xfe{{ x }}")
    with pytest.raises(SpecError) as caught:
        load_experience(exp, display="experience.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "experience.yaml:23:15: prompt file 'plain.md' is not UTF-8 text [$.graph.nodes[2].prompt]"
    ]
