"""`evolve propose`: evidence from runs, proposals from detectors and (optionally) a model,
every diff proven, at most five ranked, written as a report. Nothing is ever applied."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolve.advisor.detectors import Detectors
from evolve.advisor.diffs import ProposalChecker, apply_root
from evolve.advisor.evidence import gather
from evolve.advisor.ledger import earlier_proposals
from evolve.advisor.proposal import MAX_PROPOSALS, Proposal, Rejected
from evolve.advisor.report import Report
from evolve.advisor.verify import (
    MAX_CANDIDATES,
    Verification,
    Verifier,
    VerifyOptions,
    confidence_from,
)
from evolve.errors import UsageError
from evolve.redaction import Redactor
from evolve.spec import Experience, load_experience
from evolve.store.queries import RunQueries, open_store
from evolve.store.workspace import Workspace


def _select_runs(queries: RunQueries, refs: list[str], last: int | None) -> list[dict]:
    """The runs to learn from; a suite of `evolve eval` stands for its case runs."""
    rows = [queries.resolve(ref) for ref in refs or ["last"]]
    if last:
        newest = rows[0]
        rows = [
            r
            for r in queries.list(newest["experience"], last)
            if r["experience_dir"] == newest["experience_dir"]
        ]
    # a suite of `evolve eval` stands for its case runs: they are what ran
    rows = [
        c for r in rows for c in (queries.children(r["id"]) if r.get("kind") == "suite" else [r])
    ]
    unique = {r["id"]: r for r in rows}
    names = {r["experience_dir"] for r in unique.values()}
    if len(names) > 1:
        raise UsageError(
            "these runs belong to different experiences: "
            + ", ".join(sorted(names))
            + "; propose for one at a time"
        )
    return list(unique.values())


def propose(
    workspace: Workspace,
    refs: list[str],
    *,
    last: int | None = None,
    model: str | None = None,
    no_llm: bool = False,
    offline: bool = False,
    api_base: str | None = None,
    model_client=None,
    record: Path | None = None,
    replay: Path | None = None,
    context_window: int | None = None,
    timeout_s: float | None = None,
    verify: VerifyOptions | None = None,
    record_missing: bool = False,
) -> Report:
    """Proposals for the runs `refs`; with `verify`, each candidate re-run and ranked by its
    measured effect (see `advisor.verify`)."""
    store = open_store(workspace)
    try:
        queries = RunQueries(store)
        suites = [
            r["id"] for r in map(queries.resolve, refs or ["last"]) if r.get("kind") == "suite"
        ]
        rows = _select_runs(queries, refs, last)
        diffs = {r["id"]: queries.state_diff(r["id"]) for r in rows}
    finally:
        store.close()
    directory = Path(rows[0]["experience_dir"])
    if not directory.is_dir():
        raise UsageError(f"the experience of run {rows[0]['id']} is gone: {directory}")
    experience = load_experience(directory)
    evidence = gather(workspace, experience.name, rows, diffs)
    root = apply_root(experience.directory)
    checker = ProposalChecker(experience, root)
    newest = max(r["started_at"] or "" for r in rows)
    earlier = earlier_proposals(workspace, experience.directory, root, newest)

    proposals, rejected = [], []
    for proposal in Detectors(experience, evidence, verifying=verify is not None).run():
        proposal.diff = checker.diff(proposal.files)
        check = checker.check(proposal.files, proposal.diff)
        if check.ok:
            proposals.append(proposal)
        else:  # a detector bug, not the user's: say so rather than hide it
            rejected.append(Rejected(proposal.title, f"internal check failed: {check.reason}"))

    llm, note = None, "Deterministic proposals only (--no-llm)."
    advised = None
    # the same order as for agent nodes: --model > runtime.model > EVOLVE_MODEL
    model_name = model or experience.runtime.model or os.environ.get("EVOLVE_MODEL")
    if not no_llm:
        source = _Source(offline, record, replay, api_base, context_window, record_missing)
        model_client, note = _advisor_model(experience, model_name, model_client, source)
    if model_client is not None and not no_llm:
        from evolve.advisor.llm_advisor import LLMAdvisor

        llm = model_name or "replay"
        advisor = LLMAdvisor(experience, checker, model_client, llm)
        if timeout_s:
            advisor.timeout_s = timeout_s
        advised = advisor.propose(evidence, [e.to_json() for e in earlier])
        proposals += advised.proposals
        rejected += advised.rejected

    redactor = Redactor()
    for proposal in proposals:  # before fingerprints meet the (redacted) earlier ones
        proposal.redact(redactor)

    seen = {e.fingerprint for e in earlier if e.status != "pending"}
    made = {p.fingerprint for p in proposals}
    repeated = [e for e in earlier if e.fingerprint in made and e.status != "pending"]
    fresh = [p for p in proposals if p.fingerprint not in seen]
    for p in proposals:
        if p.fingerprint in seen:
            rejected.append(Rejected(p.title, "proposed before and already applied or rejected"))
    ranked, dropped = _dedupe(sorted(fresh, key=Proposal.rank), checker)
    rejected += dropped
    verifier = None
    if verify is not None:
        if verify.fallback is None and not verify.offline and model_name:
            from evolve.llm import build_model

            verify.fallback = build_model(
                experience.directory, api_base=api_base, record_missing=record_missing
            )
        ranked, verifier = _verified(ranked, rejected, experience, workspace, rows, verify)
        ranked = _checked(ranked, rejected, checker)
    for extra in ranked[MAX_PROPOSALS:]:
        rejected.append(
            Rejected(extra.title, f"cut: only the {MAX_PROPOSALS} strongest proposals are kept")
        )
    report = Report(
        experience=experience.name,
        experience_dir=experience.directory,
        run_ids=[*suites, *(r["id"] for r in rows)],  # a suite first: `evolve diff SUITE N`
        apply_root=root,
        llm=llm,
        llm_note=note,
        proposals=ranked[:MAX_PROPOSALS],
        rejected=rejected,
        repeated=_unique(repeated),
        runs=[
            {
                "run": r.run_id,
                "status": r.status,
                "reason": r.reason,
                "duration_ms": r.duration_ms,
                "events": r.events,
            }
            for r in evidence.runs
        ],
        llm_failure=advised.failure if advised else None,
        llm_fix=advised.fix if advised else None,
        left_out=advised.left_out if advised else [],
        llm_calls=advised.calls if advised else [],
        cassette=record,
        verified=_verify_summary(verifier) if verifier else None,
    )
    report.redact(redactor)  # before it is written or printed
    report.write(workspace.evolution_dir)
    return report


@dataclass(frozen=True)
class _Source:
    """Where the advisor's replies come from: the options of `propose`."""

    offline: bool
    record: Path | None
    replay: Path | None
    api_base: str | None
    context_window: int | None
    record_missing: bool = False


def _advisor_model(experience, model_name, client, source: _Source):
    """The advisor's model client (or None) and the line the report says about it."""
    from evolve.advisor.llm_advisor import ADVISOR_NODE

    if client is not None:
        return client, f"Deterministic proposals, and LLM proposals from {model_name or 'a model'}."
    if sum(bool(x) for x in (source.offline, source.record, source.replay)) > 1:
        raise UsageError("use only one of --record, --replay and --offline")
    if source.record_missing and model_name:
        from evolve.llm import build_model

        client = build_model(
            experience.directory,
            api_base=source.api_base,
            replay=source.replay,
            in_order=True,
            record_missing=True,
        )
        return client, (
            f"Deterministic proposals, and LLM proposals from the cassettes, or {model_name} "
            "for calls they miss (recorded)."
        )
    if source.offline or source.replay:
        from evolve.llm import build_model

        client = build_model(
            experience.directory, offline=source.offline, replay=source.replay, in_order=True
        )
        if not client.cassette.knows(ADVISOR_NODE):
            where = f"{source.replay} holds" if source.replay else "the experience's cassettes hold"
            return None, (
                f"Deterministic proposals only: {where} no "
                f'reply for the advisor (a line with "node": "{ADVISOR_NODE}").'
            )
        whence = source.replay or "the experience's cassettes"
        return client, f"Deterministic proposals, and LLM proposals replayed from {whence}."
    if not model_name:
        return None, (
            "Deterministic proposals only: no model is configured (pass --model or "
            "set EVOLVE_MODEL for LLM proposals)."
        )
    from evolve.llm import build_model

    client = build_model(
        experience.directory,
        api_base=source.api_base,
        record=source.record,
        context_window=source.context_window or experience.runtime.context_window,
        window_source="--context-window" if source.context_window else "runtime.context_window",
    )
    return client, f"Deterministic proposals, and LLM proposals from {model_name}."


def _dedupe(
    proposals: list[Proposal], checker: ProposalChecker
) -> tuple[list[Proposal], list[Rejected]]:
    """One proposal per thing changed (file, node, parameter), the stronger one, across
    detectors and model; each one dropped is returned with why."""
    kept: list[Proposal] = []
    dropped: list[Rejected] = []
    owner: dict[str, Proposal] = {}
    for p in proposals:
        targets = change_targets(checker, p)
        clash = next((t for t in sorted(targets) if t in owner), None)
        if clash is not None:
            dropped.append(
                Rejected(
                    p.title,
                    f"a duplicate: it changes {clash.replace(':', ' ', 2)}, as the stronger "
                    f"proposal '{owner[clash].title}' does",
                )
            )
            continue
        for t in targets:
            owner[t] = p
        kept.append(p)
    return kept, dropped


def change_targets(checker: ProposalChecker, proposal: Proposal) -> set[str]:
    """What a proposal changes: `file` for most files; for experience.yaml, each node parameter
    (`experience.yaml:node:param`), new node, or top-level section it changes. Both versions of
    experience.yaml come parsed from `checker` (which parsed them when it checked the diff)."""
    found: set[str] = set()
    experience = checker.experience
    for rel, content in proposal.files.items():
        if rel != "experience.yaml" or content is None:
            found.add(rel)
            continue
        before = checker.data_of(experience)
        after = checker.spec_data(content)
        if before is None or after is None:
            found.add(rel)
            continue
        found |= _spec_targets(before, after)
    if proposal.target:
        found.add(proposal.target)
    return found or {proposal.fingerprint}


def _spec_targets(before: Any, after: Any) -> set[str]:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return {"experience.yaml"}
    found: set[str] = set()
    old = _nodes(before)
    for node_id, node in _nodes(after).items():
        was = old.get(node_id)
        if was is None:
            found.add(f"experience.yaml:{node_id}:(new node)")
            continue
        for key in sorted(set(node) | set(was)):
            if node.get(key) != was.get(key):
                found.add(f"experience.yaml:{node_id}:{key}")
    for key in sorted(set(before) | set(after)):
        if key == "graph":
            for part in ("edges", "phases"):
                if (before.get("graph") or {}).get(part) != (after.get("graph") or {}).get(part):
                    found.add(f"experience.yaml:graph.{part}")
        elif before.get(key) != after.get(key):
            if isinstance(before.get(key), dict) and isinstance(after.get(key), dict):
                for sub in sorted(set(before[key]) | set(after[key])):
                    if before[key].get(sub) != after[key].get(sub):
                        found.add(f"experience.yaml:{key}.{sub}")
            else:
                found.add(f"experience.yaml:{key}")
    return found


def _nodes(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    graph = data.get("graph") if isinstance(data.get("graph"), dict) else {}
    return {
        str(n.get("id")): n
        for n in graph.get("nodes") or []
        if isinstance(n, dict) and n.get("id") is not None
    }


ORDER = {"better": 0, "same": 1, "unverified": 2}


def _verified(
    ranked: list[Proposal],
    rejected: list[Rejected],
    experience: Experience,
    workspace: Workspace,
    rows: list[dict[str, Any]],
    options: VerifyOptions,
) -> tuple[list[Proposal], Verifier]:
    """Re-run the strongest candidates; rank by measured effect; the worse go to the appendix."""
    candidates = ranked[:MAX_CANDIDATES]
    for extra in ranked[MAX_CANDIDATES:]:
        rejected.append(
            Rejected(
                extra.title, f"cut: only the {MAX_CANDIDATES} strongest candidates are verified"
            )
        )
    verifier = Verifier(experience.directory, workspace, rows, options)
    results = verifier.verify(candidates, lambda p: p.files)
    kept = []
    for i, proposal in enumerate(candidates):
        found = results[i]
        proposal.verification = found
        if found.verdict == "worse":
            rejected.append(
                Rejected(proposal.title, "made the run worse when re-run: " + _numbers(found))
            )
            continue
        if found.verdict != "unverified":
            proposal.confidence = confidence_from(found)
        elif proposal.confidence != "low":
            proposal.confidence = "low"  # a claim nobody could check
        kept.append(proposal)
    kept.sort(key=lambda p: (ORDER[p.verification.verdict], -p.verification.effect, p.rank()))
    return kept, verifier


def _checked(
    proposals: list[Proposal], rejected: list[Rejected], checker: ProposalChecker
) -> list[Proposal]:
    """A proposal that took a later value of its search gets that value's diff, checked as
    every diff is (the steps are checked only when one is taken)."""
    kept = []
    for proposal in proposals:
        if not proposal.diff:
            proposal.diff = checker.diff(proposal.files)
            check = checker.check(proposal.files, proposal.diff)
            if not check.ok:
                rejected.append(Rejected(proposal.title, f"internal check failed: {check.reason}"))
                continue
        kept.append(proposal)
    return kept


def _numbers(found: Verification) -> str:
    return found.line().removeprefix("Verified by re-running: ")


def _verify_summary(verifier: Verifier) -> dict[str, Any]:
    return {
        "reruns": verifier.reruns,
        "rerun_seconds": round(verifier.seconds, 3),
        "wall_seconds": round(verifier.wall_seconds, 3),
        "cost_usd": verifier.cost_usd,
    }


def _unique(items: list) -> list:
    out, seen = [], set()
    for item in items:
        if item.fingerprint not in seen:
            seen.add(item.fingerprint)
            out.append(item)
    return out
