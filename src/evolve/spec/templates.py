"""Prompt placeholders: `{{ field }}`, `{{ field.sub }}`, `{{ $item.key }}`, `{{ $index }}`, and
in judge prompts `{{ $case.expect.x }}`.

`placeholders` finds them (with their offsets, for error locations); `render` fills them from the
node's inputs, writing non-string values as JSON. A placeholder that resolves to nothing is an
error, never sent to a model literally.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from evolve.errors import EvolveError
from evolve.spec.expressions import MISSING, resolve_path

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = re.compile(r"^(\$item|\$index|\$case|[A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_\-]+)*)$")


def _name(text: str) -> re.Match[str] | None:
    """The placeholder's root and dotted parts, or None when malformed ($index has no parts)."""
    name = _NAME.match(text)
    return None if name and name.group(1) == "$index" and name.group(2) else name


class TemplateError(EvolveError):
    """A placeholder that is malformed or names nothing the node can read."""


@dataclass(frozen=True)
class Placeholder:
    text: str  # as written between the braces, stripped
    root: str  # the field name, "$item" or "$index"
    parts: tuple[str, ...]
    offset: int  # of the opening braces in the template
    valid: bool


def placeholders(template: str) -> list[Placeholder]:
    found = []
    for match in _PLACEHOLDER.finditer(template):
        text = match.group(1).strip()
        name = _name(text)
        if name:
            parts = tuple(p for p in name.group(2).split(".") if p)
            found.append(Placeholder(text, name.group(1), parts, match.start(), True))
        else:
            found.append(Placeholder(text, text, (), match.start(), False))
    return found


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of `offset` in `text`."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def render(template: str, values: dict[str, Any]) -> str:
    """Fill every placeholder from `values` (fields by name, plus `$item` and `$index`)."""

    def fill(match: re.Match[str]) -> str:
        text = match.group(1).strip()
        name = _name(text)
        if not name:
            raise TemplateError(f"malformed placeholder '{{{{ {text} }}}}'")
        value = values.get(name.group(1), MISSING)
        parts = [p for p in name.group(2).split(".") if p]
        if value is not MISSING:
            value = resolve_path(value, parts)
        if value is MISSING:
            raise TemplateError(f"placeholder '{{{{ {text} }}}}' names nothing the node can read")
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return _PLACEHOLDER.sub(fill, template)
