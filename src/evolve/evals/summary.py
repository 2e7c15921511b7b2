"""Figures of a suite that both the suite runner and the readers of a stored suite compute:
the spread across repeats and the totals line. Light on purpose: `inspect` imports it."""

from __future__ import annotations

from typing import Any


def spread_of(scores: list[tuple[str, float | None]]) -> float | None:
    """The noise across repeats: the mean, over cases run more than once, of the range (highest
    minus lowest) of a case's scores; None when no case was repeated."""
    by_case: dict[str, list[float]] = {}
    for case_id, score in scores:
        by_case.setdefault(case_id, []).append(score or 0.0)
    ranges = [max(s) - min(s) for s in by_case.values() if len(s) > 1]
    return sum(ranges) / len(ranges) if ranges else None


def suite_totals(summary: dict[str, Any]) -> str:
    """`mean score 0.83 · pass rate 4/5 (80%) · spread across repeats 0.10`."""
    cases = summary["cases"]
    passed = sum(1 for c in cases if c["passed"])
    score = summary.get("score")
    text = f"mean score {'—' if score is None else f'{score:.2f}'}"
    text += f" · pass rate {passed}/{len(cases)}"
    if cases:
        text += f" ({passed / len(cases):.0%})"
    if summary.get("spread") is not None:
        text += f" · spread across repeats {summary['spread']:.2f}"
    return text
