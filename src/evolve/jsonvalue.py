"""What a JSON value is, for everything evolve records.

The event log, the state store and every `--json` output are strict JSON (RFC 8259): object keys
are strings, numbers are finite (NaN and Infinity are not JSON), and nesting stops at `MAX_DEPTH`
levels (deeper values break JSON encoders and decoders, Python's included, at a depth that depends
on the stack). Values enter a run from tool, dataset and model outputs, `--args`/`--set` and
declared defaults: each entry point asks `problem(value)` and refuses what is not JSON with a
clear message (a tool's output fails its attempt with `bad_output`), so nothing downstream ever
holds such a value. `dumps` is the strict encoder the writers use: a value that slipped past an
entry point fails loudly there instead of writing `NaN` into a file that `jq` cannot read.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 200  # levels of arrays and objects; no real tool output comes near it


_PLAIN = (str, int, bool, type(None))  # JSON as they are (an int subclass: bool too)


def problem(value: Any, where: str = "the value") -> str | None:
    """Why `value` is not a JSON value (naming where in it), or None when it is one."""
    if _plainly_json(value):  # the usual answer, found without naming every place in the value
        return None
    return _located_problem(value, where)


def _plainly_json(value: Any) -> bool:
    """Whether `value` is JSON by a walk that builds no path: False also when it only cannot
    tell (a float, or nesting deeper than `MAX_DEPTH`), which `_located_problem` then settles."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, _PLAIN):
            continue
        if isinstance(current, dict):
            if depth >= MAX_DEPTH:
                return False
            for key, item in current.items():
                if not isinstance(key, str):
                    return False
                if not isinstance(item, _PLAIN):
                    stack.append((item, depth + 1))
        elif isinstance(current, list | tuple):
            if depth >= MAX_DEPTH:
                return False
            stack.extend((item, depth + 1) for item in current if not isinstance(item, _PLAIN))
        elif isinstance(current, float) and not math.isfinite(current):
            return False
    return True


def _located_problem(value: Any, where: str) -> str | None:
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        current, path, depth = stack.pop()
        if isinstance(current, float):
            if not math.isfinite(current):
                name = "NaN" if math.isnan(current) else ("-" if current < 0 else "") + "Infinity"
                return f"{path} is {name}, which is not a JSON number"
        elif isinstance(current, dict):
            if depth >= MAX_DEPTH:
                return f"{_short(path)} nests deeper than {MAX_DEPTH} levels"
            for key, item in current.items():
                if not isinstance(key, str):
                    return (
                        f"{path} has the key {key!r} ({type(key).__name__}); "
                        "JSON object keys are strings"
                    )
                stack.append((item, f"{path}.{key}", depth + 1))
        elif isinstance(current, list | tuple):
            if depth >= MAX_DEPTH:
                return f"{_short(path)} nests deeper than {MAX_DEPTH} levels"
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(current))
    return None


def _short(path: str) -> str:
    return path if len(path) <= 80 else path[:77] + "..."


def loads(text: str | bytes) -> Any:
    """`json.loads` that refuses NaN and Infinity (Python's accepts them) with a ValueError."""
    return json.loads(text, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def dumps(value: Any, **options: Any) -> str:
    """Strict JSON text: NaN or Infinity raise instead of being written."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, **options)


# built once: json.dumps builds a new encoder on every call that passes options, and these run
# for every event line, kept result and fingerprint
_RECORD = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str)
_CANONICAL = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, default=str, sort_keys=True, separators=(",", ":")
)


def record(value: Any) -> str:
    """`dumps(value, default=str)`: the text the event log and the state store write."""
    return _RECORD.encode(value)


def canonical(value: Any) -> str:
    """Strict JSON with sorted keys and no spaces (anything else as its `str()`): the one text
    of a value, which a digest is taken of."""
    return _CANONICAL.encode(value)
