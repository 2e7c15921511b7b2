"""Fitting the advisor's request to its model's context window, by priority.

The request holds the evidence, the experience's sources and the earlier proposals. When its
counted tokens exceed what the window leaves beside the reply, parts are cut in this order until
it fits, each cut named in the request (so the model knows) and in the report (so the user does):

1. files no node or eval uses (a README, notes), left out;
2. the evidence of nodes that never failed, summarised to attempts and timing;
3. long values in the runs' state diff, cut to their first characters;
4. tool sources, cut to their first lines;
5. earlier proposals, reduced to their titles and statuses;
6. prompts, cut to their first characters;
7. state diff values, cut to a short preview;
8. the nodes that never failed, reduced to their names.

The spec (`experience.yaml`), the failures, the schema errors and the eval files are never cut
(an eval's code is cut like a tool's only at step 4). When
even the smallest request cannot fit, `RequestTooLong` says by how much.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from evolve.spec import Experience

STATE_VALUE_CHARS = 300
STATE_PREVIEW_CHARS = 60
TOOL_CHARS = 1_500
PROMPT_CHARS = 2_000

Count = Callable[[list[dict[str, str]]], int]


class RequestTooLong(Exception):
    def __init__(self, tokens: int, budget: int, left_out: list[str]):
        super().__init__(f"{tokens:,} tokens even after cutting, for a budget of {budget:,}")
        self.tokens, self.budget, self.left_out = tokens, budget, left_out


def messages_for(instructions: str, payload: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": instructions},
        {"role": "user", "content": json.dumps(payload, ensure_ascii=False)},
    ]


def fit(
    experience: Experience,
    instructions: str,
    payload: dict[str, Any],
    count: Count,
    budget: int,
) -> tuple[dict[str, Any], list[str]]:
    """`payload` cut down until its messages count at most `budget` tokens; and what was cut."""
    current = copy.deepcopy(payload)
    left_out: list[str] = []
    tokens = count(messages_for(instructions, current))
    for step in _STEPS:
        if tokens <= budget:
            break
        note = step(experience, current)
        if note:
            left_out.append(note)
            current["left_out"] = (
                "To fit the model's context window, this request leaves out: " + "; ".join(left_out)
            )
            tokens = count(messages_for(instructions, current))
    if tokens > budget:
        raise RequestTooLong(tokens, budget, left_out)
    return current, left_out


def _used_files(experience: Experience) -> tuple[set[str], set[str]]:
    """(prompt files, code files) that nodes and evals use, relative to the experience."""
    prompts, tools = set(), set()
    uses = [
        pair
        for node in experience.nodes.values()
        for pair in ((node.prompt, prompts), (node.system, prompts), (node.impl, tools))
    ]
    for check in experience.evals:
        uses += [(check.impl, tools), (check.judge.prompt if check.judge else None, prompts)]
    root = experience.directory.resolve()
    for path, kind in uses:
        if path is not None:
            try:
                kind.add(path.resolve().relative_to(root).as_posix())
            except ValueError:
                continue
    return prompts, tools


def _unused_files(experience: Experience, payload: dict[str, Any]) -> str | None:
    prompts, tools = _used_files(experience)
    keep = prompts | tools | {experience.spec_path.name}
    sources = payload.get("sources") or {}
    dropped = sorted(name for name in sources if name not in keep)
    for name in dropped:
        del sources[name]
    return f"files no node or eval uses ({', '.join(dropped)})" if dropped else None


def _passing_nodes(experience: Experience, payload: dict[str, Any]) -> str | None:
    summarised = []
    for i, node in enumerate(payload["evidence"].get("nodes") or []):
        if node.get("failures") or node.get("schema_errors") or node.get("timeouts"):
            continue
        payload["evidence"]["nodes"][i] = {
            "node": node["node"],
            "attempts": node.get("attempts"),
            "timing_ms": node.get("timing_ms"),
        }
        summarised.append(node["node"])
    return (
        f"the evidence of nodes that never failed, summarised ({', '.join(summarised)})"
        if summarised
        else None
    )


def _state_values(
    experience: Experience, payload: dict[str, Any], limit: int = STATE_VALUE_CHARS
) -> str | None:
    cut = set()
    for run in payload["evidence"].get("runs") or []:
        for change in run.get("state_diff") or []:
            for key, value in list(change.items()):
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                if key not in ("field", "last_writer") and len(text) > limit + 40:
                    change[key] = text[:limit] + f"... [cut: {len(text):,} chars]"
                    cut.add(str(change.get("field", key)))
    return (
        f"long state values in the state diff, cut to {limit} characters ({', '.join(sorted(cut))})"
        if cut
        else None
    )


def _state_previews(experience: Experience, payload: dict[str, Any]) -> str | None:
    return _state_values(experience, payload, STATE_PREVIEW_CHARS)


def _node_names(experience: Experience, payload: dict[str, Any]) -> str | None:
    nodes = payload["evidence"].get("nodes") or []
    quiet = [n for n in nodes if set(n) <= {"node", "attempts", "timing_ms"}]
    if not quiet:
        return None
    payload["evidence"]["nodes"] = [n for n in nodes if n not in quiet]
    payload["evidence"]["nodes_without_failures"] = [n["node"] for n in quiet]
    return "the evidence of nodes that never failed, beyond their names"


def _cut_sources(payload: dict[str, Any], names: set[str], limit: int, what: str) -> str | None:
    sources = payload.get("sources") or {}
    cut = []
    for name in sorted(names & set(sources)):
        text = sources[name]
        if len(text) > limit:
            sources[name] = text[:limit] + f"\n... [cut: {len(text):,} chars in all]"
            cut.append(name)
    return f"{what} cut to {limit:,} characters ({', '.join(cut)})" if cut else None


def _tools(experience: Experience, payload: dict[str, Any]) -> str | None:
    return _cut_sources(payload, _used_files(experience)[1], TOOL_CHARS, "tool and eval sources")


def _earlier(experience: Experience, payload: dict[str, Any]) -> str | None:
    earlier = payload.get("earlier_proposals") or []
    if not earlier:
        return None
    payload["earlier_proposals"] = [
        {k: e.get(k) for k in ("title", "status") if k in e} for e in earlier
    ]
    return "earlier proposals, reduced to their titles and statuses"


def _prompts(experience: Experience, payload: dict[str, Any]) -> str | None:
    return _cut_sources(payload, _used_files(experience)[0], PROMPT_CHARS, "prompts")


_STEPS = (
    _unused_files,
    _passing_nodes,
    _state_values,
    _tools,
    _earlier,
    _prompts,
    _state_previews,
    _node_names,
)
