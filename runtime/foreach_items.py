"""One foreach item: its cursor, arguments and key, and its attempts in the one attempt loop.

`Items.run(i, batch)` runs item `i` to its end through `attempts.Attempts` (so an item is
retried, timed out and cancelled exactly as a task step is). What an item journals is only what
is rare: `step_retrying` and a final `step_failed` (with `item_index`, `cursor`, `batch`). Its
completion is handed to the node's `Progress`, which journals many at once. This module must
never journal an item's completion one by one, and never schedules items (`foreach` does).
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from sagac.compiler import ir

from sagac.errors import StepError

from .attempts import (
    Attempts,
    Journaled,
    Outcomes,
    cancelled_error,
    check_result_size,
)
from .outcomes import error_dict

if TYPE_CHECKING:
    from .context import RunContext
    from .foreach_checkpoints import Progress


_NO_WHERE: dict[str, Any] = {}  # an item's events build their fields (cursor, batch) themselves


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
        ctx: RunContext,
        node: ir.ForeachNode,
        items: list[Any],
        scope: Mapping[str, Any],
        progress: Progress,
    ) -> None:
        self.ctx = ctx
        self.node = node
        self.items = items
        self.scope = scope
        self.progress = progress
        self.spec = ctx.action_of(node.id, node.action.spec)
        self.key_prefix = f"{ctx.run_id}:{node.id}:"
        self.phase = "on_failure" if "phase" in ctx.where(node.id) else "run"

    def run(self, i: int, batch: int) -> Coroutine[Any, Any, None]:
        """Run item `i` to its end, to await; raises ItemFailed once its failure is journaled."""
        ctx, node = self.ctx, self.node
        item = self.items[i]
        iscope = {**self.scope, node.as_: item}
        loop = Attempts(
            _ITEM, ctx, node.id, i, _NO_WHERE, self.spec, None, iscope, None, node.retry,
            node.timeout, node.deadline, node.keep, True,
        )  # fmt: skip
        loop.owner = self
        loop.batch = batch
        loop.subject = item
        loop.cursor = None
        try:
            if node.checkpoint is None:
                cursor = loop.cursor = str(i)
            else:
                cursor = loop.cursor = ctx.engine.render_text(node.checkpoint, iscope)
            loop.args = ctx.render_args(node.with_, iscope)
            if node.idempotency_key is None:
                loop.key = self.key_prefix + cursor
            else:
                loop.key = ctx.render_key(node.idempotency_key, iscope)
        except StepError as e:
            return loop.give_up(e, 0, 0.0)
        return loop.run()


class _ItemOutcomes(Outcomes):
    """An item's: no event before each attempt, its completion handed to `Progress` (no event
    either), a retry, a cancel or its final failure journaled with its cursor and batch."""

    __slots__ = ()

    def completion(self, a: Attempts, attempt: int, started: float, result: Any) -> Journaled:
        keep = a.keep
        if keep is not None and isinstance(result, dict):
            result = {k: result[k] for k in keep if k in result}
        progress = a.owner.progress
        if progress.keep_results:
            check_result_size(result, "the compensation")
        progress.completed(a.item_index, a.cursor, result)
        return None

    def recorded(self, a: Attempts, seq: int) -> None:
        return None

    def retry(
        self,
        a: Attempts,
        attempt: int,
        started: float,
        exc: StepError,
        delay: float,
        max_attempts: int,
    ) -> tuple[str, dict[str, Any]]:
        ctx = a.ctx
        fields = ctx.where(a.nid, a.item_index)
        fields.update(
            cursor=ctx.redact(a.cursor),
            attempt=attempt,
            max_attempts=max_attempts,
            delay_ms=int(delay * 1000),
            error=ctx.redact(error_dict(exc)),
        )
        return "step_retrying", fields

    def failure(
        self, a: Attempts, exc: StepError, attempt: int, started: float
    ) -> tuple[str, dict[str, Any]]:
        ctx = a.ctx
        fields = ctx.where(a.nid, a.item_index)
        fields.update(
            cursor=ctx.redact(a.cursor),
            batch=a.batch,
            attempt=attempt,
            duration_ms=ctx.ms(started) if started else 0,
            error=ctx.redact(error_dict(exc)),
            final=True,
        )
        return "step_failed", fields

    def failure_recorded(self, a: Attempts, seq: int, exc: StepError, attempt: int) -> NoReturn:
        """Failed for good: undone too with `on: attempted`, in the report, counted; raises
        ItemFailed for the scheduler."""
        ctx, nid, i = a.ctx, a.nid, a.item_index
        err = ctx.redact(error_dict(exc))
        if attempt:
            ctx.undo_attempted(nid, i, seq, err, a.subject)
        info = ctx.error_at(nid, err, attempt, i)
        ctx.errors.append({**info, "phase": a.owner.phase})
        a.owner.progress.failed_one()
        raise ItemFailed(info, a.batch, a.cursor)

    def cancellation(self, a: Attempts, attempt: int, started: float) -> Journaled:
        ctx = a.ctx
        fields = ctx.where(a.nid, a.item_index)
        fields.update(
            cursor=ctx.redact(a.cursor),
            batch=a.batch,
            attempt=attempt,
            duration_ms=ctx.ms(started),
            error=cancelled_error(),
            final=True,
            cancelled=True,
        )
        return "step_failed", fields

    def cancel_recorded(self, a: Attempts, seq: int) -> None:
        a.ctx.undo_attempted(a.nid, a.item_index, seq, cancelled_error(), a.subject)


_ITEM = _ItemOutcomes()
