"""One foreach item: its cursor, arguments and key, and its attempts in the one attempt loop.

`Items.run(i, batch)` runs item `i` to its end through `attempts.Attempts` (so an item is
retried, timed out and cancelled exactly as a task step is). What an item journals is only what
is rare: `step_retrying` and a final `step_failed` (with `item_index`, `cursor`, `batch`). Its
completion is handed to the node's `Progress`, which journals many at once. This module must
never journal an item's completion one by one, and never schedules items (`foreach` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from sagac.compiler import ir
from sagac.runtime.errors import StepError

from .attempts import (
    Attempts,
    AttemptsFailed,
    cancelled_error,
    check_result_size,
    kept,
    undo_if_attempted,
)
from .outcomes import error_dict

if TYPE_CHECKING:
    from .executor import Executor
    from .foreach_checkpoints import Progress


class ItemFailed(Exception):
    """An item failed for good (journaled): `error` is the report's view of it."""

    def __init__(self, error: dict[str, Any], batch: int, cursor: str | None) -> None:
        super().__init__(error["code"])
        self.error = error
        self.batch = batch
        self.cursor = cursor


class Items:
    """What every item of one foreach shares: the node, its action, its scope and its progress."""

    def __init__(
        self,
        ex: Executor,
        node: ir.ForeachNode,
        items: list[Any],
        scope: Mapping[str, Any],
        progress: Progress,
    ) -> None:
        self.ex = ex
        self.node = node
        self.items = items
        self.scope = scope
        self.progress = progress
        self.spec = ex.action_of(node.id, node.action.spec)
        self.key_prefix = f"{ex.run_id}:{node.id}:"
        self.phase = "on_failure" if "phase" in ex._where(node.id) else "run"

    async def run(self, i: int, batch: int) -> None:
        """Run item `i` to its end; raises ItemFailed once its failure is journaled."""
        ex, node = self.ex, self.node
        item = self.items[i]
        iscope = {**self.scope, node.as_: item}
        cursor: str | None = None
        try:
            if node.checkpoint is None:
                cursor = str(i)
            else:
                cursor = ex.engine.render_text(node.checkpoint, iscope)
            args = ex.render_args(node.with_, iscope)
            if node.idempotency_key is None:
                key: str | None = self.key_prefix + cursor
            else:
                key = ex.render_key(node.idempotency_key, iscope)
        except StepError as e:
            await self.failed(i, item, cursor, batch, e, 0, 0.0)
        loop = _ItemAttempts(
            ex, node.id, i, {}, self.spec, args, iscope, key, node.retry, node.timeout
        )
        loop.deadline = node.deadline
        loop.keep = node.keep
        loop.progress = self.progress
        loop.cursor = cursor
        loop.batch = batch
        loop.item = item
        try:
            await loop.run()
        except AttemptsFailed as f:
            await self.failed(i, item, cursor, batch, f.exc, f.attempt, f.started)

    async def failed(
        self,
        i: int,
        item: Any,
        cursor: str | None,
        batch: int,
        exc: StepError,
        attempt: int,
        started: float,
    ) -> NoReturn:
        """Journal item `i`'s final failure (undone too with `on: attempted`), count it and
        raise ItemFailed."""
        ex, nid = self.ex, self.node.id
        err = ex.redact(error_dict(exc))
        fields = ex._where(nid, i)
        fields.update(
            cursor=ex.redact(cursor),
            batch=batch,
            attempt=attempt,
            duration_ms=ex.ms(started) if started else 0,
            error=err,
            final=True,
        )
        event = await ex.emit("step_failed", fields)
        if attempt:
            undo_if_attempted(ex, nid, i, event["seq"], err, item)
        info = ex._error_at(nid, err, attempt, i)
        ex.errors.append({**info, "phase": self.phase})
        self.progress.failed_one()
        raise ItemFailed(info, batch, cursor)


class _ItemAttempts(Attempts):
    """An item's attempts: no event before each, its completion to `Progress`, a retry or a
    cancel journaled with its cursor and batch."""

    __slots__ = ("batch", "cursor", "item", "progress")

    async def completed(self, attempt: int, started: float, result: Any) -> None:
        value = kept(self.keep, result)
        if self.progress.keep_results:
            check_result_size(value, "the compensation")
        self.progress.completed(self.item_index, self.cursor, value)  # type: ignore[arg-type]

    async def retrying(
        self, attempt: int, started: float, exc: StepError, delay: float, max_attempts: int
    ) -> None:
        ex = self.ex
        fields = ex._where(self.nid, self.item_index)
        fields.update(
            cursor=ex.redact(self.cursor),
            attempt=attempt,
            max_attempts=max_attempts,
            delay_ms=int(delay * 1000),
            error=ex.redact(error_dict(exc)),
        )
        await ex.emit("step_retrying", fields)

    async def cancelled(self, attempt: int, started: float) -> None:
        ex = self.ex
        err = cancelled_error()
        fields = ex._where(self.nid, self.item_index)
        fields.update(
            cursor=ex.redact(self.cursor),
            batch=self.batch,
            attempt=attempt,
            duration_ms=ex.ms(started),
            error=err,
            final=True,
            cancelled=True,
        )
        event = await ex.emit("step_failed", fields)
        undo_if_attempted(ex, self.nid, self.item_index, event["seq"], err, self.item)
