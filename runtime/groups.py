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
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir

from .outcomes import HALTED, NodeFailed

if TYPE_CHECKING:
    from .executor import Executor


async def run_group(ex: Executor, g: ir.ParallelGroup, extra: Mapping[str, Any] | None) -> Any:
    t0 = ex.clock.monotonic()
    keys = ex.prep.branch_keys[g.id]
    where = ex._where(g.id)
    await ex.emit("group_started", {**where, "mode": g.mode, "branches": len(keys)})
    pending = list(range(len(keys)))
    running: dict[asyncio.Task[bool], int] = {}
    limit = g.max_concurrency or len(keys)
    failures: list[NodeFailed] = []
    finished: dict[int, bool] = {}
    winner: int | None = None
    stop = False
    try:
        while pending or running:
            while pending and len(running) < limit and not stop and not ex.halting:
                i = pending.pop(0)
                running[asyncio.create_task(ex.run_scope(keys[i], extra))] = i
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
                await ex.settle(list(running))
                running.clear()
    except BaseException:
        await ex.settle(list(running))
        raise

    async def fail() -> None:
        first = failures[0].error
        error = {"code": first["code"], "message": first.get("message", "")}
        await ex.emit(
            "step_failed",
            {
                **where,
                "attempt": 0,
                "duration_ms": ex.ms(t0),
                "final": True,
                "propagated": True,
                "error": {**error, "cause_step": first.get("step")},
            },
        )
        raise failures[0]

    if g.mode == "any":
        if winner is None:
            if failures and not ex.halting:
                await fail()
            return HALTED
        losers = {k for i, k in enumerate(keys) if i != winner}
        undo = [u for u in ex.undo if losers.intersection(u.branches)]
        if undo:
            ex.undo = [u for u in ex.undo if not losers.intersection(u.branches)]
            from .compensation import compensate

            await compensate(ex, undo, sequential=True)
        result = ex.steps_view.get(ex.prep.last_of_branch[keys[winner]], {}).get("result")
        await ex.emit(
            "group_completed",
            {**where, "result": ex.redact(result), "winner": winner, "duration_ms": ex.ms(t0)},
        )
        return result
    if failures:
        await fail()
    if len(finished) < len(keys) or not all(finished.values()):
        return HALTED
    result = [ex.steps_view.get(ex.prep.last_of_branch[k], {}).get("result") for k in keys]
    await ex.emit(
        "group_completed", {**where, "result": ex.redact(result), "duration_ms": ex.ms(t0)}
    )
    return result
