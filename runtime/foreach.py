"""foreach: one action per item, in batches (spec 2.4).

Items are rendered once from the `items` template; batch `b` holds items `[b*size, (b+1)*size)`
and runs them with at most `concurrency` in flight (that many worker tasks pull indexes from
the batch, so memory grows with the batch, never with the item count), then waits `delay`
before the next batch. Each item is a step attempt like any other (retries, timeouts,
idempotency key rendered per item, journaled with `item_index`); each completed item is one
compensation entry in the run's global LIFO order. `on_error: stop` cancels the batch's other
in-flight items and fails the node with BATCH_ITEM_FAILED (item_index, batch_number, cause);
`continue` attempts every item and fails the node at the end when any item failed, with every
item's error in the report. After each batch a `batch_progress` event is journaled.

The node's result is a summary `{total, succeeded, failed}` (item results are journaled, and
kept for compensation, but not collected into a list). On resume, items the journal shows as
completed are not called again; checkpoints and a high-speed path build on `batch_progress`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir
from sagac.runtime.errors import StepError

from .executor import NodeFailed, _Failed, error_dict

if TYPE_CHECKING:
    from .executor import Executor


class _ItemFailed(Exception):
    def __init__(self, error: dict[str, Any], batch: int) -> None:
        super().__init__(error["code"])
        self.error = error
        self.batch = batch


def item_at(ex: Executor, node: ir.ForeachNode, index: int) -> Any:
    """The item at `index` (rendered again from the run's scope when this process has not)."""
    items = ex.items.get(node.id)
    if items is None:
        items = ex.items[node.id] = ex.engine.render(node.items, ex.scope)
    return items[index]


async def run_foreach(ex: Executor, node: ir.ForeachNode, scope: Mapping[str, Any]) -> Any:
    nid = node.id
    t0 = ex.clock.monotonic()
    where = ex._where(nid)
    try:
        items = ex.engine.render(node.items, scope)
        if not isinstance(items, list):
            raise StepError(
                "TEMPLATE_ERROR",
                f"{node.items}: `items` must give a list, not {type(items).__name__}",
            )
    except StepError as e:
        await ex._fail_node(nid, e, 0, t0)
    ex.items[nid] = items
    total = len(items)
    size = max(node.batch.size, 1)
    total_batches = (total + size - 1) // size
    await ex.emit(
        "step_started",
        {
            **where,
            "attempt": 1,
            "kind": "foreach",
            "total": total,
            "total_batches": total_batches,
            "idempotency_key": None,
        },
    )
    spec = ex.action_of(nid, node.action.spec)
    undo = node.compensate is not None and ex.prep.phase[nid] == "steps"
    journal = ex.state.steps if ex.state is not None else {}
    processed = failed = 0
    first_failure: dict[str, Any] | None = None

    async def run_item(i: int, batch: int) -> None:
        item = items[i]
        rec = journal.get((nid, i))
        if rec is not None and rec.status == "completed":
            return
        if rec is not None and rec.status == "failed":
            raise _ItemFailed(ex._error_at(nid, rec.error or {}, rec.attempt, i), batch)
        iscope = {**scope, node.as_: item}
        try:
            args = ex.render_args(node.with_, iscope)
            if rec is not None and rec.idempotency_key is not None:
                key: str | None = rec.idempotency_key
            else:
                key = ex.render_key(node.idempotency_key, iscope)
        except StepError as e:
            try:
                await ex._fail_node(nid, e, 0, 0.0, item_index=i)
            except NodeFailed as nf:
                raise _ItemFailed(nf.error, batch) from None
        try:
            await ex.attempts(
                nid,
                i,
                spec,
                args,
                iscope,
                key,
                node.retry,
                node.timeout,
                node.deadline,
                node.keep,
                start_attempt=rec.attempt if rec is not None else 0,
                undo=undo,
                item=item,
            )
        except _Failed as f:
            try:
                await ex._fail_node(
                    nid, f.exc, f.attempt, f.started, item_index=i, attempted=True, item=item
                )
            except NodeFailed as nf:
                raise _ItemFailed(nf.error, batch) from None

    async def worker(indexes: Iterator[int], batch: int, errors: list[_ItemFailed]) -> None:
        for i in indexes:
            if errors and node.on_error == "stop":
                return  # another worker failed: start nothing new
            try:
                await run_item(i, batch)
            except _ItemFailed as f:
                errors.append(f)
                if node.on_error == "stop":
                    raise

    for b in range(total_batches):
        if b and node.batch.delay > 0:
            await ex.clock.sleep(node.batch.delay)
        started = ex.clock.monotonic()
        start = b * size
        stop = min(start + size, total)
        indexes = iter(range(start, stop))
        errors: list[_ItemFailed] = []
        n_workers = min(max(node.batch.concurrency, 1), stop - start)
        if n_workers == 1:
            with contextlib.suppress(_ItemFailed):
                await worker(indexes, b + 1, errors)
        else:
            tasks = [asyncio.create_task(worker(indexes, b + 1, errors)) for _ in range(n_workers)]
            try:
                _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                await ex.settle(list(pending))
            except BaseException:
                await ex.settle(tasks)
                raise
        processed += stop - start
        failed += len(errors)
        elapsed = max(ex.clock.monotonic() - started, 1e-9)
        await ex.emit(
            "batch_progress",
            {
                "step": nid,
                "batch": b + 1,
                "total_batches": total_batches,
                "processed": processed,
                "total": total,
                "percent": round(100.0 * processed / total, 1) if total else 100.0,
                "failed": failed,
                "rate": round((stop - start) / elapsed, 1),
            },
        )
        if errors and first_failure is None:
            first = errors[0]
            first_failure = {**first.error, "batch_number": first.batch}
        if errors and node.on_error == "stop":
            break
    if first_failure is not None:
        cause = {k: first_failure[k] for k in ("code", "message", "detail") if first_failure[k]}
        if node.on_error == "stop":
            exc = StepError(
                "BATCH_ITEM_FAILED",
                f"item {first_failure['item_index']} (batch {first_failure['batch_number']}) "
                f"failed: {cause['code']}: {first_failure['message']}",
                {
                    "item_index": first_failure["item_index"],
                    "batch_number": first_failure["batch_number"],
                    "cause": cause,
                },
            )
            index = first_failure["item_index"]
        else:
            exc = StepError(
                "BATCH_ITEM_FAILED",
                f"{failed} of {total} items failed (first: item {first_failure['item_index']}: "
                f"{cause['code']})",
                {
                    "failed": failed,
                    "total": total,
                    "item_index": first_failure["item_index"],
                    "batch_number": first_failure["batch_number"],
                    "cause": cause,
                },
            )
            index = None
        err = ex.redact(error_dict(exc))
        await ex.emit(
            "step_failed",
            {
                **where,
                "attempt": 1,
                "duration_ms": ex.ms(t0),
                "error": err,
                "final": True,
                "propagated": True,
            },
        )
        raise NodeFailed(ex._error_at(nid, err, first_failure.get("attempts", 0), index))
    result = {"total": total, "succeeded": total - failed, "failed": failed}
    await ex.emit(
        "step_completed", {**where, "attempt": 1, "duration_ms": ex.ms(t0), "result": result}
    )
    return result
