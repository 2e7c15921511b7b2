"""The cases of an experience: `cases: {source: data/cases.jsonl}` in experience.yaml.

A case is `{id, args, expect?}`: `args` is the initial state of its run (over the declared
defaults), `expect` what its evals compare against (`$case.expect.x`). Files may be JSON lines,
a JSON list, a YAML list, or CSV (an `id` column, `args.<field>` and `expect.<field>` columns whose
cells are parsed as JSON when they can be, else kept as text). A malformed case is one clear line
naming the file and the line or entry, exit code 2.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from typing import Any

from evolve.errors import UsageError, did_you_mean
from evolve.spec.model import Cases


@dataclass(frozen=True)
class Case:
    id: str
    args: dict[str, Any] = field(default_factory=dict)
    expect: Any = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "args": self.args, "expect": self.expect}


def load_cases(cases: Cases) -> list[Case]:
    try:
        text = cases.path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{cases.uri}: cannot read the cases ({exc})") from None
    entries = _entries(text, cases)
    found: list[Case] = []
    seen: set[str] = set()
    for where, entry in entries:
        case = _case(entry, f"{cases.uri}:{where}")
        if case.id in seen:
            raise UsageError(f"{cases.uri}:{where}: duplicate case id '{case.id}'")
        seen.add(case.id)
        found.append(case)
    if not found:
        raise UsageError(f"{cases.uri}: no cases in the file")
    return found


def select(cases: list[Case], ids: list[str]) -> list[Case]:
    """The cases named by `--case` (all when none is named), in file order."""
    if not ids:
        return cases
    known = {c.id for c in cases}
    for wanted in ids:
        if wanted not in known:
            raise UsageError(f"no case '{wanted}'{did_you_mean(wanted, known)}")
    return [c for c in cases if c.id in ids]


def _entries(text: str, cases: Cases) -> list[tuple[str, Any]]:
    if cases.format == "jsonl":
        out = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    out.append((str(number), json.loads(line)))
                except ValueError as exc:
                    raise UsageError(f"{cases.uri}:{number}: not a JSON line ({exc})") from None
        return out
    if cases.format == "csv":
        rows = list(csv.DictReader(text.splitlines()))
        return [(str(i), _csv_case(row)) for i, row in enumerate(rows, start=2)]
    try:
        if cases.format == "yaml":
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, Exception) as exc:
        raise UsageError(f"{cases.uri}: not valid {cases.format} ({exc})") from None
    if not isinstance(data, list):
        raise UsageError(f"{cases.uri}: expected a list of cases")
    return [(f"case #{i}", entry) for i, entry in enumerate(data, start=1)]


def _csv_case(row: dict[str, str]) -> dict[str, Any]:
    case: dict[str, Any] = {"id": row.get("id"), "args": {}, "expect": {}}
    for column, cell in row.items():
        if column in ("args", "expect") and cell:
            case[column] = _cell(cell)
        elif column and column.startswith(("args.", "expect.")):
            group, _, name = column.partition(".")
            case[group][name] = _cell(cell)
    return case


def _cell(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _case(entry: Any, where: str) -> Case:
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: a case must be a mapping with an 'id'")
    unknown = set(entry) - {"id", "args", "expect", "description"}
    if unknown:
        key = sorted(unknown)[0]
        raise UsageError(
            f"{where}: unknown key '{key}' in a case"
            f"{did_you_mean(key, ['id', 'args', 'expect', 'description'])}"
        )
    ident = entry.get("id")
    if isinstance(ident, bool) or not isinstance(ident, str | int) or str(ident) == "":
        raise UsageError(f"{where}: a case needs an 'id' (a string or a number)")
    args = entry.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise UsageError(f"{where}: 'args' of case '{ident}' must be a mapping of state fields")
    expect = entry.get("expect", {})
    return Case(str(ident), args, {} if expect is None else expect)
