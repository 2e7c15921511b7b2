"""`evolve resume RUN` and `evolve run DIR --from RUN`: which earlier run is reused, and how.

Both start a new run linked to the earlier one (`resumed_from`), which reuses the earlier run's
kept results wherever they still match (see `runtime.reuse`). `resume` takes everything from the
earlier run (its experience directory, arguments and model options; flags given override them)
and refuses what cannot be resumed with a one-line error: an unknown run, a run that succeeded,
a run still going, a nested run (resume its parent), an experience that is gone or renamed.
`plan` says, before anything runs, which nodes run again and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from evolve.errors import EvolveError, UsageError, did_you_mean
from evolve.runtime.fingerprint import NodePrint
from evolve.spec import Experience, load_experience
from evolve.store.queries import RunQueries, node_outcomes

RESUMABLE = ("failed", "partial", "interrupted")
SAID = {"failed": "it failed", "skipped": "it was skipped", "interrupted": "it was interrupted"}


class NotResumable(EvolveError):
    """A run that `resume` cannot continue; the message says why and what to do instead."""


def resumable(queries: RunQueries, ref: str) -> dict[str, Any]:
    """The run `ref` names, if it can be resumed."""
    row = queries.resolve(ref)
    run_id = row["id"]
    if row["parent_run_id"]:
        raise NotResumable(
            f"run {run_id} is a nested run of {row['parent_run_id']} (node "
            f"'{row['parent_node']}'); resume {row['parent_run_id']} instead"
        )
    if row["status"] == "success":
        raise NotResumable(
            f"run {run_id} succeeded: there is nothing to resume; to run nodes of it again, "
            f"use `evolve run DIR --from {run_id} --rerun NODE`"
        )
    if row["status"] not in RESUMABLE:
        raise NotResumable(f"run {run_id} is still {row['status']}; wait for it to end")
    spec = Path(row["experience_dir"] or "") / "experience.yaml"
    if not spec.is_file():
        raise NotResumable(
            f"cannot resume run {run_id}: its experience '{row['experience']}' is gone "
            f"({spec} does not exist)"
        )
    return row


def check_source(queries: RunQueries, ref: str, experience: Experience) -> dict[str, Any]:
    """The run `--from` names, if it ran this experience."""
    row = queries.resolve(ref)
    if row["experience"] != experience.name:
        raise UsageError(
            f"--from {ref}: run {row['id']} ran experience '{row['experience']}', "
            f"not '{experience.name}'"
        )
    if row["status"] == "running":
        raise UsageError(f"--from {ref}: run {row['id']} is still running")
    if row.get("kind") == "suite":
        raise UsageError(
            f"--from {ref}: {row['id']} is a suite; give one of its case runs "
            f"(`evolve inspect {row['id']}` lists them), or `evolve resume` the suite"
        )
    return row


def check_reruns(experience: Experience, names: tuple[str, ...]) -> None:
    known = [*experience.nodes, *experience.pipelines, *experience.loops]
    for name in names:
        if name not in known:
            raise UsageError(
                f"--rerun names no node of experience '{experience.name}': "
                f"'{name}'{did_you_mean(name, known)}"
            )


def resume_options(row: dict[str, Any]) -> dict[str, Any]:
    """The arguments and model options the earlier run ran with."""
    kept = json.loads(row["options"]) if row.get("options") else {}
    return {"args": json.loads(row["args"] or "{}"), **kept}


def load_for_resume(row: dict[str, Any]) -> Experience:
    experience = load_experience(row["experience_dir"])
    if experience.name != row["experience"]:
        raise NotResumable(
            f"cannot resume run {row['id']}: {row['experience_dir']} now holds experience "
            f"'{experience.name}', not '{row['experience']}'"
        )
    return experience


@dataclass(frozen=True)
class Verdict:
    node: str
    runs: bool
    why: str


def plan(
    experience: Experience,
    queries: RunQueries,
    source: dict[str, Any],
    prints: dict[str, NodePrint],
    rerun: tuple[str, ...],
) -> list[Verdict]:
    """Per step, in graph order: does it run again, and why (before anything runs). A step
    said to be reused is reused only where its inputs turn out unchanged too."""
    before = queries.node_prints(source["id"])
    kept = _finished(source)
    order = TopologicalSorter(
        {s: [e.source for e in experience.predecessors(s)] for s in experience.steps}
    ).static_order()
    verdicts: dict[str, Verdict] = {}
    for step in order:
        verdicts[step] = _verdict(
            experience, step, source["id"], before, kept, prints, rerun, verdicts
        )
    return list(verdicts.values())


def _finished(source: dict[str, Any]) -> dict[str, str | None]:
    """Per node of the earlier run: None if it succeeded whole, else what it lacks."""
    found: dict[str, str | None] = {}
    for node in node_outcomes(source):
        if node.status == "succeeded" and not node.items_failed:
            found[node.id] = None
        elif node.status == "succeeded":
            found[node.id] = f"{node.items_failed} of its items failed"
        elif node.items:
            found[node.id] = f"{node.items_succeeded} of its items succeeded, the rest run"
        else:
            found[node.id] = SAID.get(node.status, "it never ran")
    return found


def _members(experience: Experience, step: str) -> tuple[str, ...]:
    if step in experience.pipelines:
        return experience.pipelines[step].stages
    if step in experience.loops:
        return (experience.loops[step].body,)
    return (step,)


def _verdict(
    experience: Experience,
    step: str,
    source: str,
    before: dict[str, dict[str, Any]],
    kept: dict[str, str | None],
    prints: dict[str, NodePrint],
    rerun: tuple[str, ...],
    earlier: dict[str, Verdict],
) -> Verdict:
    members = _members(experience, step)
    named = sorted({m for m in (step, *members) if m in rerun})
    if named:
        return Verdict(step, True, f"named by --rerun ({', '.join(named)})")
    upstream = [e.source for e in experience.predecessors(step) if earlier[e.source].runs]
    if upstream:
        return Verdict(step, True, f"downstream of {', '.join(upstream)}, which runs again")
    for member in members:
        lacking = kept.get(member, "it never ran")
        if lacking is not None:
            return Verdict(step, True, f"{member} in {source}: {lacking}")
        old = before.get(member)
        if old is not None:
            changes = prints[member].changes(
                NodePrint(member, old["digest"], old["definition"], old["files"], old["model"])
            )
            if changes:
                return Verdict(step, True, f"{member}: {'; '.join(changes)}")
    return Verdict(step, False, f"reused from {source} where its inputs are unchanged")
