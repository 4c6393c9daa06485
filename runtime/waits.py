"""`wait` nodes as the executor meets them: park until a signal comes (docs/language.md).

The first time a run reaches a wait it journals `wait_started {step, signal, deadline}` (the
deadline counted from then). Then, and on every resume, it takes the oldest signal of that name
the store keeps for the run (`Store.signals`) that no `wait` consumed: the consumption is
journaled (`wait_ended {reason: signal, signal_id}`, which the store reads as consumed) before
the node completes with the signal's data as its result. Past the deadline the wait ends
(`wait_ended {reason: timeout}`) and fails with WAIT_TIMEOUT, or completes with null for
`on_timeout: continue`. Otherwise the run parks (`RunContext.park`), for a worker to wake when
a signal comes or the deadline passes. A journaled `wait_ended` is replayed as it says: this
module must never consume a signal twice, nor one another wait of the run took.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir

from sagac.errors import StepError

from .clock import parse_rfc3339, rfc3339

if TYPE_CHECKING:
    from .context import RunContext


async def run_wait(
    ctx: RunContext,
    node: ir.WaitNode,
    scope: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
) -> Any:
    nid = node.id
    state = ctx.state
    ended = state.parks_ended.get(nid) if state else None
    if ended is not None:  # ended in an earlier process, not completed there
        if ended["reason"] == "signal":
            return await _completed(ctx, nid, await _signal_data(ctx, node, ended["signal_id"]))
        return await _timed_out(ctx, node)
    started = state.parks_started.get(nid) if state else None
    if started is None:
        deadline = rfc3339(ctx.clock.now() + node.timeout) if node.timeout is not None else None
        fields = {**ctx.where(nid), "signal": node.signal, "deadline": deadline}
        started = await ctx.emit("wait_started", fields)
    signals = await ctx.store.signals(ctx.run_id, node.signal)
    for signal in signals:
        sid = signal["signal_id"]
        if signal.get("consumed_step") is None and sid not in ctx.signals_taken:
            ctx.signals_taken.add(sid)  # before any await: a parallel wait takes the next one
            fields = {**ctx.where(nid), "reason": "signal", "signal_id": sid}
            await ctx.emit("wait_ended", fields)
            return await _completed(ctx, nid, signal["data"])
    deadline = started.get("deadline")
    due = parse_rfc3339(deadline) if deadline else None
    if due is not None and due <= ctx.clock.now():
        await ctx.emit("wait_ended", {**ctx.where(nid), "reason": "timeout"})
        return await _timed_out(ctx, node)
    return ctx.park(nid, "wait", due, node.signal)


async def _completed(ctx: RunContext, nid: str, data: Any) -> Any:
    fields = {**ctx.where(nid), "attempt": 1, "duration_ms": 0, "result": ctx.redact(data)}
    await ctx.emit("step_completed", fields)
    return data


async def _timed_out(ctx: RunContext, node: ir.WaitNode) -> Any:
    if node.on_timeout == "continue":
        return await _completed(ctx, node.id, None)
    await ctx.fail_node(
        node.id,
        StepError(
            "WAIT_TIMEOUT",
            f"no signal {node.signal!r} came within the wait's timeout of {node.timeout:g}s",
        ),
        1,
        0.0,
    )


async def _signal_data(ctx: RunContext, node: ir.WaitNode, signal_id: int) -> Any:
    for signal in await ctx.store.signals(ctx.run_id, node.signal):
        if signal["signal_id"] == signal_id:
            return signal["data"]
    raise StepError("UNEXPECTED", f"signal {signal_id} consumed by {node.id!r} is not in the store")
