"""LLM proposals: the model sees the evidence, the sources and the state diff, and answers with
structured JSON whose changes are *edits* (a file and an exact search/replace, or a new file's
content), never diff text. evolve turns the edits into files, builds the diff itself and checks
it like any other proposal. A proposal that fails gets one repair round with the reasons; after
that it goes to the report's appendix, quoting what the model sent. A proposal that cites no
evidence cannot be `high`.

The request is fitted to the model's context window when the client knows it (`advisor.fit`).
Every call is kept (request, reply, tokens, time, structured output mode) for the report. When
the model gives nothing usable, the result carries the `failure` and its `fix`: it never reads
as "nothing to change".
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.advisor.diffs import ProposalChecker
from evolve.advisor.evidence import Evidence
from evolve.advisor.fit import RequestTooLong, fit, messages_for
from evolve.advisor.proposal import CONFIDENCE, OPERATIONS, Proposal, Rejected
from evolve.llm.context import prompt_budget, reply_reserve
from evolve.llm.model import Model, ModelError, ModelRequest
from evolve.llm.replies import echo_problem, parse_json_object, repair_request, schema_echo
from evolve.redaction import Redactor
from evolve.spec import Experience

ADVISOR_NODE = "advisor"
ADVISOR_TIMEOUT_S = 600.0  # per advisor call; `propose --timeout` changes it
SOURCE_CHARS = 20_000
SKIP_DIRS = {"cassettes", "data", "__pycache__", ".evolve", ".git"}
SKIP_FILES = {"experience.schema.json"}  # evolve's own schema, written for editors

REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["proposals"],
    "properties": {
        "proposals": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["operation", "title", "rationale", "confidence", "evidence", "edits"],
                "properties": {
                    "operation": {"enum": list(OPERATIONS)},
                    "title": {"type": "string"},
                    "rationale": {"type": "string"},
                    "confidence": {"enum": list(CONFIDENCE)},
                    "evidence": {"type": "array", "items": {"type": "string"}},
                    "edits": {
                        "type": "array",
                        "minItems": 1,
                        "items": {  # an edit of an existing file, or a new file
                            "anyOf": [
                                {
                                    "type": "object",
                                    "required": ["file", "search", "replace"],
                                    "properties": {
                                        "file": {"type": "string"},
                                        "search": {"type": "string"},
                                        "replace": {"type": "string"},
                                    },
                                },
                                {
                                    "type": "object",
                                    "required": ["file", "content"],
                                    "properties": {
                                        "file": {"type": "string"},
                                        "content": {"type": "string"},
                                    },
                                },
                            ]
                        },
                    },
                },
            },
        }
    },
}

INSTRUCTIONS = """You improve an LLM workflow ("experience") from the evidence of its runs.
Propose at most 5 changes, each one of:
- add-node: a new node, with its edges, its prompt or tool file, and new state fields if needed;
- tune-param: change an existing literal (timeout_ms, on_error, attempts, concurrency, model,
  schema tightening, max_tokens, ...);
- add-dataset-case: add an item to a list the experience seeds (a tool's returned list, a data
  file's rows).
Never delete nodes, edges or state fields, never change a node's kind, never touch a node marked
frozen, never touch files outside the experience, never rewrite the body of an existing prompt.
Express every change as edits: {"file": path relative to the experience, "search": exact text
that occurs once in the current file, "replace": its replacement}, or {"file": new path,
"content": the whole new file}. Cite evidence: event refs such as "r-abc12345#42" and state
fields. `schema_repeated`: a retry will not help. `failing_evals`: checks a run failed, and why.
Answer with one JSON object {"proposals": [...]} and nothing else."""


def sources(experience: Experience) -> dict[str, str]:
    """The experience's text files (spec, prompts, tools), shortened where huge.

    Nothing is read through a link that leaves the experience directory: linked folders are not
    entered, and a linked file is read only when it resolves inside the experience.
    """
    root = experience.directory.resolve()
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):  # never follows a linked folder
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if here != root or d not in SKIP_DIRS)
        for name in sorted(files):
            path = here / name
            rel = path.relative_to(root).as_posix()
            if rel in SKIP_FILES or not path.resolve().is_relative_to(root):
                continue
            if not path.is_file() or path.stat().st_size > 200_000:
                continue
            try:
                text = path.read_text("utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            found[rel] = text[:SOURCE_CHARS]
    return dict(sorted(found.items()))


def apply_edits(checker: ProposalChecker, edits: list[dict[str, Any]]) -> dict[str, str]:
    """The files after `edits`; ValueError says which edit could not be made and why."""
    files: dict[str, str] = {}
    for edit in edits:
        rel = checker.confine(str(edit.get("file", "")))
        current = files.get(rel, checker.read(rel))
        if "content" in edit and edit.get("search") is None:
            if current is not None:
                raise ValueError(f"{rel} exists already; edit it with search/replace")
            files[rel] = str(edit["content"])
            continue
        search, replace = edit.get("search"), edit.get("replace")
        if current is None:
            raise ValueError(f"{rel} does not exist (give 'content' to create it)")
        if not isinstance(search, str) or not isinstance(replace, str) or not search:
            raise ValueError(f"the edit of {rel} needs both 'search' and 'replace'")
        count = current.count(search)
        if count != 1:
            where = "does not occur" if count == 0 else f"occurs {count} times"
            raise ValueError(f"the search text {where} in {rel}: {search[:60]!r}")
        files[rel] = current.replace(search, replace, 1)
    return files


@dataclass
class AdvisorResult:
    """What the advisor's model gave: proposals, what was set aside, and how the calls went.

    `failure` is set when the model gave nothing usable (the call failed, the request could not
    fit its window, or the reply was unusable even after the repair turn); `fix` says what to do.
    """

    proposals: list[Proposal] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    failure: str | None = None
    fix: str | None = None
    left_out: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)


# what to do about a failed advisor call, by error type
FIXES = {
    "auth": "set the provider's key in the environment (for a local server, any value: "
    "OPENAI_API_KEY=local)",
    "connection": "check that the model server is running and that --api-base points at it",
    "timeout": "the model did not answer within --timeout (600 s unless given); for a slow "
    "model raise it (evolve propose --timeout 1800), or use a faster model",
    "context_overflow": "give the model a larger context window (the server's context size, "
    "then --context-window), or propose from fewer runs",
    "rate_limit": "wait and try again",
    "server_error": "the model server failed; try again, or check its log",
    "bad_request": "the server refused the request; check the model name (--model) and the "
    "server's log",
    "cassette_miss": "record the advisor's calls first: evolve propose RUN --record FILE",
    "unusable": "the model's replies are in the .json report (llm_calls); try a larger model, "
    "or --no-llm for deterministic proposals only",
}


UNKNOWN_WINDOW = (
    "neither the server nor litellm says this model's context window, so the request could not "
    "be fitted to it: pass the server's context size with --context-window N (or set "
    "runtime.context_window), and the request is cut to fit"
)


class LLMAdvisor:
    def __init__(
        self,
        experience: Experience,
        checker: ProposalChecker,
        model: Model,
        model_name: str,
        timeout_s: float = ADVISOR_TIMEOUT_S,
    ):
        self.experience = experience
        self.checker = checker
        self.model = model
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.redactor = Redactor()
        self.calls: list[dict[str, Any]] = []
        self.window_known = False  # whether the request could be fitted to a known window

    def propose(self, evidence: Evidence, ledger: list[dict[str, Any]]) -> AdvisorResult:
        result = asyncio.run(self._propose(evidence, ledger))
        result.calls = self.calls
        return result

    async def _ask(self, request: ModelRequest) -> str:
        """One call, kept for the report (request, reply, tokens, time, mode) even if it fails."""
        began = time.monotonic()
        call: dict[str, Any] = {"n": len(self.calls) + 1, "turn": request.turn}
        self.calls.append(call)
        # everything a model receives passes here: sources, evidence, the repair round
        request = dataclasses.replace(request, messages=self.redactor.value(request.messages))
        try:
            reply = await self.model.complete(request)
        except ModelError as exc:
            call.update(
                error=str(exc),
                error_type=exc.error_type,
                duration_ms=round((time.monotonic() - began) * 1000),
                request={"messages": request.messages},
            )
            raise
        call.update(
            model=reply.model,
            mode=reply.mode,
            key=reply.key,
            tokens_in=reply.tokens_in,
            tokens_out=reply.tokens_out,
            cost_usd=reply.cost_usd,
            duration_ms=reply.latency_ms,
            replayed=reply.replayed,
            finish_reason=reply.finish_reason,
            request={"messages": request.messages},
            reply=reply.text,
        )
        if reply.refused_modes:
            call["refused_modes"] = list(reply.refused_modes)
        return reply.text

    def _fitted(
        self, payload: dict[str, Any], extra: list[dict[str, str]] | None = None
    ) -> tuple[dict[str, Any], list[str], int | None]:
        """The payload cut to the model's window (beside the `extra` messages that follow it,
        in a repair turn), what was cut, and the reply's token limit; unchanged (and no limit)
        when the client does not know the window."""
        window_of = getattr(self.model, "window", None)
        count = getattr(self.model, "count", None)
        window = window_of(self.model_name) if window_of and count else None
        self.window_known = window is not None
        if window is None:
            return payload, [], None
        budget = prompt_budget(window, None)
        try:
            fitted, left_out = fit(
                self.experience,
                INSTRUCTIONS,
                payload,
                lambda messages: count(self.model_name, [*messages, *(extra or [])]),
                budget,
            )
        except RequestTooLong as exc:
            what = "repair turn" if extra else "request"
            raise ModelError(
                f"the advisor's {what} is about {exc.tokens:,} tokens after cutting all it "
                f"can, and {self.model_name}'s context window is {window.tokens:,} (from "
                f"{window.source}), which leaves {exc.budget:,} for it; nothing was sent",
                "context_overflow",
            ) from None
        return fitted, left_out, reply_reserve(window.tokens, None)

    async def _propose(self, evidence: Evidence, ledger: list[dict[str, Any]]) -> AdvisorResult:
        whole = {
            "evidence": evidence.summary(),
            "sources": sources(self.experience),
            "earlier_proposals": ledger,
        }
        try:
            payload, left_out, max_tokens = await asyncio.to_thread(self._fitted, whole)
        except ModelError as exc:
            return _failed(exc)
        request = ModelRequest(
            node_id=ADVISOR_NODE,
            model=self.model_name,
            messages=messages_for(INSTRUCTIONS, payload),
            schema=REPLY_SCHEMA,
            max_tokens=max_tokens,  # the reply gets what the window keeps free for it
            timeout_s=self.timeout_s,
        )
        try:
            text = await self._ask(request)
        except ModelError as exc:
            if exc.error_type == "context_overflow" and not self.window_known:
                return _failed(exc, left_out, fix=UNKNOWN_WINDOW)
            return _failed(exc, left_out)
        accepted, failed, note = self._judge(text)
        if not failed and note is None:
            return AdvisorResult(accepted, [], left_out=left_out)
        reasons = [note] if note else [f"{r.title}: {r.reason}" for r in failed]
        repair = repair_request(
            request,
            text,
            "These proposals could not be used:",
            reasons,
            "Answer again with the corrected proposals only, as one JSON object "
            '{"proposals": [...]}.',
        )
        try:
            # the reply and the reasons go back too: cut the request again so all of it fits
            payload, cut, _ = await asyncio.to_thread(self._fitted, whole, repair.messages[-2:])
            repair = dataclasses.replace(
                repair, messages=[*messages_for(INSTRUCTIONS, payload), *repair.messages[-2:]]
            )
            left_out += [c for c in cut if c not in left_out]
            text = await self._ask(repair)
        except ModelError as exc:
            if note:  # nothing usable came back at all
                return _failed(exc, left_out, f"{note}; then the repair turn failed: ")
            count = f"{len(failed)} proposal{'s' * (len(failed) != 1)}"
            return AdvisorResult(
                accepted,
                failed,
                failure=None
                if accepted
                else f"none of the model's {count} could be used, and the repair turn "
                f"failed: {exc}",
                fix=None if accepted else FIXES.get(exc.error_type, FIXES["unusable"]),
                left_out=left_out,
            )
        fixed, still, note2 = self._judge(text)
        if note2:  # the repair reply was unusable: the first round's reasons stand
            if note:
                return AdvisorResult(
                    accepted,
                    [],
                    failure=f"the model's reply could not be used: {note}; nor could its "
                    f"repair: {note2}",
                    fix=FIXES["unusable"],
                    left_out=left_out,
                )
            still = [
                Rejected(r.title, f"{r.reason} (the repair reply was unusable: {note2})", r.raw)
                for r in failed
            ]
            return _settled(accepted + fixed, still, left_out)
        # what the repair round did not send again keeps its first-round reason
        answered = {p.title for p in fixed} | {r.title for r in still}
        dropped = [
            Rejected(r.title, f"{r.reason} (not sent again in the repair round)", r.raw)
            for r in failed
            if r.title not in answered
        ]
        return _settled(accepted + fixed, still + dropped, left_out)

    def _judge(self, text: str) -> tuple[list[Proposal], list[Rejected], str | None]:
        try:
            data = parse_json_object(text)
        except ValueError as exc:
            return [], [], f"the reply is not JSON ({exc})"
        if schema_echo(data, REPLY_SCHEMA):
            return [], [], echo_problem(REPLY_SCHEMA)
        if not isinstance(data, dict) or not isinstance(data.get("proposals"), list):
            return [], [], 'the reply must be a JSON object {"proposals": [...]}'
        accepted, rejected = [], []
        for raw in data["proposals"]:
            proposal, reason = self._one(raw)
            if proposal is not None:
                accepted.append(proposal)
            else:
                title = (
                    str(raw.get("title") or "(untitled)")
                    if isinstance(raw, dict)
                    else "(not an object)"
                )
                rejected.append(Rejected(title, reason, raw if isinstance(raw, dict) else {}))
        return accepted, rejected, None

    def _one(self, raw: Any) -> tuple[Proposal | None, str]:
        if not isinstance(raw, dict):
            return None, "a proposal must be a JSON object"
        operation = raw.get("operation")
        if operation not in OPERATIONS:
            return None, f"unknown operation {operation!r}"
        edits = raw.get("edits")
        if not isinstance(edits, list) or not edits:
            return None, "a proposal needs at least one edit"
        try:
            files = apply_edits(self.checker, edits)
        except ValueError as exc:
            return None, str(exc)
        diff = self.checker.diff(files)
        check = self.checker.check(files, diff)
        if not check.ok:
            return None, check.reason
        evidence = [str(e) for e in raw.get("evidence") or [] if str(e).strip()]
        confidence = raw.get("confidence") if raw.get("confidence") in CONFIDENCE else "low"
        if confidence == "high" and not evidence:
            confidence = "medium"  # a claim with no evidence cannot be high
        title = str(raw.get("title", "")).strip() or f"{operation} proposal"
        return Proposal(
            operation=operation,
            confidence=confidence,
            title=title,
            rationale=str(raw.get("rationale", "")).strip(),
            evidence=evidence,
            files=files,
            source="llm",
            diff=diff,
            fingerprint=f"{operation}:" + "|".join(sorted(files)) + ":" + title.lower(),
            strength=len(evidence),
        ), ""


def _failed(
    exc: ModelError, left_out: list[str] | None = None, prefix: str = "", fix: str | None = None
) -> AdvisorResult:
    return AdvisorResult(
        failure=prefix + str(exc),
        fix=fix or FIXES.get(exc.error_type, "see the message above"),
        left_out=left_out or [],
    )


def _settled(proposals: list[Proposal], rejected: list[Rejected], left_out: list[str]):
    """The end of a repair round: when the model sent proposals and none could be used, the
    advisor failed (each one is still in the appendix, with what the model sent)."""
    result = AdvisorResult(proposals, rejected, left_out=left_out)
    if rejected and not proposals:
        count = f"{len(rejected)} proposal{'s' * (len(rejected) != 1)}"
        result.failure = (
            f"none of the model's {count} could be used, even after a repair turn (see the "
            "appendix for why, with what the model sent)"
        )
        result.fix = FIXES["unusable"]
    return result
