"""The run's two phases of nodes: the forward steps, then `on_failure` after compensation.

`run_steps(ctx)` runs the top-level steps under the saga's deadline (a timer) and `sagac cancel`
requests (a watcher polling the store, which another process may have written): either one
cancels the forward run on the run's own behalf, so nothing new starts, in-flight nodes journal
their cancellation, and the run fails with SAGA_TIMEOUT or CANCELLED and compensates.
`run_on_failure(ctx)` runs the saga's `on_failure` nodes once compensation is over, under
neither: they run after the deadline too, and their failures never change the run's status.
Both schedule through `RunContext.run_scope`. This module must never leave the timer or the
watcher running once `run_steps` returns, nor take a cancel from outside the run (a crash, a
killed process) for a timeout or a cancel request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .finish import report_data
from .outcomes import NodeFailed

if TYPE_CHECKING:
    from .context import RunContext

CANCEL_POLL_SECONDS = 0.2  # how often a running saga looks for a `sagac cancel` request


async def run_steps(ctx: RunContext) -> None:
    if ctx.saga.timeout is not None:  # active time: what earlier processes used counts
        ctx.saga_deadline_at = ctx.t_active + ctx.saga.timeout - ctx.active_before
    if ctx.state is not None and not ctx.cancel_checked:  # asked for while nothing ran it
        request = await ctx.store.cancel_request(ctx.run_id)
        if request is not None:
            await _cancel_requested(ctx, request)
            return
    task = asyncio.current_task()
    assert task is not None
    timer = None
    if ctx.saga_deadline_at is not None:
        delay = max(ctx.saga_deadline_at - ctx.clock.monotonic(), 0.0) + 0.01
        timer = asyncio.get_running_loop().call_later(delay, _saga_timeout, ctx, task)
    watcher = None
    if ctx.store.shared:  # a cancel request can come only from another process
        watcher = asyncio.create_task(_watch_cancel(ctx, task))
    try:
        await ctx.run_scope("steps")
    except NodeFailed as f:
        ctx.fail_run(f.error)
    except asyncio.CancelledError:
        if not (ctx.saga_timed_out or ctx.cancel_seen) or ctx.aborting:
            raise
        task.uncancel()
        ctx.internal.discard(task)
        if ctx.cancel_seen is not None:
            await _cancel_requested(ctx, ctx.cancel_seen)
            return
        ctx.fail_run(
            {
                "step": None,
                "branch": None,
                "item_index": None,
                "code": "SAGA_TIMEOUT",
                "message": f"the saga's timeout of {ctx.saga.timeout:g}s (active time) passed",
            }
        )
    finally:
        if timer is not None:
            timer.cancel()
        if watcher is not None:
            # Not awaited: a yield here would commit the last deferred events alone instead
            # of with the run's final event. Cancelled, it never polls again; it ends at the
            # loop's next turn.
            watcher.cancel()


async def run_on_failure(ctx: RunContext) -> None:
    if not ctx.saga.on_failure:
        return
    # The whole report as it stands after compensation (spec 2.6), not yet finished.
    report = report_data(ctx, ctx.failed_status(), None, finished=False)
    extra = {"failure": ctx.failure, "report": report}
    ctx.halting = False  # a gate left waiting by the failed run does not hold these back
    saved = ctx.saga_deadline_at
    ctx.saga_deadline_at = None  # on_failure runs after the deadline too
    try:
        await ctx.run_scope("on_failure", extra)
    except NodeFailed:
        pass  # its errors are in the report; the status stays
    finally:
        ctx.saga_deadline_at = saved


async def _watch_cancel(ctx: RunContext, task: asyncio.Task[Any]) -> None:
    """Poll the store for a cancel request; on one, stop the forward run as a saga timeout
    would, and let it fail with CANCELLED."""
    while True:
        await asyncio.sleep(CANCEL_POLL_SECONDS)
        request = await ctx.store.cancel_request(ctx.run_id)
        if request is not None:
            ctx.cancel_seen = request
            ctx.cancel(task)
            return


async def _cancel_requested(ctx: RunContext, request: dict[str, Any]) -> None:
    by, reason = request.get("by"), request.get("reason")
    await ctx.emit("cancel_requested", {"by": by, "reason": reason})
    ctx.fail_run(
        {
            "step": None,
            "branch": None,
            "item_index": None,
            "code": "CANCELLED",
            "message": f"cancelled by {by}" + (f": {reason}" if reason else ""),
        }
    )


def _saga_timeout(ctx: RunContext, task: asyncio.Task[Any]) -> None:
    ctx.saga_timed_out = True
    ctx.cancel(task)
