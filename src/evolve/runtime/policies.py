"""Retry delays and timeouts: what `on_error` and `timeout_ms` mean in numbers."""

from __future__ import annotations

import random

from evolve.spec.model import Experience, Node, OnError

JITTER = 0.2  # delays vary by ±20% so that retries of many items do not stampede together


def retry_delay_ms(on_error: OnError, failed_attempt: int, rng: random.Random = random) -> int:  # type: ignore[assignment]
    """The wait after attempt `failed_attempt` (1-based) fails: linear or exponential, jittered."""
    if on_error.backoff == "linear":
        base = on_error.base_ms * failed_attempt
    else:
        base = on_error.base_ms * 2 ** (failed_attempt - 1)
    return max(0, round(base * rng.uniform(1 - JITTER, 1 + JITTER)))


def attempts_allowed(on_error: OnError) -> int:
    return on_error.attempts if on_error.policy == "retry" else 1


def final_policy(on_error: OnError) -> str:
    """What happens once no attempt is left: fail_run or skip."""
    return on_error.then if on_error.policy == "retry" else on_error.policy


def timeout_ms(experience: Experience, node: Node) -> int:
    return node.timeout_ms or experience.runtime.timeout_ms
