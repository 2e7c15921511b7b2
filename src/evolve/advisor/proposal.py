"""A proposal: what to change, why, on what evidence, and the diff that does it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from evolve.redaction import Redactor

OPERATIONS = ("add-node", "tune-param", "add-dataset-case")
CONFIDENCE = ("high", "medium", "low")
MAX_PROPOSALS = 5


@dataclass
class Proposal:
    operation: str
    confidence: str
    title: str
    rationale: str
    evidence: list[str]  # event refs (run#seq) and state fields
    files: dict[str, str | None]  # path inside the experience -> new content (None: unchanged)
    source: str = "detector"  # detector | llm
    fingerprint: str = ""  # the same idea gets the same fingerprint across runs
    diff: str = ""
    strength: int = 0  # occurrences behind it, for ranking within a confidence level
    target: str = ""  # what it changes: "file:node:parameter" (dedupe key), "" when unknown
    search: list[Proposal] = field(default_factory=list)  # further values to try (--verify)
    search_label: str = ""  # the value this step of a search sets, as "tried" names it
    search_shows: tuple[str, ...] = ("timeouts",)  # the figures a step's outcome is told by
    verification: Any = None  # advisor.verify.Verification, once re-run

    def adopt(self, other: Proposal) -> None:
        """Take the change (and words) of `other`, a later step of this proposal's search."""
        self.title, self.rationale, self.files = other.title, other.rationale, other.files
        self.fingerprint, self.diff = other.fingerprint, other.diff
        self.search_label = other.search_label

    def redact(self, redactor: Redactor) -> None:
        """Secrets out of the words (a model may quote one); the diff is checked, not changed."""
        self.title, self.rationale = redactor.text(self.title), redactor.text(self.rationale)
        self.evidence = [redactor.text(e) for e in self.evidence]
        self.fingerprint = redactor.text(self.fingerprint)

    def rank(self) -> tuple[int, int]:
        return (CONFIDENCE.index(self.confidence), -self.strength)

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "confidence": self.confidence,
            "title": self.title,
            "rationale": self.rationale,
            "evidence": self.evidence,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "diff": self.diff,
            **({"verification": self.verification.to_json()} if self.verification else {}),
        }


@dataclass
class Rejected:
    """An LLM proposal that failed validation even after its repair round; `raw` is what the
    model sent for it."""

    title: str
    reason: str
    raw: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "reason": self.reason,
            **({"sent": self.raw} if self.raw else {}),
        }

    def quote(self, limit: int = 300) -> str:
        """What the model sent, as one short line of JSON ("" when nothing was sent)."""
        if not self.raw:
            return ""
        text = json.dumps(self.raw, ensure_ascii=False)
        return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} chars)"


def confidence_for(occurrences: int, runs: int) -> str:
    """More occurrences, across more runs, make a stronger case."""
    if runs >= 2 or occurrences >= 3:
        return "high"
    if occurrences >= 2:
        return "medium"
    return "low"
