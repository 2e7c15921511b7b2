"""JSON Schema checks of values, with compiled validators cached per schema."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(schema_json))


def validator_for(schema: dict[str, Any]) -> Any:
    return _validator(json.dumps(schema, sort_keys=True))


def errors(schema: dict[str, Any], value: Any) -> list[str]:
    """Every violation, as `path: message` lines (path `$` for the value itself)."""
    out = []
    for error in sorted(validator_for(schema).iter_errors(value), key=lambda e: list(e.path)):
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        out.append(f"{where}: {error.message}")
    return out


def first_error(schema: dict[str, Any], value: Any) -> str | None:
    if not schema:
        return None
    validator = validator_for(schema)
    if validator.is_valid(value):
        return None
    return errors(schema, value)[0]
