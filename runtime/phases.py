"""The run's two phases of nodes: the forward steps, then `on_failure` after compensation.

`run_steps(ex)` runs the top-level steps under the saga's deadline (a timer) and `sagac cancel`
requests (a watcher polling the store, which another process may have written): either one
cancels the forward run on the run's own behalf, so nothing new starts, in-flight nodes journal
their cancellation, and the run fails with SAGA_TIMEOUT or CANCELLED and compensates.
`run_on_failure(ex)` runs the saga's `on_failure` nodes once compensation is over, under
neither: they run after the deadline too, and their failures never change the run's status.
Both schedule through `Executor.run_scope`. This module must never leave the timer or the
watcher running once `run_steps` returns, nor take a cancel from outside the run (a crash, a
killed process) for a timeout or a cancel request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .finish import build_report
from .outcomes import NodeFailed
from .store.base import Store

if TYPE_CHECKING:
    from .executor import Executor

CANCEL_POLL_SECONDS = 0.2  # how often a running saga looks for a `sagac cancel` request


async def run_steps(ex: Executor) -> None:
    if ex.saga.timeout is not None:  # active time: what earlier processes used counts
        ex.saga_deadline_at = ex.t_active + ex.saga.timeout - ex.active_before
    if ex.state is not None:  # a cancel asked for while nothing ran the run
        request = await ex.store.cancel_request(ex.run_id)
        if request is not None:
            await _cancel_requested(ex, request)
            return
    task = asyncio.current_task()
    assert task is not None
    timer = None
    if ex.saga_deadline_at is not None:
        delay = max(ex.saga_deadline_at - ex.clock.monotonic(), 0.0) + 0.01
        timer = asyncio.get_running_loop().call_later(delay, _saga_timeout, ex, task)
    watcher = None
    if type(ex.store).cancel_request is not Store.cancel_request:
        watcher = asyncio.create_task(_watch_cancel(ex, task))
    try:
        await ex.run_scope("steps")
    except NodeFailed as f:
        ex.fail_run(f.error)
    except asyncio.CancelledError:
        if not (ex.saga_timed_out or ex.cancel_seen) or ex.aborting:
            raise
        task.uncancel()
        ex.internal.discard(task)
        if ex.cancel_seen is not None:
            await _cancel_requested(ex, ex.cancel_seen)
            return
        ex.fail_run(
            {
                "step": None,
                "branch": None,
                "item_index": None,
                "code": "SAGA_TIMEOUT",
                "message": f"the saga's timeout of {ex.saga.timeout:g}s (active time) passed",
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


async def run_on_failure(ex: Executor) -> None:
    if not ex.saga.on_failure:
        return
    # The whole report as it stands after compensation (spec 2.6), not yet finished.
    report = build_report(ex, ex.failed_status(), None, finished=False).to_json_dict()
    extra = {"failure": ex.failure, "report": report}
    ex.halting = False  # a gate left waiting by the failed run does not hold these back
    saved = ex.saga_deadline_at
    ex.saga_deadline_at = None  # on_failure runs after the deadline too
    try:
        await ex.run_scope("on_failure", extra)
    except NodeFailed:
        pass  # its errors are in the report; the status stays
    finally:
        ex.saga_deadline_at = saved


async def _watch_cancel(ex: Executor, task: asyncio.Task[Any]) -> None:
    """Poll the store for a cancel request; on one, stop the forward run as a saga timeout
    would, and let it fail with CANCELLED."""
    while True:
        await asyncio.sleep(CANCEL_POLL_SECONDS)
        request = await ex.store.cancel_request(ex.run_id)
        if request is not None:
            ex.cancel_seen = request
            ex.cancel(task)
            return


async def _cancel_requested(ex: Executor, request: dict[str, Any]) -> None:
    by, reason = request.get("by"), request.get("reason")
    await ex.emit("cancel_requested", {"by": by, "reason": reason})
    ex.fail_run(
        {
            "step": None,
            "branch": None,
            "item_index": None,
            "code": "CANCELLED",
            "message": f"cancelled by {by}" + (f": {reason}" if reason else ""),
        }
    )


def _saga_timeout(ex: Executor, task: asyncio.Task[Any]) -> None:
    ex.saga_timed_out = True
    ex.cancel(task)
