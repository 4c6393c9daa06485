"""`mock` actions: a stand-in with a scripted outcome, for demos, tests and dry runs.

After sleeping `delay` seconds (cancellable), a mock with `fail: CODE` raises
`StepError(CODE, "mock failure")` on every attempt, or only on attempts 1..`fail_times` when
that is set (so `fail_times: 2` succeeds on the third attempt). Otherwise it returns a copy of
`result` exactly as written, null when there is none: a mock never invents fields.

`immediate(spec)` is the same outcome without a coroutine, for a mock that takes no time: its
result is checked and normalised as JSON once per spec, and each call returns a fresh copy
(`invoke` would round-trip it through `json` on every call).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from typing import Any

from sagac.compiler.ir import MockAction
from sagac.runtime.actions.context import StepContext

from sagac.errors import StepError

__all__ = ["immediate", "run_mock"]


async def run_mock(spec: MockAction, args: Any, ctx: StepContext) -> Any:
    if spec.delay > 0:
        await asyncio.sleep(spec.delay)
    _check_failure(spec, ctx.attempt)
    return copy.deepcopy(spec.result)


def _check_failure(spec: MockAction, attempt: int) -> None:
    if spec.fail is not None and (spec.fail_times is None or attempt <= spec.fail_times):
        raise StepError(
            spec.fail, "mock failure", {"attempt": attempt, "fail_times": spec.fail_times}
        )


Outcome = Callable[[int], Any]  # attempt -> result (or raises StepError)
_SCALARS = (str, int, float, bool, type(None))
_STRICT_JSON = json.JSONEncoder(allow_nan=False).encode
_outcomes: dict[int, tuple[MockAction, Outcome | None]] = {}  # id(spec) -> (spec, outcome)
_OUTCOMES_LIMIT = 4096  # specs come from definitions and `--fail`: bounded, but be safe


def immediate(spec: MockAction) -> Outcome | None:
    """For a mock without `delay`: a function of the attempt number that returns (a fresh copy of
    the result, as `invoke` would after its JSON round trip) or raises exactly what `invoke`
    would. None when the mock sleeps or its result is not JSON data (`invoke` reports that)."""
    hit = _outcomes.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    outcome = _build(spec)
    if len(_outcomes) >= _OUTCOMES_LIMIT:
        _outcomes.clear()
    _outcomes[id(spec)] = (spec, outcome)
    return outcome


def _build(spec: MockAction) -> Outcome | None:
    if spec.delay > 0:
        return None
    try:
        text = _STRICT_JSON(spec.result)
    except (TypeError, ValueError, RecursionError):
        return None
    plain = json.loads(text)  # what every call returns a copy of
    fresh: Callable[[], Any]
    if isinstance(plain, _SCALARS):
        fresh = lambda: plain  # noqa: E731 - immutable: the value itself is its copy
    elif isinstance(plain, dict | list) and all(
        isinstance(v, _SCALARS) for v in (plain.values() if isinstance(plain, dict) else plain)
    ):
        fresh = plain.copy  # flat: a shallow copy is a deep one
    else:
        fresh = lambda: json.loads(text)  # noqa: E731 - nested: parsing beats deepcopy

    if spec.fail is None:
        return lambda attempt: fresh()

    def outcome(attempt: int) -> Any:
        _check_failure(spec, attempt)
        return fresh()

    return outcome
