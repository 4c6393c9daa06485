"""foreach: one action per item, in batches, with checkpoints (spec 2.4; docs/batches.md).

Items are rendered once from `items`; batch `b` holds items `[b*size, (b+1)*size)` and runs them
with at most `concurrency` in flight (that many worker tasks pull indexes from the batch, so
memory grows with the batch, never with the item count), then waits `delay` before the next.
This module is the node and its scheduling; an item's attempts are `foreach_items`, and what
is journaled of completions, skipped on resume and undone is `foreach_checkpoints`.

The journal holds per item only what a resume and the compensation need. Completions are not
journaled one by one: they collect in memory and go to the store in one `batch_progress` event
(the item indexes in completion order, their checkpoint cursors, and their kept results when
the compensation reads `result`) at the end of each batch, or sooner once FLUSH_ITEMS items or
FLUSH_SECONDS have gone by. An item is therefore at-least-once: one that ran but whose
completion was not yet journaled when the process died runs again on resume, with the same
idempotency key (a pure function of the item and the journaled run: `<run id>:<node id>:
<cursor>` by default). Retries and final failures of an item are rare and journaled as they
happen (`step_retrying`, `step_failed` with `item_index`, `cursor`, `batch`).

`on_error: stop` cancels the batch's other in-flight items (and awaits them: an item has ended
before its node does) and fails the node with BATCH_ITEM_FAILED (item_index, batch_number,
cursor, cause); `continue` attempts every item and fails the node at the end when any failed,
with every item's error in the report. Completed items are undone newest first, each exactly
once, also after a resume (their cursors and kept results come from the journal). This module
must never journal one event per completed item, nor call an action itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir

from sagac.errors import StepError

from .foreach_checkpoints import (
    FLUSH_ITEMS,
    FLUSH_SECONDS,
    GoneItem,
    Progress,
    Resumed,
    block_undos,
    cursor_of,
    item_at,
    items_of,
)
from .foreach_items import ItemFailed, Items
from .outcomes import NodeFailed, error_dict

if TYPE_CHECKING:
    from .context import RunContext

__all__ = [
    "FLUSH_ITEMS",
    "FLUSH_SECONDS",
    "GoneItem",
    "block_undos",
    "cursor_of",
    "item_at",
    "items_of",
    "run_foreach",
]


async def run_foreach(
    ctx: RunContext,
    node: ir.ForeachNode,
    scope: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
) -> Any:
    """Run a foreach node: its items in batches; its result is the items' tally."""
    t0 = ctx.clock.monotonic()
    items = await _items(ctx, node, scope, t0)
    size = max(node.batch.size, 1)
    total = len(items)
    resumed = Resumed(ctx, node, items)
    progress = Progress(ctx, node, total, (total + size - 1) // size)
    progress.processed = resumed.done_count + len(resumed.failed)
    progress.failed = len(resumed.failed)
    where = ctx.where(node.id)
    await ctx.emit(
        "step_started",
        {
            **where,
            "attempt": 1,
            "kind": "foreach",
            "total": total,
            "total_batches": progress.total_batches,
            "processed": progress.processed,
            "idempotency_key": None,
        },
    )
    first_failure: ItemFailed | None = None
    if resumed.failed:
        first = min(resumed.failed)
        first_failure = ItemFailed(resumed.failed[first], first // size + 1, None)
    batches = _Batches(ctx, node, Items(ctx, node, items, scope, progress), progress)
    first_failure = await batches.run_all(resumed, first_failure)
    if first_failure is not None:
        await _node_failed(ctx, node, progress, first_failure, where, t0)
    result = {"total": total, "succeeded": total - progress.failed, "failed": progress.failed}
    await ctx.emit(
        "step_completed", {**where, "attempt": 1, "duration_ms": ctx.ms(t0), "result": result}
    )
    return result


async def _items(
    ctx: RunContext, node: ir.ForeachNode, scope: Mapping[str, Any], t0: float
) -> list[Any]:
    """Render `items` once (the node fails with TEMPLATE_ERROR unless they give a list)."""
    try:
        items = ctx.engine.render(node.items, scope)
        if not isinstance(items, list):
            raise StepError(
                "TEMPLATE_ERROR",
                f"{node.items}: `items` must give a list, not {type(items).__name__}",
            )
    except StepError as e:
        await ctx.fail_node(node.id, e, 0, t0)
    ctx.items[node.id] = items
    return items


class _Batches:
    """The scheduling of one foreach: batch after batch, `concurrency` workers within one."""

    def __init__(self, ctx: RunContext, node: ir.ForeachNode, items: Items, progress: Progress):
        self.ctx = ctx
        self.node = node
        self.items = items
        self.progress = progress
        self.stop_mode = node.on_error == "stop"
        self.stopping = False  # an item failed for good under `stop`: start nothing new

    async def run_all(self, resumed: Resumed, first: ItemFailed | None) -> ItemFailed | None:
        """Run the batches (the items a resume did not finish); the first item that failed
        for good, if any."""
        node, clock = self.node, self.ctx.clock
        size, total = max(node.batch.size, 1), self.progress.total
        ran = False
        for b in range(self.progress.total_batches):
            if self.stop_mode and first is not None:
                break
            start = b * size
            pending = resumed.todo(start, min(start + size, total))
            if not pending:
                continue
            if ran and node.batch.delay > 0:
                await clock.sleep(node.batch.delay)
            elif not ran:
                self.progress.t0 = clock.monotonic()  # the rate counts from the first item here
            ran = True
            errors = await self.run_batch(pending, b + 1)
            if errors and first is None:
                first = errors[0]
        return first

    async def run_batch(self, pending: range | list[int], batch: int) -> list[ItemFailed]:
        """Run one batch's items with at most `concurrency` in flight; under `stop`, the first
        failure cancels the others. Every worker has ended when this returns."""
        ctx = self.ctx
        errors: list[ItemFailed] = []
        indexes = iter(pending)
        workers = min(max(self.node.batch.concurrency, 1), len(pending))
        tasks = [asyncio.create_task(self.worker(indexes, batch, errors)) for _ in range(workers)]
        try:
            running = set(tasks)
            while running:
                finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                if self.stopping or any(not t.cancelled() and t.exception() for t in finished):
                    break  # stop: cancel the batch's other in-flight items
            await ctx.settle(list(running))
        except asyncio.CancelledError:
            crash = not ctx.cancelled_by_run()
            await ctx.settle(tasks)
            if not crash and self.progress.pending:
                await self.progress.flush(batch)  # what completed before the cancel is undone
            raise
        except BaseException:
            await ctx.settle(tasks)
            raise
        for t in tasks:
            problem = None if t.cancelled() else t.exception()
            if problem is not None:
                raise problem  # not an item's failure: the store, or a bug
        await self.progress.flush(batch)
        return errors

    async def worker(self, indexes: Iterator[int], batch: int, errors: list[ItemFailed]) -> None:
        """Pull item indexes from the batch and run them one at a time."""
        progress = self.progress
        for i in indexes:
            if self.stopping:
                return
            try:
                await self.items.run(i, batch)
            except ItemFailed as f:
                errors.append(f)
                if self.stop_mode:
                    self.stopping = True
                    return
            if progress.pending and progress.due():
                await progress.flush(batch)


async def _node_failed(
    ctx: RunContext,
    node: ir.ForeachNode,
    progress: Progress,
    first: ItemFailed,
    where: dict[str, Any],
    t0: float,
) -> None:
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
        detail = {"failed": progress.failed, "total": progress.total, **detail}
        message = (
            f"{progress.failed} of {progress.total} items failed (first: item "
            f"{e['item_index']}: {cause.get('code')})"
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
