"""`mock` actions: a stand-in with a scripted outcome, for demos, tests and dry runs.

After sleeping `delay` seconds (cancellable), a mock with `fail: CODE` raises
`StepError(CODE, "mock failure")` on every attempt, or only on attempts 1..`fail_times` when
that is set (so `fail_times: 2` succeeds on the third attempt). Otherwise it returns a copy of
`result` exactly as written, null when there is none: a mock never invents fields.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from sagac.compiler.ir import MockAction
from sagac.runtime.actions.context import StepContext
from sagac.runtime.errors import StepError

__all__ = ["run_mock"]


async def run_mock(spec: MockAction, args: Any, ctx: StepContext) -> Any:
    if spec.delay > 0:
        await asyncio.sleep(spec.delay)
    if spec.fail is not None and (spec.fail_times is None or ctx.attempt <= spec.fail_times):
        raise StepError(
            spec.fail, "mock failure", {"attempt": ctx.attempt, "fail_times": spec.fail_times}
        )
    return copy.deepcopy(spec.result)
