"""Compensation: undo what a failed run did, in reverse order of completion.

`compensate(ctx, undo)` runs the compensations of the given `Undo` entries: sequentially in strict
LIFO order (the default), or with `compensation: parallel` along the reverse DAG (a step's
compensation waits only for those of the steps that depended on it; the items of one foreach are
undone one at a time, last completed first). Each compensation is retried by its own policy and is
never cut by the saga's deadline; its attempts run in the one attempt loop (`attempts.Attempts`),
which never lets one start before the forward action it undoes ended. One that still fails is
recorded (report `compensations`, `errors`, `needs_attention`) and the others run anyway, unless the
saga says `on_compensation_failure: stop`: then nothing new starts and the rest are `not_run`. A
compensation the journal shows as ended (resume) is never run again; one that started and did not
end is re-run with the idempotency key it was given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir

from sagac.errors import StepError

from .attempts import Attempts, Journaled, Outcomes, templated
from .calls import undo_call
from .foreach_checkpoints import block_undos, item_at
from .outcomes import Undo, error_dict

if TYPE_CHECKING:
    from .context import RunContext


_ORDER = attrgetter("order")


def compensation_order(undo: list[Undo]) -> list[Undo]:
    """Reverse order of completion (LIFO)."""
    return sorted(undo, key=_ORDER, reverse=True)


def _each(ctx: RunContext, entries: list[Undo]) -> Iterator[Undo]:
    """One entry per step or item, lazily: a block of foreach items (one checkpoint) yields its
    items newest first; compensations the journal shows as ended are left out."""
    ended: set[tuple[str, int | None]] = set()
    if ctx.state is not None:
        ended = {k for k, r in ctx.state.compensations.items() if r.status in ("ok", "failed")}
    for u in entries:
        if u.block is None:
            if not ended or (u.step, u.item_index) not in ended:
                yield u
            continue
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
    ctx.comp_log.append(_entry(u, "not_run", 0, None))


def compensate_one(ctx: RunContext, u: Undo) -> Coroutine[Any, Any, bool]:
    """Run one compensation to its end, to await: True when it succeeded."""
    node: Any = ctx.prep.nodes[u.step]
    if isinstance(node, ir.CallNode):  # the child run undoes itself
        return undo_call(ctx, u)
    comp: ir.Compensation = node.compensate
    rec = ctx.state.compensations.get((u.step, u.item_index)) if ctx.state else None
    where: dict[str, Any] = {"step": u.step}
    if u.item_index is not None:
        where["item_index"] = u.item_index
    spec = ctx.action_of(u.step, comp.action.spec, compensation=True)
    const, args = ctx.prep.constant(comp.with_)
    if const and comp.idempotency_key is None and not templated(ctx, spec):
        scope: Mapping[str, Any] = ctx.scope  # nothing renders: no scope of its own to build
    else:
        scope = {**ctx.scope, "result": u.result, "error": u.error, "failure": ctx.failure}
    if isinstance(node, ir.ForeachNode):
        scope = dict(scope)
        item = u.item
        if item is None and u.item_index is not None:
            item = item_at(ctx, node, u.item_index)
        scope[node.as_] = item
    # Never cut by the saga's deadline (saga_bound False).
    loop = Attempts(
        _UNDOING, ctx, u.step, u.item_index, where, spec, args, scope, None, comp.retry,
        comp.timeout, None, None, False,
    )  # fmt: skip
    loop.subject = u
    attempt = rec.attempt if rec is not None else 0
    if rec is not None and rec.idempotency_key is not None:
        loop.key = rec.idempotency_key
    try:
        if not const:
            loop.args = ctx.render_args(comp.with_, scope)
        if loop.key is None:
            loop.key = ctx.render_key(comp.idempotency_key, scope)
    except StepError as e:
        return loop.give_up(e, attempt, 0.0)
    return loop.run(attempt)


class _Undoing(Outcomes):
    """A compensation's: `compensation_started` before each attempt; `compensation_completed`
    and an `ok` entry when it succeeds; `compensation_failed` between attempts (`final:
    false`) and when it fails for good (`final: true`, a `failed` entry, an error in the
    report)."""

    START = "compensation_started"
    WHAT = "the compensation"
    COMPENSATING = True
    __slots__ = ()

    def completion(self, a: Attempts, attempt: int, started: float, result: Any) -> Journaled:
        a.attempt = attempt
        return "compensation_completed", {
            **a.where,
            "attempt": attempt,
            "duration_ms": int((a.ctx.clock.monotonic() - started) * 1000),
        }

    def recorded(self, a: Attempts, seq: int) -> bool:
        a.ctx.comp_log.append(_entry(a.subject, "ok", a.attempt, None))
        return True

    def retry(
        self,
        a: Attempts,
        attempt: int,
        started: float,
        exc: StepError,
        delay: float,
        max_attempts: int,
    ) -> tuple[str, dict[str, Any]]:
        event, fields = self.failure(a, exc, attempt, started)
        fields["final"] = False
        fields["delay_ms"] = int(delay * 1000)
        return event, fields

    def failure(
        self, a: Attempts, exc: StepError, attempt: int, started: float
    ) -> tuple[str, dict[str, Any]]:
        ctx = a.ctx
        return "compensation_failed", {
            **a.where,
            "attempt": attempt,
            "duration_ms": ctx.ms(started) if started else 0,
            "error": ctx.redact(error_dict(exc)),
            "final": True,
        }

    def failure_recorded(self, a: Attempts, seq: int, exc: StepError, attempt: int) -> bool:
        """Failed for good: recorded for the report (`errors`, `compensations`,
        `needs_attention`)."""
        ctx, u = a.ctx, a.subject
        ctx.comp_failed = True
        err = ctx.redact(error_dict(exc))
        info = {**ctx.error_at(u.step, err, attempt, u.item_index), "phase": "compensation"}
        info.pop("attempts", None)
        ctx.errors.append(info)
        ctx.comp_log.append(_entry(u, "failed", attempt, info))
        return False


_UNDOING = _Undoing()


def _entry(u: Undo, status: str, attempts: int, error: dict[str, Any] | None) -> dict[str, Any]:
    """A compensation's line in the report."""
    return {
        "step": u.step,
        "item_index": u.item_index,
        "status": status,
        "attempts": attempts,
        "error": error,
    }
