"""Parallel groups: branches run as sub-scopes under the modes `all`, `all_settled` and `any`.

`all` fails fast (the first failed branch cancels the others), `all_settled` waits for every
branch and fails with the first error once all have ended (every error is in the report), and
`any` takes the first branch to finish as the winner, cancels the rest and at once compensates
every step the losing branches completed (fully completed branches or not). `max_concurrency`
bounds how many branches run at a time; the rest wait in declaration order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from sagac.compiler import ir

from .outcomes import HALTED, NodeFailed

if TYPE_CHECKING:
    from .context import RunContext


async def run_group(
    ctx: RunContext, g: ir.ParallelGroup, scope: Mapping[str, Any], extra: Mapping[str, Any] | None
) -> Any:
    t0 = ctx.clock.monotonic()
    keys = ctx.prep.branch_keys[g.id]
    where = ctx.where(g.id)
    await ctx.emit("group_started", {**where, "mode": g.mode, "branches": len(keys)})
    pending = list(range(len(keys)))
    running: dict[asyncio.Task[bool], int] = {}
    limit = g.max_concurrency or len(keys)
    failures: list[NodeFailed] = []
    finished: dict[int, bool] = {}
    winner: int | None = None
    stop = False
    try:
        while pending or running:
            while pending and len(running) < limit and not stop and not ctx.halting:
                i = pending.pop(0)
                running[asyncio.create_task(ctx.run_scope(keys[i], extra))] = i
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for t in sorted(done, key=running.__getitem__):
                i = running.pop(t)
                exc = t.exception()
                if isinstance(exc, NodeFailed):
                    failures.append(exc)
                    stop = stop or g.mode == "all"
                elif exc is not None:
                    raise exc
                else:
                    finished[i] = t.result()
                    if g.mode == "any" and t.result() and winner is None:
                        winner, stop = i, True
            if stop and running:
                await ctx.settle(list(running))
                running.clear()
    except BaseException:
        await ctx.settle(list(running))
        raise

    if g.mode == "any":
        if winner is None:
            if failures and not ctx.halting:
                await propagate_failure(ctx, g.id, t0, failures[0])
            return HALTED
        losers = {k for i, k in enumerate(keys) if i != winner}
        undo = [u for u in ctx.undo if losers.intersection(u.branches)]
        if undo:
            ctx.undo = [u for u in ctx.undo if not losers.intersection(u.branches)]
            from .compensation import compensate

            await compensate(ctx, undo, sequential=True)
        result = ctx.steps_view.get(ctx.prep.last_of_branch[keys[winner]], {}).get("result")
        await ctx.emit(
            "group_completed",
            {**where, "result": ctx.redact(result), "winner": winner, "duration_ms": ctx.ms(t0)},
        )
        return result
    if failures:
        await propagate_failure(ctx, g.id, t0, failures[0])
    if len(finished) < len(keys) or not all(finished.values()):
        return HALTED
    result = [ctx.steps_view.get(ctx.prep.last_of_branch[k], {}).get("result") for k in keys]
    await ctx.emit(
        "group_completed", {**where, "result": ctx.redact(result), "duration_ms": ctx.ms(t0)}
    )
    return result


async def propagate_failure(ctx: RunContext, nid: str, t0: float, failure: NodeFailed) -> NoReturn:
    """Journal that a node with nested lists (a group, a switch) failed because a node inside
    it did, then raise that node's failure."""
    first = failure.error
    error = {"code": first["code"], "message": first.get("message", "")}
    await ctx.emit(
        "step_failed",
        {
            **ctx.where(nid),
            "attempt": 0,
            "duration_ms": ctx.ms(t0),
            "final": True,
            "propagated": True,
            "error": {**error, "cause_step": first.get("step")},
        },
    )
    raise failure
