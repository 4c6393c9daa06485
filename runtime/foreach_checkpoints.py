"""Checkpoints of a running foreach: what completed, what a resume skips, what is undone.

`Progress` collects item completions in memory and journals them in one `batch_progress` event
(`flush`) at the end of each batch or sooner (FLUSH_ITEMS items, FLUSH_SECONDS), then makes them
compensable as one `ItemBlock`. `Resumed` is what a resumed run knows from the journal: the
items completed (by index, or by cursor with `checkpoint`) and those that failed for good, so
`todo` leaves them out. `block_undos` turns a block back into one compensation per item, newest
first, finding each item by its cursor. This module must never call an action and never
journal one event per item.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from sagac.compiler import ir
from sagac.runtime.actions import spec_templates

from sagac.errors import StepError

from .checkpoints import ItemBlock
from .outcomes import Undo

if TYPE_CHECKING:
    from .context import RunContext

FLUSH_ITEMS = 1000  # journal completions at the latest after this many items...
FLUSH_SECONDS = 1.0  # ...or this long, even inside a long batch
_RESULT_NAME = re.compile(r"\bresult\b")


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


def reads_result(comp: ir.Compensation) -> bool:
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


class Progress:
    """The state of one foreach while it runs: counters, the completions not yet journaled,
    and how to journal them."""

    def __init__(self, ctx: RunContext, node: ir.ForeachNode, total: int, total_batches: int):
        self.ctx = ctx
        self.node = node
        self.total = total
        self.total_batches = total_batches
        comp = node.compensate
        self.undo = comp is not None and ctx.prep.phase[node.id] == "steps"
        self.keep_results = self.undo and comp is not None and reads_result(comp)
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

    def failed_one(self) -> None:
        self.processed += 1
        self.failed += 1
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


class Resumed:
    """What the journal says of a foreach's items before this process runs it: the items
    completed and those that failed for good (their report errors, by index)."""

    def __init__(self, ctx: RunContext, node: ir.ForeachNode, items: list[Any]) -> None:
        self.ctx, self.node, self.items = ctx, node, items
        self.done_index: bytearray | None = None
        self.done_cursor: set[str] | None = None
        self.failed: dict[int, dict[str, Any]] = {}
        self.done_count = 0
        state = ctx.state
        if state is None:
            return
        nid, total = node.id, len(items)
        done = state.items_done.get(nid)
        if done is not None:
            if node.checkpoint is None:
                self.done_index = bytearray(total)
                for i in done.indexes():
                    if i < total:
                        self.done_index[i] = 1
            else:
                self.done_cursor = done.cursors()
            self.done_count = done.count
        for (sid, idx), rec in state.steps.items():
            if sid == nid and idx is not None and rec.status == "failed":
                self.failed[idx] = ctx.error_at(nid, rec.error or {}, rec.attempt, idx)

    def todo(self, start: int, stop: int) -> range | list[int]:
        """The indexes in [start, stop) still to run."""
        if self.done_index is None and self.done_cursor is None and not self.failed:
            return range(start, stop)
        out = []
        for i in range(start, stop):
            if i in self.failed or (self.done_index is not None and self.done_index[i]):
                continue
            if self.done_cursor is not None:
                try:
                    c = self.ctx.redact(cursor_of(self.ctx, self.node, self.items[i], i))
                except StepError:
                    c = None
                if c in self.done_cursor:
                    continue
            out.append(i)
        return out
