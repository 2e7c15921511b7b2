"""The `when`/`until` expression language of experience.yaml, parsed once and evaluated safely.

Grammar (lowest precedence first)::

    expr    := or
    or      := and ('||' and)*
    and     := not ('&&' not)*
    not     := '!' not | compare
    compare := primary (('=='|'!='|'>'|'<'|'>='|'<=') primary)?
    primary := NUMBER | STRING | true | false | null | PATH | CALL | '(' expr ')'
    CALL    := ('length' | 'lower') '(' expr ')' | 'contains' '(' expr ',' expr ')'
             | ('any' | 'all') '(' expr ',' expr ')'
             | ('any' | 'all') '(' expr ',' STRING ',' expr ')'
    PATH    := '$' ('.' NAME | '.' INDEX)*  |  '$item' ('.' NAME)*  |  '$index'
             | '$case' ('.' NAME)*

Paths read state (`$.a.b`), the current item (`$item.key`) or its index (`$index`); in evals,
`$case.expect.x` reads the case being scored. A path that does not resolve is MISSING: every
comparison with it is false except `!=`, and it is falsy. `contains(x, v)` is substring for a
string, membership for a list (and key for a mapping); `lower(s)` lowercases a string. `any(xs, e)`
and `all(xs, e)` evaluate `e` once per element of the list `xs` with `$item` bound to the element
(all of an empty list holds, any does not); `any(xs, "field.path", v)` is the field-match
shorthand for `any(xs, $item.field.path == v)`. Nothing is ever passed to `eval`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from evolve.errors import EvolveError


class ExpressionError(EvolveError):
    """A syntax error, with the 0-based character offset where it was found."""

    exit_code = 2

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


class _Missing:
    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<path>\$(?:item|index|case)?(?:\.[A-Za-z0-9_\-]+)*)
    | (?P<op>==|!=|>=|<=|&&|\|\||[><!(),])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"true": True, "false": False, "null": None}
_COMPARE = {"==", "!=", ">", "<", ">=", "<="}
_MAX_NESTING = 64
_FUNCTIONS = {"length": (1,), "lower": (1,), "contains": (2,), "any": (2, 3), "all": (2, 3)}


@dataclass(frozen=True)
class Path:
    root: str  # "$", "$item", "$index" or "$case"
    parts: tuple[str, ...]
    offset: int

    @property
    def text(self) -> str:
        return ".".join((self.root, *self.parts))


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Not:
    operand: Any


@dataclass(frozen=True)
class Binary:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class Length:
    operand: Any


@dataclass(frozen=True)
class Call:
    """lower(x), contains(x, v), any/all(xs, e) and any/all(xs, "field", v)."""

    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Expression:
    """A parsed expression: its source, its tree and the paths it reads.

    `paths` leaves out `$item` inside any()/all(), which names the element, not a for_each item.
    """

    source: str
    tree: Any
    paths: tuple[Path, ...]

    def evaluate(
        self,
        state: dict[str, Any],
        item: Any = MISSING,
        index: Any = MISSING,
        case: Any = MISSING,
    ) -> Any:
        return _evaluate(self.tree, {"$": state, "$item": item, "$index": index, "$case": case})

    def holds(self, state: dict[str, Any], item: Any = MISSING, index: Any = MISSING) -> bool:
        return bool(self.evaluate(state, item, index))


def _tokenize(source: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        match = _TOKEN.match(source, pos)
        if not match or match.end() == pos:
            offset = len(source) - len(source[pos:].lstrip())
            raise ExpressionError(f"unexpected character {source[offset]!r}", offset)
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    tokens.append(("end", "", len(source)))
    return tokens


class _Parser:
    def __init__(self, source: str):
        self.tokens = _tokenize(source)
        self.i = 0
        self.paths: list[Path] = []
        self.depth = 0
        self.binding = 0  # inside the element expression of any()/all(): $item is the element

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        kind, value, offset = self.take()
        if value != text or kind != "op":
            found = "end of expression" if kind == "end" else repr(value)
            raise ExpressionError(f"expected '{text}' but found {found}", offset)

    def parse(self) -> Any:
        tree = self.or_()
        kind, value, offset = self.peek()
        if kind != "end":
            raise ExpressionError(f"unexpected {value!r} after a complete expression", offset)
        return tree

    def or_(self) -> Any:
        left = self.and_()
        while self.peek()[1] == "||" and self.peek()[0] == "op":
            self.take()
            left = Binary("||", left, self.and_())
        return left

    def and_(self) -> Any:
        left = self.not_()
        while self.peek()[1] == "&&" and self.peek()[0] == "op":
            self.take()
            left = Binary("&&", left, self.not_())
        return left

    def not_(self) -> Any:
        # every '!', '(' and 'length(' comes through here: bound the recursion they cause
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise ExpressionError("the expression is nested too deeply", self.peek()[2])
        try:
            if self.peek()[1] == "!" and self.peek()[0] == "op":
                self.take()
                return Not(self.not_())
            return self.compare()
        finally:
            self.depth -= 1

    def compare(self) -> Any:
        left = self.primary()
        kind, value, _ = self.peek()
        if kind == "op" and value in _COMPARE:
            self.take()
            return Binary(value, left, self.primary())
        return left

    def primary(self) -> Any:
        kind, value, offset = self.take()
        if kind == "number":
            return Literal(float(value) if any(c in value for c in ".eE") else int(value))
        if kind == "string":
            return Literal(_unquote(value))
        if kind == "path":
            return self._path(value, offset)
        if kind == "name":
            if value in _KEYWORDS:
                return Literal(_KEYWORDS[value])
            if value in _FUNCTIONS:
                return self._call(value, offset)
            raise ExpressionError(
                f"unknown name '{value}' (use $.field for state, true/false/null, or one of "
                f"{', '.join(_FUNCTIONS)})",
                offset,
            )
        if kind == "op" and value == "(":
            inner = self.or_()
            self.expect(")")
            return inner
        found = "end of expression" if kind == "end" else repr(value)
        raise ExpressionError(f"expected a value but found {found}", offset)

    def _call(self, name: str, offset: int) -> Any:
        self.expect("(")
        args = [self.or_()]
        while self.peek()[:2] == ("op", ","):
            self.take()
            if name in ("any", "all") and len(args) == 1:
                args.append(self._element_expression())
            else:
                args.append(self.or_())
        self.expect(")")
        arity = _FUNCTIONS[name]
        if len(args) not in arity:
            wanted = " or ".join(str(n) for n in arity)
            raise ExpressionError(
                f"{name}() takes {wanted} argument{'s' * (arity != (1,))}, not {len(args)}",
                offset,
            )
        if name == "length":
            return Length(args[0])
        if len(args) == 3 and not (
            isinstance(args[1], Literal) and isinstance(args[1].value, str) and args[1].value
        ):
            raise ExpressionError(f"the field of {name}(xs, field, value) must be a string", offset)
        return Call(name, tuple(args))

    def _element_expression(self) -> Any:
        self.binding += 1
        try:
            return self.or_()
        finally:
            self.binding -= 1

    def _path(self, text: str, offset: int) -> Path:
        root, *parts = text.split(".")
        if root == "$" and not parts:
            raise ExpressionError("a state path needs a field: write $.field", offset)
        if root == "$index" and parts:
            raise ExpressionError("$index has no fields", offset)
        path = Path(root, tuple(parts), offset)
        if not (root == "$item" and self.binding):
            self.paths.append(path)
        return path


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def parse_expression(source: str) -> Expression:
    """Parse `source`; raises ExpressionError with the offset of the first problem."""
    if not source.strip():
        raise ExpressionError("the expression is empty", 0)
    parser = _Parser(source)
    tree = parser.parse()
    return Expression(source, tree, tuple(parser.paths))


def resolve_path(value: Any, parts: tuple[str, ...] | list[str]) -> Any:
    """Follow dotted `parts` through dicts and lists; MISSING where any step does not exist."""
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def _evaluate(node: Any, env: dict[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Path):
        base = env[node.root]
        return MISSING if base is MISSING else resolve_path(base, node.parts)
    if isinstance(node, Not):
        return not _evaluate(node.operand, env)
    if isinstance(node, Length):
        value = _evaluate(node.operand, env)
        return len(value) if isinstance(value, str | list | dict) else MISSING
    if isinstance(node, Call):
        return _call(node, env)
    if node.op == "&&":
        return bool(_evaluate(node.left, env)) and bool(_evaluate(node.right, env))
    if node.op == "||":
        return bool(_evaluate(node.left, env)) or bool(_evaluate(node.right, env))
    return _compare(node.op, _evaluate(node.left, env), _evaluate(node.right, env))


def _call(node: Call, env: dict[str, Any]) -> Any:
    first = _evaluate(node.args[0], env)
    if node.name == "lower":
        return first.lower() if isinstance(first, str) else MISSING
    if node.name == "contains":
        wanted = _evaluate(node.args[1], env)
        if wanted is MISSING:
            return False
        if isinstance(first, str):
            return isinstance(wanted, str) and wanted in first
        if isinstance(first, list):
            return any(_same(x, wanted) for x in first)
        if isinstance(first, dict):
            return isinstance(wanted, str) and wanted in first
        return False
    if not isinstance(first, list):
        return False
    quantifier = any if node.name == "any" else all
    if len(node.args) == 3:
        parts = node.args[1].value.split(".")
        wanted = _evaluate(node.args[2], env)
        return quantifier(_compare("==", resolve_path(x, parts), wanted) for x in first)
    return quantifier(bool(_evaluate(node.args[1], {**env, "$item": x})) for x in first)


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is MISSING or right is MISSING:
        return op == "!="
    if op == "==":
        return _same(left, right)
    if op == "!=":
        return not _same(left, right)
    numeric = (int, float)
    both_numbers = isinstance(left, numeric) and isinstance(right, numeric)
    both_numbers = both_numbers and not isinstance(left, bool) and not isinstance(right, bool)
    if not (both_numbers or (isinstance(left, str) and isinstance(right, str))):
        return False
    return {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right}[op]


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    return left == right
