"""Scoring a run: every eval of the experience, on the run's final state, each in [0, 1].

`score_run` runs the checks one by one and returns an `EvalResult` per eval; `RunScore` folds
them into the run's score (the weighted mean) and whether the run passes its evals: every
`required` eval passes (or, when no eval is marked required, every eval passes). An eval that
raises, returns something that is not a score, or whose judge cannot answer yields score 0,
failed, with the error as its reason: one broken check never stops the others, nor the run.

What a check may return: a bool (threshold 1 unless set), a number in [0, 1] (threshold 0.5
unless set), or a mapping `{score, passed?, reason?}`; an `impl` returns None when it does not
apply to the run (say, it needs a case and the run has none), and is then not scored. A judge
replies `{score, reason}`.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from evolve import events
from evolve.llm.model import ModelReply, ModelRequest
from evolve.spec.expressions import MISSING
from evolve.spec.model import Eval, Experience
from evolve.spec.templates import TemplateError, render
from evolve.store.recorder import Recorder

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["score", "reason"],
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string"},
    },
}
DEFAULT_THRESHOLD = 0.5
REASON_CHARS = 500

# how a judge reaches the model layer: (eval, request) -> reply, recorded like an agent call
JudgeCall = Callable[[Eval, ModelRequest], Awaitable[ModelReply]]


class EvalFailure(Exception):
    """A check that could not produce a score; its message is the eval's reason."""


@dataclass
class EvalResult:
    name: str
    kind: str
    score: float
    passed: bool
    reason: str | None = None
    required: bool = False
    weight: float = 1.0
    error: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunScore:
    results: list[EvalResult]

    @property
    def score(self) -> float | None:
        total = sum(r.weight for r in self.results)
        if not self.results or total <= 0:
            return None
        return sum(r.score * r.weight for r in self.results) / total

    @property
    def passed(self) -> bool | None:
        if not self.results:
            return None
        gate = [r for r in self.results if r.required] or self.results
        return all(r.passed for r in gate)

    @property
    def failing(self) -> list[EvalResult]:
        return [r for r in self.results if not r.passed]


def case_for(case: dict[str, Any] | None) -> Any:
    """The `$case` an expression sees: MISSING in a plain run, so `$case.x` compares false."""
    return MISSING if case is None else case


def applicable(experience: Experience, case: dict[str, Any] | None) -> list[Eval]:
    """The evals scored for this run: a plain run (no case) leaves out checks that read $case."""
    return [e for e in experience.evals if case is not None or not e.reads_case]


async def score_run(
    experience: Experience,
    state: dict[str, Any],
    case: dict[str, Any] | None,
    summary: dict[str, Any],
    judge_call: JudgeCall | None,
) -> RunScore:
    results = []
    for check in applicable(experience, case):
        try:
            value, reason = await _check(check, state, case, summary, judge_call)
            if value is None and check.kind == "impl":
                continue  # the check says it does not apply to this run: not scored
            results.append(_result(check, value, reason))
        except Exception as exc:  # any failure of one check is that check's result
            message = str(exc) if isinstance(exc, EvalFailure) else f"{type(exc).__name__}: {exc}"
            results.append(
                EvalResult(
                    check.name,
                    check.kind,
                    0.0,
                    False,
                    _clip(f"error: {message}"),
                    check.required,
                    check.weight,
                    True,
                )
            )
    return RunScore(results)


async def _check(
    check: Eval,
    state: dict[str, Any],
    case: dict[str, Any] | None,
    summary: dict[str, Any],
    judge_call: JudgeCall | None,
) -> tuple[Any, str | None]:
    if check.kind == "expr":
        assert check.expression is not None
        value = check.expression.evaluate(state, case=case_for(case))
        if value is MISSING:
            return False, "a value it reads is missing"
        return value, None
    if check.kind == "impl":
        from evolve.runtime.attempt import AttemptError
        from evolve.runtime.tools import python_function

        assert check.impl is not None
        try:
            func = python_function(check.impl, check.function)
        except AttemptError as exc:
            raise EvalFailure(str(exc)) from None
        value = func(state, case, summary)
        if inspect.isawaitable(value):
            value = await value
        return value, None
    return await _judge(check, state, case, judge_call)


async def _judge(
    check: Eval, state: dict[str, Any], case: dict[str, Any] | None, judge_call: JudgeCall | None
) -> tuple[Any, str | None]:
    from evolve.runtime.agent import parse_json_object
    from evolve.runtime.validation import errors as schema_errors

    assert check.judge is not None
    if judge_call is None:
        raise EvalFailure("no model client is configured for the judge")
    try:
        prompt = render(check.judge.prompt.read_text("utf-8"), {**state, "$case": case or {}})
    except TemplateError as exc:
        raise EvalFailure(str(exc)) from None
    prompt += (
        "\n\nAnswer with one JSON object that matches this JSON Schema, and nothing else:\n"
        + json.dumps(JUDGE_SCHEMA)
    )
    request = ModelRequest(
        node_id=f"eval:{check.name}",
        model=check.judge.model or "",  # the caller resolves the model
        messages=[{"role": "user", "content": prompt}],
        schema=JUDGE_SCHEMA,
        temperature=0,
    )
    reply = await judge_call(check, request)
    try:
        value = parse_json_object(reply.text)
    except ValueError as exc:
        raise EvalFailure(f"the judge's reply is not JSON ({exc})") from None
    problems = schema_errors(JUDGE_SCHEMA, value) if isinstance(value, dict) else ["not an object"]
    if problems:
        raise EvalFailure(f"the judge's reply does not match {{score, reason}}: {problems[0]}")
    return {"score": value["score"], "reason": value["reason"]}, None


def _result(check: Eval, value: Any, reason: str | None) -> EvalResult:
    explicit: bool | None = None
    if isinstance(value, dict):
        if "score" not in value:
            raise EvalFailure("a mapping result needs a 'score'")
        explicit = value.get("passed")
        if explicit is not None and not isinstance(explicit, bool):
            raise EvalFailure("'passed' must be true or false")
        reason = str(value["reason"]) if value.get("reason") is not None else reason
        value = value["score"]
    if isinstance(value, bool) or value is None:
        score, default = float(bool(value)), 1.0
    elif isinstance(value, int | float):
        score, default = float(value), DEFAULT_THRESHOLD
        if math.isnan(score) or not 0.0 <= score <= 1.0:
            raise EvalFailure(f"the score {value!r} is not in [0, 1]")
    elif isinstance(value, str | list):
        score, default = float(bool(value)), 1.0
    else:
        raise EvalFailure(f"a check returns a bool, a number or a mapping, not {type(value)}")
    threshold = check.threshold if check.threshold is not None else default
    passed = explicit if explicit is not None else score >= threshold
    return EvalResult(
        check.name,
        check.kind,
        score,
        passed,
        _clip(reason) if reason else None,
        check.required,
        check.weight,
    )


def _clip(text: str) -> str:
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def record_scores(recorder: Recorder, case_id: str | None, scored: RunScore) -> None:
    """The one writer of eval results: per eval an `eval.result` event and its row in the state
    store's `evals` table, from one record (see `store.recorder`)."""
    recorder.evals_scored(
        [
            events.EvalResult(
                eval=r.name,
                kind=r.kind,
                case_id=case_id,
                score=r.score,
                passed=r.passed,
                required=r.required,
                weight=r.weight,
                reason=r.reason,
                error=r.error or None,
            )
            for r in scored.results
        ]
    )
