"""Events: the journal of a run and its live feed, one ordered stream.

Every state change of a run is one event (a plain dict): written to the store first (durable),
then handed to the `on_event` callback. Each event has `type`, `run_id`, `seq` (1, 2, ... per
run, gap-free) and `at` (RFC 3339 UTC); the other fields depend on the type (`EVENT_FIELDS`).
What goes into an event has been redacted by the caller: this module never sees a secret.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from weakref import WeakKeyDictionary

from .clock import Clock, rfc3339
from .store.base import Event, Store

EventCallback = Callable[[Event], Awaitable[None] | None]

# Each event type and the fields it carries beyond type, run_id, seq and at (optional ones in
# brackets). `docs/runtime.md` documents the same table.
EVENT_FIELDS: dict[str, str] = {
    "saga_started": "saga, version, definition_hash, input, [resumed], [simulate], [fail]",
    "saga_resumed": "from_seq, active_ms, [ended_processes]",
    "saga_interrupted": "signal",
    "process_started": "step, attempt, pgid, host, boot, start, [branch], [item_index],"
    " [compensation]",
    "step_started": "step, attempt, idempotency_key, [branch], [item_index], [kind]",
    "step_retrying": "step, attempt, max_attempts, delay_ms, error, [branch], [item_index],"
    " [cursor]",
    "step_completed": "step, attempt, duration_ms, result, [branch], [item_index]",
    "step_failed": "step, attempt, duration_ms, error, final, [branch], [item_index], [cursor],"
    " [batch]",
    "step_skipped": "step, [branch]",
    "group_started": "step, mode, branches, [branch]",
    "group_completed": "step, result, [winner], duration_ms, [branch]",
    "approval_requested": "step, key, message, approvers, deadline, [branch]",
    "approval_decided": "step, approved, by, at, comment, value",
    # Parking nodes (docs/language.md, "Waiting, calling and branching"): each opening event
    # gives the store a parked row (`Store.parked`) that `wait_ended` closes.
    "sleep_started": "step, until, [branch]",
    "wait_started": "step, signal, deadline, [branch]",
    "callback_issued": "step, attempt, token_sha256, deadline, [branch]",
    # a callback step's action returned: the attempt waits for its callback (never called again)
    "callback_waiting": "step, attempt, [branch]",
    # reason: due, signal, callback, timeout or cancelled
    "wait_ended": "step, reason, [attempt], [signal_id], [branch]",
    "case_chosen": "step, case, [branch]",
    "call_started": "step, child_run_id, saga, [branch]",
    "batch_progress": "step, batch, total_batches, processed, total, percent, failed, rate,"
    " [completed], [cursors], [results]",  # the items' checkpoint: docs/batches.md
    "saga_compensating": "failure",
    "cancel_requested": "by, reason",
    "compensation_started": "step, attempt, idempotency_key, [item_index]",
    "compensation_completed": "step, attempt, duration_ms, [item_index]",
    "compensation_failed": "step, attempt, duration_ms, error, final, [delay_ms], [item_index]",
    "saga_waiting": "status, waiting, active_ms, [wake_at]",
    "saga_completed": "status, output, duration_ms",
    "saga_failed": "status, failure, needs_attention, duration_ms",
}


# Events that need not be durable before the run goes on: no action waits for them. Each is
# committed with the next event that must be (the `step_started` of the next step, before its
# action runs; the saga's last event), or on the next turn of the loop when nothing else
# comes, so a sequential saga costs one commit per step instead of two. A crash in between
# loses at most a completion, and that step is re-run with its journaled key (at-least-once).
DEFERRABLE = frozenset(
    {
        "saga_started",
        "step_completed",
        "step_skipped",
        "step_retrying",
        "group_started",
        "group_completed",
        "batch_progress",
    }
)


# Per loop, the journals whose deferred events are due at the loop's next turn: one callback a
# turn flushes them all (with many concurrent runs, each turn moves many; one callback each
# would cost as much as their commit's share).
_DUE: WeakKeyDictionary[asyncio.AbstractEventLoop, list[Journal]] = WeakKeyDictionary()


def _flush_later(journal: Journal) -> None:
    loop = asyncio.get_running_loop()
    due = _DUE.get(loop)
    if due is None:
        due = _DUE[loop] = []
    if not due:
        loop.call_soon(_flush_due, due)
    due.append(journal)


def _flush_due(due: list[Journal]) -> None:
    journals = due[:]
    due.clear()
    for journal in journals:
        journal._flush()


class Journal:
    """Numbers, stamps, stores and publishes the events of one run.

    With a group-committing store (`store.group_commit`), DEFERRABLE events wait to share the
    next commit. Every event is published only after it is durable, and in `seq` order: the
    branches of a run commit concurrently and their commits land in any order, so what has
    landed waits in a small reorder buffer (`_ready`) until the events before it are published.
    An event whose write did not return (its emitter was cancelled, or the store failed) is
    never published; the events after it are."""

    __slots__ = (
        "_callback",
        "_defer",
        "_draining",
        "_error",
        "_next",
        "_pending",
        "_ready",
        "_scheduled",
        "_waiters",
        "clock",
        "run_id",
        "seq",
        "store",
    )

    def __init__(
        self,
        store: Store,
        run_id: str,
        clock: Clock,
        on_event: EventCallback | None = None,
        seq: int = 0,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.clock = clock
        self.seq = seq
        self._callback = on_event
        self._defer = store.group_commit
        self._pending: list[Event] = []
        self._scheduled = False
        self._error: BaseException | None = None
        self._next = seq + 1  # the seq to publish next
        self._ready: dict[int, Event | None] = {}  # landed, by seq; None: never to be published
        self._draining: asyncio.Future[None] | None = None  # awaiting an async on_event
        self._waiters: list[asyncio.Future[None]] = []  # emits waiting for earlier events

    async def emit(
        self, type_: str, fields: dict[str, Any], report: dict[str, Any] | None = None
    ) -> Event:
        """Record one event (durable when this returns, unless DEFERRABLE), then publish it;
        returns it. The run's last event carries its `report`, stored in the same write."""
        self.seq += 1
        event: Event = {
            "type": type_,
            "run_id": self.run_id,
            "seq": self.seq,
            "at": rfc3339(self.clock.now()),
            **fields,
        }
        if not self._defer:
            alone = [event]
            try:
                await self.store.append(self.run_id, alone, report)
            except BaseException:
                self._settle(alone, skip=True)
                raise
            if self._callback is not None:
                await self._publish(alone)
            return event
        if self._error is not None:
            raise self._error
        self._pending.append(event)
        if type_ in DEFERRABLE:
            if not self._scheduled:
                self._scheduled = True
                _flush_later(self)
            return event
        batch, self._pending = self._pending, []
        committed = self.store.submit_append(self.run_id, batch, report)
        if self._callback is None:
            await committed
            return event
        try:
            await committed
        except BaseException:
            self._settle(batch, skip=True)
            raise
        await self._publish(batch)
        return event

    def _flush(self) -> None:
        """Commit deferred events nobody else carried along (enqueued now, in order)."""
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        committed = self.store.submit_append(self.run_id, batch)
        if committed.done():  # committed inline: publish now, ahead of anything after it
            self._landed(batch, committed)
        else:
            committed.add_done_callback(functools.partial(self._landed, batch))

    def _landed(self, batch: list[Event], committed: asyncio.Future[None]) -> None:
        """A deferred batch's commit ended: publish it, or record why not (the run's next
        emit raises it)."""
        error = None if committed.cancelled() else committed.exception()
        if committed.cancelled() or error is not None:
            self._error = error or asyncio.CancelledError()
            self._settle(batch, skip=True)
            return
        try:
            self._settle(batch)
        except Exception as e:  # an on_event that failed: surfaces at the run's next emit
            self._error = e

    async def _publish(self, batch: Sequence[Event]) -> None:
        """Publish `batch` (durable now) once every event before it is published or settled."""
        drainer = self._settle(batch)
        if drainer is not None:
            await asyncio.shield(drainer)  # an async on_event is awaited, as before
        last = batch[-1]["seq"]
        while self._next <= last:  # an earlier batch has not landed yet (another branch's)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _settle(self, batch: Sequence[Event], skip: bool = False) -> asyncio.Future[None] | None:
        """Put `batch` in the reorder buffer (`skip`: as never to be published) and publish
        what is next in order; the future of the rest when an async on_event holds it up."""
        if self._callback is None:
            return None
        ready = self._ready
        for event in batch:
            ready[event["seq"]] = None if skip else event
        if self._draining is not None:
            return self._draining
        out = self._drain()
        if out is None:
            return None
        self._draining = asyncio.ensure_future(self._drain_after(out))
        return self._draining

    def _drain(self) -> Awaitable[Any] | None:
        """Publish buffered events in `seq` order while they are next; returns what an async
        on_event returned (the caller awaits it before going on)."""
        ready, callback = self._ready, self._callback
        assert callback is not None
        try:
            while self._next in ready:
                event = ready.pop(self._next)
                self._next += 1
                if event is not None:
                    out = callback(event)
                    if inspect.isawaitable(out):
                        return out
            return None
        finally:
            if self._waiters:
                waiters, self._waiters = self._waiters, []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    async def _drain_after(self, out: Awaitable[Any] | None) -> None:
        try:
            while out is not None:
                await out
                out = self._drain()
        except Exception as e:  # an on_event that failed: surfaces at the run's next emit
            self._error = e
        finally:
            self._draining = None
