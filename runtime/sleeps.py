"""`sleep` nodes as the executor meets them: a durable timer (docs/language.md, "sleep").

The due time is rendered (`until`, an RFC 3339 time with a zone) or computed (`for`) once and
journaled (`sleep_started {step, until}`) before the run waits, so a resumed run (after a crash,
a signal, or parked) waits only for what is left. A sleep whose time has come ends with
`wait_ended {reason: due}` and completes with `{slept_until}`; one due within the run's sleep
limit (`RunContext.sleep_limit`) is waited in this process, as active time, and the run's own
cancel (its timeout, `sagac cancel`) cuts it short (`wait_ended {reason: cancelled}`); a longer
one parks the run (`RunContext.park`) for a worker to wake when due. This module must never
journal a second `sleep_started` for a node, nor wait past a cancel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir

from sagac.errors import StepError

from .clock import parse_rfc3339, rfc3339

if TYPE_CHECKING:
    from .context import RunContext


def zoned_time(text: Any) -> float:
    """Epoch seconds of an RFC 3339 time with a zone; StepError TEMPLATE_ERROR otherwise."""
    try:
        when = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise StepError(
            "TEMPLATE_ERROR",
            f"`until` rendered {str(text)!r}, which is not an RFC 3339 time with a zone"
            " (e.g. 2026-12-24T09:00:00+01:00 or ...Z)",
        )
    return when.timestamp()


async def run_sleep(
    ctx: RunContext,
    node: ir.SleepNode,
    scope: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
) -> Any:
    nid = node.id
    started = ctx.state.parks_started.get(nid) if ctx.state else None
    if started is not None:
        until = started["until"]
    else:
        try:
            due = (
                zoned_time(ctx.engine.render(node.until, scope))
                if node.until is not None
                else ctx.clock.now() + (node.for_ or 0.0)
            )
        except StepError as e:
            await ctx.fail_node(nid, e, 0, 0.0)
        until = rfc3339(due)
        await ctx.emit("sleep_started", {**ctx.where(nid), "until": until})
    due = parse_rfc3339(until)
    left = due - ctx.clock.now()
    if left > ctx.sleep_limit:
        return ctx.park(nid, "sleep", due)
    if left > 0:
        began = ctx.clock.monotonic()
        try:
            await ctx.clock.sleep(left)
        except asyncio.CancelledError:
            if ctx.cancelled_by_run():  # the saga's timeout or a cancel request: closed
                await ctx.emit("wait_ended", {**ctx.where(nid), "reason": "cancelled"})
            raise
        waited = ctx.ms(began)
    else:
        waited = 0
    await ctx.emit("wait_ended", {**ctx.where(nid), "reason": "due"})
    result = {"slept_until": until}
    await ctx.emit(
        "step_completed", {**ctx.where(nid), "attempt": 1, "duration_ms": waited, "result": result}
    )
    return result
