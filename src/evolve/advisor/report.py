"""The proposal report: `.evolve/evolution/<run-id>.md` and its `.json` twin.

The markdown keeps `oe`'s shape: a title naming the run, one line saying nothing is applied
automatically and how to apply, then `## N. Title _(operation, confidence: level)_`, the rationale
with its evidence, and a ```diff block per proposal; an appendix lists what was not proposed.
Text a model or a tool wrote is rendered so it cannot open a fence, a heading or an HTML block
(`inline_text`, `block_text`), and each diff's fence is longer than any backtick run inside it,
so the real diff is the only fenced block of a proposal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.advisor.ledger import Earlier
from evolve.advisor.proposal import Proposal, Rejected
from evolve.redaction import Redactor
from evolve.store.log import utc_now

_ESCAPE = re.compile(r"[\\`<]")  # shown literally in markdown: no code span, no HTML
_BLOCK_STARTS = set("#~>-+*=_|")  # a line starting with one may open a block
_NUMBERED = re.compile(r"^(\d{1,9})[.)]")


@dataclass
class Report:
    experience: str
    experience_dir: Path
    run_ids: list[str]
    apply_root: Path
    llm: str | None  # the model used, or None for detectors only
    llm_note: str  # why there was no LLM, or how it went
    proposals: list[Proposal]
    rejected: list[Rejected] = field(default_factory=list)
    repeated: list[Earlier] = field(default_factory=list)  # ideas not proposed again
    runs: list[dict[str, Any]] = field(default_factory=list)
    created: str = field(default_factory=utc_now)
    path: Path | None = None
    llm_failure: str | None = None  # the model advisor gave nothing usable: why
    llm_fix: str | None = None  # and what to do about it
    left_out: list[str] = field(default_factory=list)  # cut from the request to fit the window
    llm_calls: list[dict[str, Any]] = field(default_factory=list)  # the advisor's model calls
    cassette: Path | None = None  # where --record wrote the calls
    verified: dict[str, Any] | None = None  # --verify: re-runs made, their time and cost

    def redact(self, redactor: Redactor) -> None:
        """Replace secrets in everything the report shows: a model may quote one back.

        A diff is never redacted (it would no longer apply): the checker sets aside any proposal
        whose diff holds a secret.
        """
        for p in self.proposals:
            p.redact(redactor)
        self.rejected = [
            Rejected(redactor.text(r.title), redactor.text(r.reason), redactor.value(r.raw))
            for r in self.rejected
        ]
        self.llm_note = redactor.text(self.llm_note)
        self.runs = redactor.value(self.runs)
        self.llm_failure = redactor.text(self.llm_failure) if self.llm_failure else None
        self.left_out = redactor.value(self.left_out)
        self.llm_calls = redactor.value(self.llm_calls)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "experience": self.experience,
            "experience_dir": str(self.experience_dir),
            "runs": self.run_ids,
            "created": self.created,
            "apply_root": str(self.apply_root),
            "llm": self.llm,
            "llm_note": self.llm_note,
            "llm_failure": {"reason": self.llm_failure, "fix": self.llm_fix}
            if self.llm_failure
            else None,
            "left_out": self.left_out,
            "llm_calls": self.llm_calls,
            **({"cassette": str(self.cassette)} if self.cassette else {}),
            "verified": self.verified,
            "proposals": [{"n": i, **p.to_json()} for i, p in enumerate(self.proposals, 1)],
            "rejected": [r.to_json() for r in self.rejected],
            "not_proposed_again": [e.to_json() for e in self.repeated],
        }

    def markdown(self) -> str:
        first = self.run_ids[0]
        runs = ", ".join(f"`{r}`" for r in self.run_ids)
        lines = [
            f"# Proposals for `{self.experience}` from run{'s' * (len(self.run_ids) > 1)} {runs}",
            "",
            f"Nothing here is applied automatically: review each diff, and apply the ones you "
            f"accept from `{self.apply_root}` with `evolve diff {first} N | git apply`.",
            "",
        ]
        for r in self.runs:
            lines.append(
                f"- run `{r['run']}`: {r['status']}, {r['events']} events"
                + (f", {r['duration_ms'] / 1000:.2f} s" if r.get("duration_ms") is not None else "")
                + (f" ({inline_text(r['reason'])})" if r.get("reason") else "")
            )
        lines += ["", f"_{inline_text(self.llm_note)}_", ""]
        if self.llm_failure:
            lines += [f"**The model advisor failed:** {inline_text(self.llm_failure)}", ""]
            lines += [f"To fix: {inline_text(self.llm_fix)}.", ""] if self.llm_fix else []
        if self.left_out:
            lines += [
                "To fit the model's context window, the advisor's request left out: "
                + "; ".join(self.left_out)
                + ".",
                "",
            ]
        if self.llm_calls:
            lines += [_calls_line(self.llm_calls), ""]
        if self.verified is not None:
            v = self.verified
            cost = f", model cost ${v['cost_usd']:.4f}" if v.get("cost_usd") else ""
            lines += [
                f"Each candidate was applied to a scratch copy and re-run ({v['reruns']} "
                f"re-run{'s' * (v['reruns'] != 1)}{cost}); tools ran again, and model calls "
                "whose request was unchanged were answered from the original runs' records.",
                "",
            ]
        if not self.proposals:
            lines += [
                "No proposal: the model advisor failed (see above)."
                if self.llm_failure
                else "No proposal: the evidence shows nothing to change.",
                "",
            ]
        for i, p in enumerate(self.proposals, 1):
            lines += [
                f"## {i}. {inline_text(p.title)} _({p.operation}, confidence: {p.confidence})_",
                "",
                block_text(p.rationale),
                "",
            ]
            if p.verification is not None:
                lines += [inline_text(p.verification.line()), ""]
            if p.evidence:
                lines += [
                    "Evidence: "
                    + ", ".join(_code(e) for e in p.evidence[:12])
                    + (f" and {len(p.evidence) - 12} more" if len(p.evidence) > 12 else ""),
                    "",
                ]
            fence = _fence(p.diff)
            lines += [f"{fence}diff", p.diff.rstrip("\n"), fence, ""]
        if self.rejected or self.repeated:
            lines += ["## Appendix: not proposed", ""]
            for r in self.rejected:
                lines.append(f"- {inline_text(r.title)}: {inline_text(r.reason)}")
                sent = r.quote()
                if sent:
                    lines.append(f"  - the model sent: {_code(sent)}")
            for e in self.repeated:
                state = (
                    "already applied"
                    if e.applied
                    else "proposed before, and the experience ran again without it"
                )
                lines.append(f"- {inline_text(e.title)}: {state} ({e.file})")
            lines.append("")
        return "\n".join(lines)

    def write(self, folder: Path) -> Path:
        """Write the .md and .json; a new numbered file rather than overwriting an earlier one."""
        folder.mkdir(parents=True, exist_ok=True)
        stem, n = self.run_ids[0], 1
        while (folder / f"{stem}.md").exists() or (folder / f"{stem}.json").exists():
            n += 1
            stem = f"{self.run_ids[0]}-{n}"
        self.path = folder / f"{stem}.md"
        self.path.write_text(self.markdown(), "utf-8")
        (folder / f"{stem}.json").write_text(
            json.dumps(self.to_json(), indent=2, ensure_ascii=False), "utf-8"
        )
        return self.path


def inline_text(text: str) -> str:
    """Text from a model or a tool, as inline markdown that shows it literally: one line (so it
    cannot start a block), with backslashes, backticks and `<` escaped (no code span, no HTML)."""
    text = " ".join(str(text).split())
    return _ESCAPE.sub(r"\\\g<0>", text)


def block_text(text: str) -> str:
    """Multi-line text from a model as markdown paragraphs that cannot open a code fence, a
    heading, a quote, a list, an HTML block or an indented code block: each line loses its
    indentation, and a character that would start a block is escaped."""
    lines = []
    for line in str(text).splitlines():
        line = _ESCAPE.sub(r"\\\g<0>", line.strip())
        numbered = _NUMBERED.match(line)
        if numbered:
            line = f"{numbered[1]}\\{line[len(numbered[1]) :]}"
        elif line[:1] in _BLOCK_STARTS:
            line = "\\" + line
        lines.append(line)
    return "\n".join(lines)


def _code(text: str) -> str:
    """A one-line code span (backticks inside become quotes: a span cannot hold its fence)."""
    return "`" + " ".join(str(text).replace("`", "'").split()) + "`"


def _fence(diff: str) -> str:
    """A backtick fence longer than any run of backticks in `diff`, which it cannot close."""
    longest = max((len(run) for run in re.findall(r"`+", diff)), default=0)
    return "`" * max(3, longest + 1)


def _calls_line(calls: list[dict[str, Any]]) -> str:
    """One line per advisor call: turn, mode, tokens and time (the .json has the full text)."""
    parts = []
    for c in calls:
        what = f"call {c['n']} (turn {c['turn']}"
        what += f", {c['mode']}" if c.get("mode") else ""
        if c.get("error"):
            what += f"): failed, {c.get('error_type')}"
        else:
            what += f"): {c.get('tokens_in')} tokens in, {c.get('tokens_out')} out, "
            what += f"{(c.get('duration_ms') or 0) / 1000:.1f} s"
        parts.append(what)
    return "Advisor model calls (in full in the .json's `llm_calls`): " + "; ".join(parts) + "."


def latest_report(folder: Path, run_id: str) -> dict[str, Any] | None:
    """The newest proposal file for `run_id` (the numbered ones count up)."""
    candidates = (
        [
            p
            for p in folder.glob(f"{run_id}*.json")
            if p.stem == run_id or p.stem.rsplit("-", 1)[0] == run_id
        ]
        if folder.is_dir()
        else []
    )
    if not candidates:
        return None

    def number(p: Path) -> int:
        tail = p.stem[len(run_id) :].lstrip("-")
        return int(tail) if tail.isdigit() else 1

    return json.loads(max(candidates, key=number).read_text("utf-8"))


@dataclass(frozen=True)
class ProposalDiff:
    run_id: str
    apply_root: str  # where `git apply` takes the diff
    diff: str
    applies_together: bool  # False when several proposals touch the same lines


def proposal_diff(workspace: Any, ref: str, number: int | None) -> ProposalDiff:
    """The diff of proposal `number` (or of all) from the newest report of run `ref`."""
    from evolve.advisor.ledger import applies
    from evolve.errors import UsageError
    from evolve.store.queries import RunQueries, open_store

    store = open_store(workspace)
    try:
        resolved = RunQueries(store).resolve(ref)["id"]
    finally:
        store.close()
    report = latest_report(workspace.evolution_dir, resolved)
    if report is None:
        raise UsageError(
            f"no proposals for run {resolved} yet; make them with `evolve propose {resolved}`"
        )
    proposals = report["proposals"]
    if number is not None:
        if not 1 <= number <= len(proposals):
            raise UsageError(
                f"run {resolved} has proposals 1..{len(proposals)}, not {number}"
                if proposals
                else f"run {resolved} has no proposal"
            )
        proposals = [proposals[number - 1]]
    combined = "".join(p["diff"] for p in proposals)
    together = len(proposals) < 2 or applies(combined, Path(report["apply_root"]))
    return ProposalDiff(resolved, report["apply_root"], combined, together)
