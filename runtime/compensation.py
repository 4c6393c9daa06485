"""Compensation: undo what a failed run did, in reverse order of completion.

`compensate(ctx, undo)` runs the compensations of the given `Undo` entries: sequentially in
strict LIFO order (the default), or with `compensation: parallel` along the reverse DAG (a
step's compensation waits only for those of the steps that depended on it; the items of one
foreach are undone one at a time, last completed first). Each compensation is retried by its own
policy and is never cut by the saga's deadline. One that still fails is recorded (report
`compensations`, `errors`, `needs_attention`) and the others run anyway, unless the saga says
`on_compensation_failure: stop`: then nothing new starts and the rest are `not_run`.
A compensation the journal shows as ended (resume) is never run again; one that started and
did not end is re-run with the idempotency key it was given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir
from sagac.runtime.actions import immediate_action
from sagac.runtime.errors import StepError

from .attempts import call_action, step_context
from .outcomes import Undo, error_dict
from .retry import RetryState

if TYPE_CHECKING:
    from .context import RunContext


def compensation_order(undo: list[Undo]) -> list[Undo]:
    """Reverse order of completion (LIFO)."""
    return sorted(undo, key=lambda u: u.order, reverse=True)


def _each(ctx: RunContext, entries: list[Undo]) -> Iterator[Undo]:
    """One entry per step or item, lazily: a block of foreach items (one checkpoint) yields its
    items newest first; compensations the journal shows as ended are left out."""
    ended: set[tuple[str, int | None]] = set()
    if ctx.state is not None:
        ended = {k for k, r in ctx.state.compensations.items() if r.status in ("ok", "failed")}
    for u in entries:
        if u.block is None:
            if (u.step, u.item_index) not in ended:
                yield u
            continue
        from .foreach import block_undos

        for item_undo in block_undos(ctx, u):
            if (item_undo.step, item_undo.item_index) not in ended:
                yield item_undo


async def compensate(ctx: RunContext, undo: list[Undo], *, sequential: bool = False) -> None:
    entries = compensation_order(undo)
    if not entries:
        return
    stop_on_failure = ctx.saga.on_compensation_failure == "stop"
    if sequential or ctx.saga.compensation == "sequential":
        stopped = False
        for u in _each(ctx, entries):
            if stopped:
                _not_run(ctx, u)
            elif not await compensate_one(ctx, u) and stop_on_failure:
                stopped = True
        return
    await _parallel(ctx, entries, stop_on_failure)


async def _parallel(ctx: RunContext, entries: list[Undo], stop_on_failure: bool) -> None:
    """Each step's compensations in a task started once every compensation it waits for has
    ended: a task per step that may run now, not one per step waiting (a long chain would
    keep thousands of idle tasks alive, and the collector walking them)."""
    by_step: dict[str, list[Undo]] = {}
    for u in entries:
        by_step.setdefault(u.step, []).append(u)
    rank = {s: i for i, s in enumerate(by_step)}  # LIFO: who starts first when both may
    waits, waiters = ctx.prep.undo_graph()
    pending = dict(waits)
    running: set[asyncio.Task[None]] = set()
    finished = asyncio.get_running_loop().create_future()
    stopped = False

    def release(cleared: list[str], ready: list[str]) -> None:
        """The compensations of `cleared` are done (or had nothing to undo): count them off
        their waiters; a vertex with no compensation of this run clears at once."""
        while cleared:
            for w in waiters.get(cleared.pop(), ()):
                pending[w] -= 1
                if not pending[w]:
                    (ready if w in by_step else cleared).append(w)
        for s in sorted(ready, key=rank.__getitem__):
            task = asyncio.create_task(undo_step(s))
            running.add(task)
            task.add_done_callback(ended)

    def ended(task: asyncio.Task[None]) -> None:
        running.discard(task)
        if finished.done():
            return
        error = asyncio.CancelledError() if task.cancelled() else task.exception()
        if error is not None:
            finished.set_exception(error)
        elif not running:  # a task releases its waiters before it ends: nothing is left
            finished.set_result(None)

    async def undo_step(s: str) -> None:
        nonlocal stopped
        try:
            for u in _each(ctx, by_step[s]):
                if stopped:
                    _not_run(ctx, u)
                elif not await compensate_one(ctx, u) and stop_on_failure:
                    stopped = True
        finally:
            if not finished.done():
                release([s], [])

    free = [v for v, n in waits.items() if not n]  # nothing depended on them
    release([v for v in free if v not in by_step], [v for v in free if v in by_step])
    try:
        await finished
    except BaseException:
        for t in running:
            t.cancel()
        if running:
            await asyncio.wait(running)
        raise


def _not_run(ctx: RunContext, u: Undo) -> None:
    ctx.comp_failed = True
    ctx.comp_log.append(
        {
            "step": u.step,
            "item_index": u.item_index,
            "status": "not_run",
            "attempts": 0,
            "error": None,
        }
    )


async def compensate_one(ctx: RunContext, u: Undo) -> bool:
    """Run one compensation to its end; True when it succeeded."""
    node: Any = ctx.prep.nodes[u.step]
    comp: ir.Compensation = node.compensate
    scope = {**ctx.scope, "result": u.result, "error": u.error, "failure": ctx.failure}
    if isinstance(node, ir.ForeachNode):
        item = u.item
        if item is None and u.item_index is not None:
            from .foreach import item_at

            item = item_at(ctx, node, u.item_index)
        scope[node.as_] = item
    rec = ctx.state.compensations.get((u.step, u.item_index)) if ctx.state else None
    where: dict[str, Any] = {"step": u.step}
    if u.item_index is not None:
        where["item_index"] = u.item_index
    attempt = rec.attempt if rec is not None else 0
    try:
        args = ctx.render_args(comp.with_, scope)
        if rec is not None and rec.idempotency_key is not None:
            key: str | None = rec.idempotency_key
        else:
            key = ctx.render_key(comp.idempotency_key, scope)
    except StepError as e:
        await _failed(ctx, u, where, e, attempt, 0, final=True)
        return False
    spec = ctx.action_of(u.step, comp.action.spec, compensation=True)
    retry = RetryState(comp.retry)
    clock = ctx.clock
    instant = immediate_action(spec)  # a mock without delay: no coroutine, no context
    while True:
        attempt += 1
        await ctx.emit(
            "compensation_started", {**where, "attempt": attempt, "idempotency_key": key}
        )
        started = clock.monotonic()
        try:
            if instant is not None:
                if comp.timeout is not None and comp.timeout <= 0:
                    raise TimeoutError
                result = instant(attempt)
            else:
                sctx = step_context(
                    ctx, u.step, attempt, key, comp.timeout, u.item_index, True, spec
                )
                result = await call_action(ctx, spec, args, sctx, comp.timeout, scope)
            if isinstance(result, StepError):
                raise result
        except StepError as e:
            exc = e.with_traceback(None)  # a value now: no frame <-> traceback cycle
        except TimeoutError:
            exc = StepError("TIMEOUT", f"the compensation took longer than {comp.timeout:g}s")
        except asyncio.CancelledError as cancel:
            if hasattr(cancel, "sagac_result") and ctx.cancelled_by_run():
                await _ok(ctx, u, where, attempt, started)
            raise
        else:
            await _ok(ctx, u, where, attempt, started)
            return True
        nxt = retry.next_delay(exc.code, clock.random)
        if nxt is None:
            await _failed(ctx, u, where, exc, attempt, started, final=True)
            return False
        await _failed(ctx, u, where, exc, attempt, started, final=False, delay=nxt[0])
        await clock.sleep(nxt[0])


async def _ok(
    ctx: RunContext, u: Undo, where: dict[str, Any], attempt: int, started: float
) -> None:
    await ctx.emit(
        "compensation_completed",
        {**where, "attempt": attempt, "duration_ms": ctx.ms(started) if started else 0},
    )
    ctx.comp_log.append(
        {
            "step": u.step,
            "item_index": u.item_index,
            "status": "ok",
            "attempts": attempt,
            "error": None,
        }
    )


async def _failed(
    ctx: RunContext,
    u: Undo,
    where: dict[str, Any],
    exc: StepError,
    attempt: int,
    started: float,
    *,
    final: bool,
    delay: float | None = None,
) -> None:
    err = ctx.redact(error_dict(exc))
    fields = {
        **where,
        "attempt": attempt,
        "duration_ms": ctx.ms(started) if started else 0,
        "error": err,
        "final": final,
    }
    if delay is not None:
        fields["delay_ms"] = int(delay * 1000)
    await ctx.emit("compensation_failed", fields)
    if not final:
        return
    ctx.comp_failed = True
    info = {**ctx.error_at(u.step, err, attempt, u.item_index), "phase": "compensation"}
    info.pop("attempts", None)
    ctx.errors.append(info)
    ctx.comp_log.append(
        {
            "step": u.step,
            "item_index": u.item_index,
            "status": "failed",
            "attempts": attempt,
            "error": info,
        }
    )
