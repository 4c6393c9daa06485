"""Retry policies: which policy applies to an error, and how long to wait before the next try.

A step's `retry` is a list of policies; the first whose `on` names the error's code applies
(as the Retry list of AWS Step Functions). Each policy counts its own retries: a policy with
`max_attempts: N` allows N - 1 retries of the errors it matches, so a single policy bounds the
step to N attempts in all. This module computes; it never sleeps (the executor does, through
its clock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sagac.compiler.ir import RetryPolicy


def match_policy(policies: Sequence[RetryPolicy], code: str) -> int | None:
    """The index of the first policy whose `on` names `code`, else None."""
    for i, p in enumerate(policies):
        if code in p.on:
            return i
    return None


def base_delay(policy: RetryPolicy, n: int) -> float:
    """Delay before retry `n` (1 after the first failure), before jitter, capped at max_delay."""
    if policy.backoff == "fixed":
        delay = policy.initial_delay
    elif policy.backoff == "linear":
        delay = policy.initial_delay * n
    else:
        delay = policy.initial_delay * policy.multiplier ** (n - 1)
    return min(delay, policy.max_delay)


def backoff_delay(policy: RetryPolicy, n: int, random: Callable[[], float]) -> float:
    """The delay before retry `n` with jitter applied (`full`: uniform in [0, delay])."""
    delay = base_delay(policy, n)
    if policy.jitter == "full":
        delay *= random()
    return min(max(delay, 0.0), policy.max_delay)


class RetryState:
    """Counts retries per policy for one step (or one compensation, or one foreach item)."""

    __slots__ = ("policies", "retries")

    def __init__(self, policies: Sequence[RetryPolicy]) -> None:
        self.policies = policies
        self.retries = [0] * len(policies)

    def next_delay(self, code: str, random: Callable[[], float]) -> tuple[float, int] | None:
        """(delay, max_attempts of the matched policy) when `code` may be retried, else None."""
        if not self.policies:
            return None
        i = match_policy(self.policies, code)
        if i is None:
            return None
        policy = self.policies[i]
        if self.retries[i] + 1 >= policy.max_attempts:
            return None
        self.retries[i] += 1
        return backoff_delay(policy, self.retries[i], random), policy.max_attempts

    def count(self, code: str) -> None:
        """A retry of `code` made before a resume: it counts toward its policy's attempts."""
        i = match_policy(self.policies, code)
        if i is not None:
            self.retries[i] += 1
