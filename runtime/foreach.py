"""foreach: one action per item, in batches, with checkpoints (spec 2.4; docs/batches.md).

Items are rendered once from `items`; batch `b` holds items `[b*size, (b+1)*size)` and runs them
with at most `concurrency` in flight (that many worker tasks pull indexes from the batch, so
memory grows with the batch, never with the item count), then waits `delay` before the next.

The journal holds per item only what a resume and the compensation need. Completions are not
journaled one by one: they collect in memory and go to the store in one `batch_progress` event
(the item indexes in completion order, their checkpoint cursors, and their kept results when
the compensation reads `result`) at the end of each batch, or sooner once FLUSH_ITEMS items or
FLUSH_SECONDS have gone by. An item is therefore at-least-once: one that ran but whose
completion was not yet journaled when the process died runs again on resume, with the same
idempotency key (a pure function of the item and the journaled run: `<run id>:<node id>:
<cursor>` by default). Retries and final failures of an item are rare and journaled as they
happen (`step_retrying`, `step_failed` with `item_index`, `cursor`, `batch`).

`on_error: stop` cancels the batch's other in-flight items and fails the node with
BATCH_ITEM_FAILED (item_index, batch_number, cursor, cause); `continue` attempts every item and
fails the node at the end when any failed, with every item's error in the report. Completed
items are undone newest first, each exactly once, also after a resume (their cursors and kept
results come from the journal). This module must never journal one event per completed item.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn
from weakref import WeakKeyDictionary

from sagac.compiler import ir
from sagac.runtime.actions import spec_templates
from sagac.runtime.errors import StepError

from .attempts import (
    NO_RESULT,
    attempt_limit,
    call_action,
    check_result_size,
    retry_delay,
    step_context,
    timeout_error,
)
from .checkpoints import ItemBlock
from .outcomes import NodeFailed, Undo, error_dict
from .retry import RetryState

if TYPE_CHECKING:
    from .context import RunContext

FLUSH_ITEMS = 1000  # journal completions at the latest after this many items...
FLUSH_SECONDS = 1.0  # ...or this long, even inside a long batch
_RESULT_NAME = re.compile(r"\bresult\b")


class _ItemFailed(Exception):
    def __init__(self, error: dict[str, Any], batch: int, cursor: str | None) -> None:
        super().__init__(error["code"])
        self.error = error
        self.batch = batch
        self.cursor = cursor


class GoneItem:
    """Stands for an item whose cursor is no longer among the items (a forced resume under a
    changed definition): its compensation cannot render the item and fails, for a person."""

    def __init__(self, cursor: str | None, index: int) -> None:
        self.cursor, self.index = cursor, index

    def __repr__(self) -> str:
        return f"<item {self.index} (cursor {self.cursor!r}) is no longer in the items>"


def items_of(ctx: RunContext, node: ir.ForeachNode) -> list[Any]:
    """The node's items (rendered again from the run's scope when this process has not)."""
    items = ctx.items.get(node.id)
    if items is None:
        items = ctx.items[node.id] = ctx.engine.render(node.items, ctx.scope)
    return items


def item_at(ctx: RunContext, node: ir.ForeachNode, index: int) -> Any:
    return items_of(ctx, node)[index]


def cursor_of(ctx: RunContext, node: ir.ForeachNode, item: Any, index: int) -> str:
    """The item's stable cursor: the rendered `checkpoint`, else its index."""
    if node.checkpoint is None:
        return str(index)
    return ctx.engine.render_text(node.checkpoint, {**ctx.scope, node.as_: item})


_BY_CURSOR: WeakKeyDictionary[Any, dict[str, dict[str, int]]] = WeakKeyDictionary()


def block_undos(ctx: RunContext, u: Undo) -> Iterator[Undo]:
    """The compensations of one checkpoint's items, newest first, each with its item (found by
    its cursor, so a changed order of the items still undoes the right ones)."""
    node = ctx.prep.nodes[u.step]
    assert isinstance(node, ir.ForeachNode)
    items = items_of(ctx, node)
    for index, cursor, result in u.block.newest_first():
        item: Any = items[index] if index < len(items) else None
        if cursor is not None and (
            item is None or ctx.redact(cursor_of(ctx, node, item, index)) != cursor
        ):
            by_cursor = _BY_CURSOR.setdefault(ctx, {})
            if node.id not in by_cursor:
                by_cursor[node.id] = {
                    ctx.redact(cursor_of(ctx, node, it, i)): i for i, it in enumerate(items)
                }
            found = by_cursor[node.id].get(cursor)
            item = items[found] if found is not None else GoneItem(cursor, index)
        elif item is None:
            item = GoneItem(cursor, index)
        yield Undo(u.step, index, u.order, result, None, u.branches, item)


def _reads_result(comp: ir.Compensation) -> bool:
    """Whether the compensation's templates may read `result` (then results are journaled)."""
    texts: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, Mapping):
            for v in value.values():
                collect(v)
        elif isinstance(value, list | tuple):
            for v in value:
                collect(v)

    collect(comp.with_)
    collect(comp.idempotency_key)
    if comp.action.spec is not None:
        collect(list(spec_templates(comp.action.spec).values()))
    return any(_RESULT_NAME.search(t) for t in texts if "{" in t)


class _Run:
    """The state of one foreach while it runs: counters, the completions not yet journaled,
    and how to journal them."""

    def __init__(self, ctx: RunContext, node: ir.ForeachNode, total: int, total_batches: int):
        self.ctx = ctx
        self.node = node
        self.total = total
        self.total_batches = total_batches
        comp = node.compensate
        self.undo = comp is not None and ctx.prep.phase[node.id] == "steps"
        self.keep_results = self.undo and comp is not None and _reads_result(comp)
        self.with_cursors = node.checkpoint is not None
        self.pending: list[int] = []
        self.pending_cursors: list[str] = []
        self.pending_results: list[Any] = []
        self.processed = 0
        self.failed = 0
        self.here = 0  # items finished by this process (for the rate)
        self.t0 = ctx.clock.monotonic()
        self.last_flush = self.t0

    def completed(self, index: int, cursor: str, result: Any) -> None:
        self.pending.append(index)
        if self.with_cursors:
            self.pending_cursors.append(cursor)
        if self.keep_results:
            self.pending_results.append(result)
        self.processed += 1
        self.here += 1

    def due(self) -> bool:
        return len(self.pending) >= FLUSH_ITEMS or (
            self.ctx.clock.monotonic() - self.last_flush >= FLUSH_SECONDS
        )

    async def flush(self, batch: int) -> None:
        """Journal the completions so far in one `batch_progress` event, then make them
        compensable. A cancel by the run itself waits for the write (what it journals must be
        undone); a crash does not (the items run again on resume)."""
        ctx = self.ctx
        indexes, cursors, results = self.pending, self.pending_cursors, self.pending_results
        self.pending, self.pending_cursors, self.pending_results = [], [], []
        now = ctx.clock.monotonic()
        self.last_flush = now
        fields: dict[str, Any] = {
            "step": self.node.id,
            "batch": batch,
            "total_batches": self.total_batches,
            "processed": self.processed,
            "total": self.total,
            "percent": round(100.0 * self.processed / self.total, 1) if self.total else 100.0,
            "failed": self.failed,
            "rate": round(self.here / max(now - self.t0, 1e-9), 1),
        }
        if indexes:
            fields["completed"] = indexes
            if self.with_cursors:
                fields["cursors"] = ctx.redact(cursors) if ctx.redacting else cursors
            if self.keep_results:
                fields["results"] = ctx.redact(results) if ctx.redacting else results
        write = asyncio.ensure_future(ctx.emit("batch_progress", fields))
        try:
            event = await asyncio.shield(write)
        except asyncio.CancelledError:
            if not ctx.cancelled_by_run():
                raise
            event = await write
            self._compensable(event, indexes, results)
            raise
        self._compensable(event, indexes, results)

    def _compensable(self, event: dict[str, Any], indexes: list[int], results: list[Any]) -> None:
        """Keep what undoing the items needs: 8 bytes an item (their indexes: this process has
        their items), and their kept results only when the compensation reads `result`."""
        if indexes and self.undo:
            seq = event["seq"]
            block = ItemBlock(
                self.node.id, seq, indexes, None, results if self.keep_results else None
            )
            chain = self.ctx.prep.chain[self.node.id]
            self.ctx.undo.append(Undo(self.node.id, None, seq, None, None, chain, block=block))


async def run_foreach(
    ctx: RunContext,
    node: ir.ForeachNode,
    scope: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
) -> Any:
    nid = node.id
    t0 = ctx.clock.monotonic()
    where = ctx.where(nid)
    try:
        items = ctx.engine.render(node.items, scope)
        if not isinstance(items, list):
            raise StepError(
                "TEMPLATE_ERROR",
                f"{node.items}: `items` must give a list, not {type(items).__name__}",
            )
    except StepError as e:
        await ctx.fail_node(nid, e, 0, t0)
    ctx.items[nid] = items
    total = len(items)
    size = max(node.batch.size, 1)
    total_batches = (total + size - 1) // size
    run = _Run(ctx, node, total, total_batches)

    # What a resume knows: items completed (checkpoints) and items that failed for good.
    done_index: bytearray | None = None
    done_cursor: set[str] | None = None
    failed_before: dict[int, dict[str, Any]] = {}
    state = ctx.state
    if state is not None:
        done = state.items_done.get(nid)
        if done is not None:
            if node.checkpoint is None:
                done_index = bytearray(total)
                for i in done.indexes():
                    if i < total:
                        done_index[i] = 1
            else:
                done_cursor = done.cursors()
            run.processed = done.count
        for (sid, idx), rec in state.steps.items():
            if sid == nid and idx is not None and rec.status == "failed":
                failed_before[idx] = ctx.error_at(nid, rec.error or {}, rec.attempt, idx)
        run.processed += len(failed_before)
        run.failed = len(failed_before)

    await ctx.emit(
        "step_started",
        {
            **where,
            "attempt": 1,
            "kind": "foreach",
            "total": total,
            "total_batches": total_batches,
            "processed": run.processed,
            "idempotency_key": None,
        },
    )
    spec = ctx.action_of(nid, node.action.spec)
    clock = ctx.clock
    engine = ctx.engine
    as_ = node.as_
    stop_mode = node.on_error == "stop"
    item_where = ctx.where(nid)
    phase = "on_failure" if "phase" in item_where else "run"
    run_id = ctx.run_id
    key_prefix = f"{run_id}:{nid}:"
    stopping = False

    async def fail_item(
        i: int, item: Any, cursor: str | None, batch: int, exc: StepError, attempt: int, t: float
    ) -> NoReturn:
        err = ctx.redact(error_dict(exc))
        fields = ctx.where(nid, i)
        fields.update(
            cursor=ctx.redact(cursor),
            batch=batch,
            attempt=attempt,
            duration_ms=ctx.ms(t) if t else 0,
            error=err,
            final=True,
        )
        event = await ctx.emit("step_failed", fields)
        if attempt:
            ctx.undo_attempted(nid, i, event["seq"], err, item)
        info = ctx.error_at(nid, err, attempt, i)
        ctx.errors.append({**info, "phase": phase})
        run.processed += 1
        run.failed += 1
        run.here += 1
        raise _ItemFailed(info, batch, cursor)

    async def run_item(i: int, batch: int) -> None:
        item = items[i]
        iscope = {**scope, as_: item}
        cursor: str | None = None
        try:
            cursor = (
                str(i) if node.checkpoint is None else engine.render_text(node.checkpoint, iscope)
            )
            args = ctx.render_args(node.with_, iscope)
            if node.idempotency_key is None:
                key: str | None = key_prefix + cursor
            else:
                key = ctx.render_key(node.idempotency_key, iscope)
        except StepError as e:
            await fail_item(i, item, cursor, batch, e, 0, 0.0)
        assert cursor is not None
        attempt = 0
        retry: RetryState | None = None
        deadline_at = clock.monotonic() + node.deadline if node.deadline is not None else None
        while True:
            attempt += 1
            started = clock.monotonic()
            saga_at = ctx.saga_deadline_at
            limit, binding = attempt_limit(started, node.timeout, deadline_at, saga_at)
            sctx = step_context(ctx, nid, attempt, key, limit, i, spec=spec)
            try:
                result = await call_action(ctx, spec, args, sctx, limit, iscope)
                exc: StepError | None = result if isinstance(result, StepError) else None
            except StepError as e:
                exc = e
            except TimeoutError:
                exc = timeout_error(binding, limit, node.timeout, node.deadline, ctx.saga.timeout)
            except asyncio.CancelledError as cancel:
                if not ctx.cancelled_by_run():
                    raise
                finished = getattr(cancel, "sagac_result", NO_RESULT)
                if finished is not NO_RESULT:  # a thread that could not be stopped: count it
                    run.completed(i, cursor, _kept(node, finished))
                    raise
                err = {"code": "CANCELLED", "message": "cancelled: the run is stopping"}
                fields = ctx.where(nid, i)
                fields.update(
                    cursor=ctx.redact(cursor),
                    batch=batch,
                    attempt=attempt,
                    duration_ms=ctx.ms(started),
                    error=err,
                    final=True,
                    cancelled=True,
                )
                event = await ctx.emit("step_failed", fields)
                ctx.undo_attempted(nid, i, event["seq"], err, item)
                raise
            if exc is None:
                kept = _kept(node, result)
                if run.keep_results:
                    try:
                        check_result_size(kept, "the compensation")
                    except StepError as e:
                        exc = e
                if exc is None:
                    run.completed(i, cursor, kept)
                    return
            if retry is None:
                retry = RetryState(node.retry)
            exc, nxt = retry_delay(
                retry, exc, binding, attempt, node.deadline, deadline_at, saga_at, clock
            )
            if nxt is None:
                await fail_item(i, item, cursor, batch, exc, attempt, started)
            delay, max_attempts = nxt
            fields = ctx.where(nid, i)
            fields.update(
                cursor=ctx.redact(cursor),
                attempt=attempt,
                max_attempts=max_attempts,
                delay_ms=int(delay * 1000),
                error=ctx.redact(error_dict(exc)),
            )
            await ctx.emit("step_retrying", fields)
            await clock.sleep(delay)

    async def worker(indexes: Iterator[int], batch: int, errors: list[_ItemFailed]) -> None:
        nonlocal stopping
        for i in indexes:
            if stopping:
                return  # another item failed for good: start nothing new
            try:
                await run_item(i, batch)
            except _ItemFailed as f:
                errors.append(f)
                if stop_mode:
                    stopping = True
                    return
            if run.pending and run.due():
                await run.flush(batch)

    def todo(start: int, stop: int) -> range | list[int]:
        if done_index is None and done_cursor is None and not failed_before:
            return range(start, stop)
        out = []
        for i in range(start, stop):
            if i in failed_before:
                continue
            if done_index is not None and done_index[i]:
                continue
            if done_cursor is not None:
                try:
                    c = ctx.redact(cursor_of(ctx, node, items[i], i))
                except StepError:
                    c = None
                if c in done_cursor:
                    continue
            out.append(i)
        return out

    first_failure: _ItemFailed | None = None
    if failed_before:
        first = min(failed_before)
        first_failure = _ItemFailed(failed_before[first], first // size + 1, None)
    ran = False
    for b in range(total_batches):
        if stop_mode and first_failure is not None:
            break
        start = b * size
        pending = todo(start, min(start + size, total))
        if not pending:
            continue
        if ran and node.batch.delay > 0:
            await clock.sleep(node.batch.delay)
        elif not ran:
            run.t0 = clock.monotonic()  # the rate counts from the first item run here
        ran = True
        errors: list[_ItemFailed] = []
        indexes = iter(pending)
        tasks = [
            asyncio.create_task(worker(indexes, b + 1, errors))
            for _ in range(min(max(node.batch.concurrency, 1), len(pending)))
        ]
        try:
            running = set(tasks)
            while running:
                finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                if stopping or any(not t.cancelled() and t.exception() for t in finished):
                    break  # stop: cancel the batch's other in-flight items
            await ctx.settle(list(running))
        except asyncio.CancelledError:
            crash = not ctx.cancelled_by_run()
            await ctx.settle(tasks)
            if not crash and run.pending:
                await run.flush(b + 1)  # what completed before the cancel must be undone
            raise
        except BaseException:
            await ctx.settle(tasks)
            raise
        for t in tasks:
            problem = None if t.cancelled() else t.exception()
            if problem is not None:
                raise problem  # not an item's failure: the store, or a bug
        await run.flush(b + 1)
        if errors and first_failure is None:
            first_failure = errors[0]
    if first_failure is not None:
        return await _node_failed(ctx, node, run, first_failure, where, t0)
    result = {"total": total, "succeeded": total - run.failed, "failed": run.failed}
    await ctx.emit(
        "step_completed", {**where, "attempt": 1, "duration_ms": ctx.ms(t0), "result": result}
    )
    return result


async def _node_failed(
    ctx: RunContext,
    node: ir.ForeachNode,
    run: _Run,
    first: _ItemFailed,
    where: dict[str, Any],
    t0: float,
) -> Any:
    """Fail the node with BATCH_ITEM_FAILED naming the first item that failed for good."""
    e = first.error
    cause = {k: e[k] for k in ("code", "message", "detail") if e.get(k)}
    detail: dict[str, Any] = {
        "item_index": e["item_index"],
        "batch_number": first.batch,
        "cursor": ctx.redact(first.cursor) if first.cursor is not None else None,
        "cause": cause,
    }
    if node.on_error == "stop":
        message = (
            f"item {e['item_index']} (batch {first.batch}) failed: {cause.get('code')}: "
            f"{e.get('message', '')}"
        )
        index = e["item_index"]
    else:
        detail = {"failed": run.failed, "total": run.total, **detail}
        message = (
            f"{run.failed} of {run.total} items failed (first: item {e['item_index']}: "
            f"{cause.get('code')})"
        )
        index = None
    err = ctx.redact(error_dict(StepError("BATCH_ITEM_FAILED", message, detail)))
    await ctx.emit(
        "step_failed",
        {
            **where,
            "attempt": 1,
            "duration_ms": ctx.ms(t0),
            "error": err,
            "final": True,
            "propagated": True,
        },
    )
    raise NodeFailed(ctx.error_at(node.id, err, e.get("attempts", 0), index))


def _kept(node: ir.ForeachNode, result: Any) -> Any:
    keep = node.keep
    if keep is not None and isinstance(result, dict):
        return {k: result[k] for k in keep if k in result}
    return result
