"""The state of one run: the one place that writes state.

A run starts from the declared defaults plus `--args`/`--set`, never from an earlier run. Every
write is checked before it lands: the field must be in the node's `writes`, the merged value must
meet the field's JSON Schema, and the merge rule (`last_wins`, `array_append`, `set_once`) must
allow it. A refused write fails the attempt (`AttemptError`); accepted writes are recorded once
(history, snapshot and a `state.write` event) by the run's recorder.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from evolve import jsonvalue
from evolve.errors import UsageError
from evolve.runtime.attempt import AttemptError
from evolve.runtime.readonly import freeze
from evolve.spec.model import Experience, StateField
from evolve.store.recorder import Recorder, StateChange

PREVIEW_CHARS = 200


def preview(value: Any, redact: Callable[[Any], Any] = lambda v: v) -> str:
    """At most PREVIEW_CHARS of `value` as text, redacted before it is cut (a cut secret could
    no longer be recognised, and its prefix would stay)."""
    if isinstance(value, list) and len(value) > PREVIEW_CHARS:
        value = value[:PREVIEW_CHARS]  # enough to fill the preview, without dumping it all
    value = redact(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def initial_values(experience: Experience, args: dict[str, Any]) -> dict[str, Any]:
    """Declared defaults (fresh copies) overlaid with the run's arguments, each checked."""
    values = {
        name: copy.deepcopy(f.default) for name, f in experience.state.items() if f.has_default
    }
    for name, value in args.items():
        field = experience.state.get(name)
        if field is None:
            from evolve.errors import did_you_mean

            raise UsageError(
                f"--args/--set names unknown state field '{name}'"
                f"{did_you_mean(name, experience.state)}"
            )
        problem = jsonvalue.problem(value, f"'{name}'") or _schema_problem(field, value)
        if problem:
            raise UsageError(f"--args/--set value for '{name}' is invalid: {problem}")
        values[name] = value
    return values


def _schema_problem(field: StateField, value: Any) -> str | None:
    from evolve.runtime.validation import first_error

    return first_error(field.schema, value)


class RunState:
    def __init__(self, experience: Experience, values: dict[str, Any], recorder: Recorder):
        self.experience = experience
        self.values = values
        self.recorder = recorder
        self.written_once: set[str] = set()
        self._views: dict[str, tuple[Any, Any]] = {}  # field -> (value, its read-only view)
        recorder.state_initialized(values)

    def read(self, fields: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """Read-only views of the named fields, so a tool cannot change state behind the
        writer's back; made once per value a field takes and shared by every reader."""
        return {f: self._view(f) for f in fields if f in self.values}

    def _view(self, field: str) -> Any:
        value = self.values[field]
        seen = self._views.get(field)
        if seen is None or seen[0] is not value:  # the field was written since: freeze anew
            seen = self._views[field] = (value, freeze(value))
        return seen[1]

    def check_delta(self, writes: tuple[str, ...], delta: Any, who: str) -> None:
        """Refuse a delta with undeclared fields or values that break a field's schema."""
        if not isinstance(delta, dict):
            raise AttemptError(f"{who} returned a state_delta that is not an object", "bad_output")
        for field, value in delta.items():
            if field not in writes:
                raise AttemptError(
                    f"{who} wrote '{field}', which is not in its writes "
                    f"({', '.join(writes) or 'none'})",
                    "undeclared_write",
                )
            spec = self.experience.state[field]
            candidate = value
            if spec.merge == "array_append":
                candidate = value if isinstance(value, list) else [value]
            problem = _schema_problem(spec, candidate)
            if problem:
                raise AttemptError(
                    f"{who} wrote an invalid '{field}': {problem}", "schema_violation"
                )

    def apply(
        self,
        deltas: list[tuple[dict[str, Any], int | None]],
        node_id: str,
        origins: list[str | None] | None = None,
    ) -> None:
        """Merge checked deltas into state in the given (item) order, then record the merge.

        A fan-out's deltas are one merge: each field it touched gets one history row and one
        `state.write` event (with the item, when a single item wrote it), not one per item, so
        a 5,000-item fan-out into an array_append field stays linear in time and storage.
        `origins` (parallel to `deltas`) names, for a reused result, the run that made it; the
        write then names those runs in `reused_from`.
        """
        staged = dict(self.values)
        once = set(self.written_once)
        touched: dict[str, StateChange] = {}
        for index, (delta, item) in enumerate(deltas):
            origin = origins[index] if origins else None
            for field, value in delta.items():
                spec = self.experience.state[field]
                change = touched.get(field)
                if change is None:
                    change = touched[field] = StateChange(
                        field, staged.get(field), None, node_id, item, writes=0
                    )
                    if spec.merge == "array_append":  # a private copy, appended to in place
                        old = staged.get(field)
                        staged[field] = list(old) if isinstance(old, list) else []
                if origin and origin not in change.reused_from:
                    change.reused_from.append(origin)
                change.writes += 1
                if change.writes > 1:
                    change.item = None  # several items wrote it: the merge is the write
                staged[field] = self._merge(spec, field, staged.get(field), value, once, node_id)
        for field, change in touched.items():
            problem = _schema_problem(self.experience.state[field], staged[field])
            if problem:
                raise AttemptError(
                    f"node '{node_id}' made '{field}' invalid: {problem}", "schema_violation"
                )
            change.new = staged[field]
        if not touched:
            return
        changes = list(touched.values())
        redact = self.recorder.log.redactor.value
        self.recorder.state_changed(changes, [preview(c.new, redact) for c in changes])
        self.values = staged
        self.written_once = once

    @staticmethod
    def _merge(
        spec: StateField, field: str, current: Any, value: Any, once: set[str], node_id: str
    ) -> Any:
        if spec.merge == "array_append":
            current.extend(value if isinstance(value, list) else [value])
            return current
        if spec.merge == "set_once":
            if field in once:
                raise AttemptError(
                    f"node '{node_id}' wrote '{field}' again, but it is set_once",
                    "set_once_violation",
                )
            once.add(field)
        return copy.deepcopy(value)
