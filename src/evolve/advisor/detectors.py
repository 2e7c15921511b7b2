"""Deterministic detectors: evidence in, `tune-param` proposals out, no LLM involved.

Each detector looks at one pattern in the pooled evidence and, where it holds, proposes one
concrete change to experience.yaml, made with the format-preserving YAML editor so the diff
touches only the lines that change:

- attempts hit `timeout_ms`                       -> raise it to twice the p95 of successful
  attempts; when none finished, the limit is only a lower bound (timed-out attempts are
  censored): the value is a guess, and `search` lists larger ones for --verify to try
- transient failures under `skip`/`fail_run`      -> `retry` with exponential backoff
- retries ran out on transient failures           -> more attempts and a longer backoff; every
  attempt failed, so the number needed is only known to be larger: a guess, and `search` lists
  more attempts for --verify to try
- rate-limit failures                             -> lower the fan-out's concurrency, or back off
  longer; how long the provider's window lasts is unknown: a guess, and with --verify `search`
  tries backoffs from short to long (the first that works is the shortest that does)
- a fan-out bound by its concurrency, no 429s,    -> raise `for_each.concurrency`
  and items that mostly wait (CPU time under half their duration, where measured); how many in
  flight the work (and whatever it calls) bears is unknown: a guess, and `search` lists smaller
  raises for --verify to try when the guess does not help (the first that works is proposed)
- replies cut at max_tokens (finish reason)        -> raise `max_tokens`
- replies failing their output schema             -> a retry (a fresh answer), or room to finish;
  never a retry when the repair reply repeats the first reply's violation word for word
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from evolve.advisor.evidence import TRANSIENT, Evidence, NodeEvidence, Ref, percentile
from evolve.advisor.proposal import Proposal, confidence_for
from evolve.spec import Experience, Node
from evolve.spec.edit import set_values

Change = tuple[tuple[str | int, ...], Any]
TIMEOUT_SEARCH = 4  # values --verify tries for a timeout that no attempt finished under
ATTEMPTS_SEARCH = 4  # attempt counts --verify tries when every attempt failed
MAX_ATTEMPTS = 20  # the schema's maximum
BACKOFF_SEARCH = 5  # backoff bases --verify tries for a rate-limited node
MAX_BACKOFF_MS = 60_000
MAX_TIMEOUT_MS = 3_600_000
WAITING = 0.5  # a fan-out's items "mostly wait" when under half their time is CPU time
DEFAULT_MAX_TOKENS = 4096  # proposed when a reply was cut and the node set no max_tokens


def nice_ms(value: float) -> int:
    """Round up to a number a person would write: 450, 1500, 12000, 60000."""
    if value <= 0:
        return 100
    step = 10 ** max(1, int(math.log10(value)) - 1)
    if value / step > 50:
        step *= 5
    return int(math.ceil(value / step) * step)


def attempt_values(current: int) -> list[int]:
    """More attempts than `current`, growing by half (at least two more each), up to 20."""
    values: list[int] = []
    value = current
    while len(values) < ATTEMPTS_SEARCH and value < MAX_ATTEMPTS:
        value = min(MAX_ATTEMPTS, max(value + 2, math.ceil(value * 1.5)))
        values.append(value)
    return values


def backoff_values(base_ms: int) -> list[int]:
    """Backoff bases to try, short to long: four times the current base, then four times more."""
    values = [nice_ms(max(base_ms, 25) * 4)]
    while len(values) < BACKOFF_SEARCH and values[-1] * 4 <= MAX_BACKOFF_MS:
        values.append(nice_ms(values[-1] * 4))
    return values


def concurrency_values(target: int, current: int) -> list[int]:
    """The proposed concurrency, then halved while it stays above today's."""
    values = [target]
    while values[-1] // 2 > current:
        values.append(values[-1] // 2)
    return values


def _cite(refs: list[Ref], limit: int = 6) -> str:
    shown = ", ".join(str(r) for r in refs[:limit])  # in log order (`Evidence.put_in_order`)
    return shown + (f" and {len(refs) - limit} more" if len(refs) > limit else "")


def _runs(refs: list[Ref]) -> list[str]:
    return sorted({r.run for r in refs})


class Detectors:
    def __init__(self, experience: Experience, evidence: Evidence, verifying: bool = False):
        self.verifying = verifying  # searches (further values to try) only when re-run
        self.experience = experience
        self.evidence = evidence
        self.text = experience.spec_path.read_bytes().decode("utf-8")  # CRLF stays CRLF
        self.index = {node_id: i for i, node_id in enumerate(experience.nodes)}

    def run(self) -> list[Proposal]:
        proposals = []
        checks: list[Callable[[Node, NodeEvidence], Proposal | None]] = [
            self.timeouts,
            self.transient_without_retry,
            self.retries_exhausted,
            self.rate_limited,
            self.fan_out_bound,
            self.max_tokens_cut,
            self.schema_failures,
        ]
        for node_id, node in self.experience.nodes.items():
            found = self.evidence.nodes.get(node_id)
            if found is None or node.frozen:
                continue
            for check in checks:
                proposal = check(node, found)
                if proposal is not None:
                    proposals.append(proposal)
        return proposals

    def _propose(
        self,
        node: Node,
        changes: list[Change],
        *,
        key: str,
        title: str,
        rationale: str,
        refs: list[Ref],
    ) -> Proposal:
        text = set_values(
            self.text,
            [
                (("graph", "nodes", self.index[node.id], *p), v)
                for p, v in changes
                if p[0] != "runtime"
            ]
            + [(p, v) for p, v in changes if p[0] == "runtime"],
        )
        runs = _runs(refs)
        if len(self.evidence.runs) > 1:
            rationale += (
                f" Seen in {len(runs)} of {len(self.evidence.runs)} runs ({', '.join(runs)})."
            )
        value = ",".join(f"{'.'.join(map(str, p))}={v}" for p, v in changes)
        return Proposal(
            operation="tune-param",
            confidence=confidence_for(len(refs), len(runs)),
            title=title,
            rationale=rationale,
            evidence=[str(r) for r in sorted(refs, key=lambda r: (r.run, r.seq))],
            files={"experience.yaml": text},
            fingerprint=f"tune-param:{node.id}:{key}:{value}",
            strength=len(refs),
            target=f"experience.yaml:{node.id}:{key.split('.')[0]}",
        )

    def _limit(self, node: Node) -> int:
        return node.timeout_ms or self.experience.runtime.timeout_ms

    def timeouts(self, node: Node, found: NodeEvidence) -> Proposal | None:
        current = self._limit(node)
        # Only limits at least as high as today's count: a timeout hit under a lower limit,
        # before it was raised, says nothing about the current setting.
        hits = [
            (r, lim)
            for r, lim in zip(found.timeouts, found.timeout_limits, strict=False)
            if lim >= current
        ]
        if not hits:
            return None
        refs = [r for r, _ in hits]
        hit = max(lim for _, lim in hits)
        # A timed-out attempt is censored: its true duration is only known to be >= the limit.
        # Successful attempts (across runs) are real observations; they decide when they exist.
        finished = percentile(found.succeeded_ms, 95)
        target = nice_ms(2 * max(finished or 0, hit))
        if target <= current:
            return None
        plural = "s" * (len(refs) > 1)
        if finished is not None and finished >= hit:
            why = (
                f"successful attempts took up to {finished} ms (p95 of "
                f"{len(found.succeeded_ms)}), so {target} ms leaves about twice the room."
            )
        elif finished is not None:
            why = (
                f"successful attempts took up to {finished} ms (p95 of "
                f"{len(found.succeeded_ms)}), but the timed-out ones needed more than {hit} ms "
                f"(censored: only a lower bound), so {target} ms is twice the limit they hit."
            )
        else:
            why = (
                f"no attempt finished, so {hit} ms is only a lower bound on how long the work "
                f"takes (a timed-out attempt is censored, not a measurement): {target} ms is a "
                "guess at a lower bound, and the work may need more. `evolve propose --verify` "
                "tries larger values until one works."
            )
        rationale = (
            f"{len(refs)} attempt{plural} of '{node.id}' hit timeout_ms {hit} ({_cite(refs)}); "
            + why
        )
        proposal = self._timeout(node, current, target, rationale, refs)
        if finished is None and self.verifying:  # a guess: later values to try, in order
            values = [target]
            while len(values) < TIMEOUT_SEARCH and nice_ms(values[-1] * 2) <= MAX_TIMEOUT_MS:
                values.append(nice_ms(values[-1] * 2))
            self._search(
                proposal,
                values,
                lambda value: self._timeout(
                    node,
                    current,
                    value,
                    f"{len(refs)} attempt{plural} of '{node.id}' hit timeout_ms {hit} "
                    f"({_cite(refs)}) and no attempt finished; re-running with larger "
                    f"limits, {value} ms was the first that let the work finish.",
                    refs,
                ),
                "{}",
                ("timeouts",),
            )
        return proposal

    def _timeout(
        self, node: Node, current: int, target: int, rationale: str, refs: list[Ref]
    ) -> Proposal:
        return self._propose(
            node,
            [(("timeout_ms",), target)],
            key="timeout_ms",
            title=f"Raise timeout_ms of '{node.id}' from {current} to {target}",
            rationale=rationale,
            refs=refs,
        )

    def transient_without_retry(self, node: Node, found: NodeEvidence) -> Proposal | None:
        refs = found.refs(*TRANSIENT)
        if not refs or node.on_error.policy == "retry":
            return None
        kinds = sorted({t for t in TRANSIENT if found.failures.get(t)})
        policy = {
            "policy": "retry",
            "attempts": 3,
            "backoff": "exponential",
            "base_ms": 500,
            "then": node.on_error.policy,
        }
        rationale = (
            f"'{node.id}' failed {len(refs)} time{'s' * (len(refs) > 1)} with transient "
            f"errors ({', '.join(kinds)}: {_cite(refs)}) under on_error "
            f"{node.on_error.policy}, so each one cost a result; such errors usually "
            "pass on a second try. Retry up to 3 times with exponential backoff, then "
            f"{node.on_error.policy} as before."
        )
        return self._propose(
            node,
            [(("on_error",), policy)],
            key="on_error.retry",
            title=f"Retry '{node.id}' on transient errors",
            rationale=rationale,
            refs=refs,
        )

    def retries_exhausted(self, node: Node, found: NodeEvidence) -> Proposal | None:
        if node.on_error.policy != "retry":
            return None
        refs = [r for r, t in found.exhausted if t in TRANSIENT and t != "rate_limit"]
        if not refs:
            return None
        current = node.on_error.attempts
        values = attempt_values(current) or [current]
        base = nice_ms(node.on_error.base_ms * 2)
        lead = (
            f"'{node.id}' ran out of its {current} attempts on transient "
            f"errors {len(refs)} time{'s' * (len(refs) > 1)} ({_cite(refs)}). "
        )
        guess = (
            f"Every attempt failed, so it needs more than {current} (a lower bound, not a "
            f"measurement): {values[0]} is a guess. `evolve propose --verify` tries "
            + ", ".join(map(str, values))
            + " until one works."
        )
        proposal = self._attempts(
            node,
            values[0],
            base,
            lead + f"{values[0]} attempts from a {base} ms base give the failing dependency "
            "longer to recover. " + guess,
            refs,
        )
        if self.verifying:
            self._search(
                proposal,
                values,
                lambda value: self._attempts(
                    node,
                    value,
                    base,
                    lead + f"Re-running with more attempts, {value} (from a {base} ms "
                    "base) was the first that let the work succeed.",
                    refs,
                ),
                "{} attempts",
                ("failed_nodes", "failed_items"),
            )
        return proposal

    def _attempts(
        self, node: Node, attempts: int, base: int, rationale: str, refs: list[Ref]
    ) -> Proposal:
        return self._propose(
            node,
            [(("on_error",), {"attempts": attempts, "base_ms": base})],
            key="on_error.attempts",
            title=f"Give '{node.id}' {attempts} attempts and a {base} ms backoff",
            rationale=rationale,
            refs=refs,
        )

    @staticmethod
    def _search(
        proposal: Proposal,
        values: list[Any],
        make: Callable[[Any], Proposal],
        label: str,
        shows: tuple[str, ...],
    ) -> None:
        """Make `proposal` (the change to `values[0]`) the first step of a search over `values`:
        `make` builds the change to each later one; `label` names a value in the "tried" list
        (`"{} attempts"`); `shows` are the figures a step's outcome is told by."""
        proposal.search_label, proposal.search_shows = label.format(values[0]), shows
        for value in values[1:]:
            step = make(value)
            step.search_label, step.search_shows = label.format(value), shows
            proposal.search.append(step)

    def rate_limited(self, node: Node, found: NodeEvidence) -> Proposal | None:
        refs = found.refs("rate_limit")
        if not refs:
            return None
        current = node.for_each.concurrency if node.for_each else None
        if node.for_each and (current or self.experience.runtime.concurrency) > 1:
            now = current or self.experience.runtime.concurrency
            lower = max(1, now // 2)
            rationale = (
                f"'{node.id}' was rate-limited {len(refs)} time"
                f"{'s' * (len(refs) > 1)} ({_cite(refs)}) with {now} items in flight; "
                f"{lower} at a time stays under the provider's limit."
            )
            return self._propose(
                node,
                [(("for_each", "concurrency"), lower)],
                key="for_each.concurrency.lower",
                title=f"Lower the concurrency of '{node.id}' to {lower}",
                rationale=rationale,
                refs=refs,
            )
        lead = (
            f"'{node.id}' was rate-limited {len(refs)} time{'s' * (len(refs) > 1)} "
            f"({_cite(refs)}); "
        )
        if not self.verifying:
            base = nice_ms(max(node.on_error.base_ms, 500) * 4)
            return self._backoff(
                node,
                base,
                lead + f"backing off from {base} ms gives the provider's window time to "
                "reset. How long that window lasts is unknown, so the value is a guess; "
                "`evolve propose --verify` tries backoffs from short to long and proposes the "
                "first that works.",
                refs,
            )
        values = backoff_values(node.on_error.base_ms)
        proposal = self._backoff(
            node,
            values[0],
            lead + f"re-running with a backoff from {values[0]} ms let the provider's window "
            "reset (the shortest tried that works).",
            refs,
        )
        self._search(
            proposal,
            values,
            lambda value: self._backoff(
                node,
                value,
                lead + f"re-running with longer backoffs, {value} ms was the shortest "
                "base that let the provider's window reset.",
                refs,
            ),
            "base_ms {}",
            ("failed_nodes", "failed_items", "retries"),
        )
        return proposal

    def _backoff(self, node: Node, base: int, rationale: str, refs: list[Ref]) -> Proposal:
        change: dict[str, Any] = {"base_ms": base}
        if node.on_error.policy != "retry":
            change = {
                "policy": "retry",
                "attempts": 4,
                "backoff": "exponential",
                "base_ms": base,
                "then": node.on_error.policy,
            }
        return self._propose(
            node,
            [(("on_error",), change)],
            key="on_error.backoff",
            title=f"Back off longer when '{node.id}' is rate-limited",
            rationale=rationale,
            refs=refs,
        )

    def fan_out_bound(self, node: Node, found: NodeEvidence) -> Proposal | None:
        if node.for_each is None or found.failures.get("rate_limit") or not found.fan_out:
            return None
        global_cap = self.experience.runtime.concurrency
        cap = min(node.for_each.concurrency or global_cap, global_cap)
        bound = [
            f
            for f in found.fan_out
            if f["items"] >= 2 * cap
            and f["wall_ms"] >= 200
            and f["busy_ms"] >= 0.8 * cap * f["wall_ms"]
            # items that mostly compute gain nothing from more in flight (2 cores, one GIL)
            and (f.get("cpu_ms") is None or f["cpu_ms"] < WAITING * f["busy_ms"])
        ]
        if not bound:
            return None
        items = max(f["items"] for f in bound)
        target = min(items, max(cap * 4, 8), 64)
        if target <= cap:
            return None
        values = concurrency_values(target, cap)
        guess = (
            f" How many in flight the work (and whatever it calls) bears is unknown, so "
            f"{target} is a guess; `evolve propose --verify` tries "
            + ", ".join(map(str, values))
            + " and proposes the first that works."
        )
        proposal = self._concurrency(node, bound, cap, target, guess)
        if self.verifying:
            self._search(
                proposal,
                values,
                lambda value: self._concurrency(
                    node,
                    bound,
                    cap,
                    value,
                    f" Re-running at {', '.join(map(str, values))} in flight, {value} was "
                    "the first that made the run better.",
                ),
                "concurrency {}",
                ("failed_items", "retries", "duration_ms"),
            )
        return proposal

    def _concurrency(
        self, node: Node, bound: list[dict[str, Any]], cap: int, target: int, guess: str
    ) -> Proposal:
        global_cap = self.experience.runtime.concurrency
        worst = max(bound, key=lambda f: f["wall_ms"])
        ideal = worst["busy_ms"] / target
        changes: list[Change] = [(("for_each", "concurrency"), target)]
        if global_cap < target:
            changes.append((("runtime", "concurrency"), target))
        rationale = (
            f"'{node.id}' ran {worst['items']} items {cap} at a time: they kept every "
            f"slot busy ({worst['busy_ms']} ms of item time in {worst['wall_ms']} ms "
            "of wall time) with no rate-limit error, so the fan-out waited on its "
            f"concurrency, not on a limit. At {target} in flight it would take about "
            f"{round(ideal)} ms."
        )
        if global_cap < target:
            rationale += f" runtime.concurrency ({global_cap}) rises with it, or it would cap it."
        refs = [Ref(f["run"], 0) for f in bound]
        proposal = self._propose(
            node,
            changes,
            key="for_each.concurrency.raise",
            title=f"Raise the concurrency of '{node.id}' from {cap} to {target}",
            rationale=rationale + guess,
            refs=refs,
        )
        proposal.evidence = [
            f"run {f['run']}: node '{node.id}' wall {f['wall_ms']} ms, item time "
            f"{f['busy_ms']} ms, {f['items']} items"
            for f in bound
        ]
        return proposal

    def max_tokens_cut(self, node: Node, found: NodeEvidence) -> Proposal | None:
        """Replies the provider cut at max_tokens (finish reason `length`), JSON or text."""
        if not found.cut:
            return None
        target = node.max_tokens * 2 if node.max_tokens else DEFAULT_MAX_TOKENS
        plural = "s" * (len(found.cut) > 1)
        limit = f"max_tokens {node.max_tokens}" if node.max_tokens else "the provider's default"
        rationale = (
            f"{len(found.cut)} repl{'ies' if plural else 'y'} of '{node.id}' ended because "
            f"they reached {limit} (finish reason `length`: {_cite(found.cut)}), so the "
            f"answer{plural} stopped mid-way; {target} tokens leave room to finish."
        )
        return self._propose(
            node,
            [(("max_tokens",), target)],
            key="max_tokens",
            title=f"Raise max_tokens of '{node.id}' to {target}",
            rationale=rationale,
            refs=found.cut,
        )

    def schema_failures(self, node: Node, found: NodeEvidence) -> Proposal | None:
        final = found.refs("schema_invalid")
        if not found.schema_errors or not final:
            return None
        errors = [e for _, es in found.schema_errors for e in es]
        truncated = [e for e in errors if "Unterminated" in e or "Expecting" in e]
        if truncated and node.max_tokens and not found.cut:  # else max_tokens_cut says it
            target = node.max_tokens * 2
            rationale = (
                f"{len(final)} repaired replies of '{node.id}' still failed their schema "
                f"({_cite(final)}), and the errors show JSON cut short "
                f'("{truncated[0][:80]}"): max_tokens {node.max_tokens} leaves no room '
                "to finish the object."
            )
            return self._propose(
                node,
                [(("max_tokens",), target)],
                key="max_tokens",
                title=f"Raise max_tokens of '{node.id}' to {target}",
                rationale=rationale,
                refs=final,
            )
        if node.on_error.policy == "retry" or found.schema_repeated():
            # the same violation on the first reply and the repair reply is no accident: a
            # fresh attempt asks the same question and gets the same answer
            return None
        sample = errors[0][:100] if errors else "invalid output"
        rationale = (
            f"{len(final)} replies of '{node.id}' failed their output schema even after "
            f'the repair turn ({_cite(final)}; e.g. "{sample}"). A fresh attempt '
            "usually answers in shape; retry twice before giving up."
        )
        policy = {
            "policy": "retry",
            "attempts": 3,
            "backoff": "linear",
            "base_ms": 100,
            "then": node.on_error.policy,
        }
        return self._propose(
            node,
            [(("on_error",), policy)],
            key="on_error.schema_retry",
            title=f"Retry '{node.id}' when its reply breaks the schema",
            rationale=rationale,
            refs=final,
        )
