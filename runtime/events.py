"""Events: the journal of a run and its live feed, one ordered stream.

Every state change of a run is one event (a plain dict): written to the store first (durable),
then handed to the `on_event` callback. Each event has `type`, `run_id`, `seq` (1, 2, ... per
run, gap-free) and `at` (RFC 3339 UTC); the other fields depend on the type (`EVENT_FIELDS`).
What goes into an event has been redacted by the caller: this module never sees a secret.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from .clock import Clock, rfc3339
from .store.base import Event, Store

EventCallback = Callable[[Event], Awaitable[None] | None]

# Each event type and the fields it carries beyond type, run_id, seq and at (optional ones in
# brackets). `docs/runtime.md` documents the same table.
EVENT_FIELDS: dict[str, str] = {
    "saga_started": "saga, version, definition_hash, input, [resumed]",
    "saga_resumed": "from_seq",
    "step_started": "step, attempt, idempotency_key, [branch], [item_index], [kind]",
    "step_retrying": "step, attempt, max_attempts, delay_ms, error, [branch], [item_index]",
    "step_completed": "step, attempt, duration_ms, result, [branch], [item_index]",
    "step_failed": "step, attempt, duration_ms, error, final, [branch], [item_index]",
    "step_skipped": "step, [branch]",
    "group_started": "step, mode, branches, [branch]",
    "group_completed": "step, result, [winner], duration_ms, [branch]",
    "approval_requested": "step, key, message, approvers, deadline, [branch]",
    "approval_decided": "step, approved, by, at, comment, value",
    "batch_progress": "step, batch, total_batches, processed, total, percent, failed, rate",
    "cancel_requested": "by, reason",
    "compensation_started": "step, attempt, idempotency_key, [item_index]",
    "compensation_completed": "step, attempt, duration_ms, [item_index]",
    "compensation_failed": "step, attempt, duration_ms, error, final, [delay_ms], [item_index]",
    "saga_waiting": "status, waiting",
    "saga_completed": "status, output, duration_ms",
    "saga_failed": "status, failure, needs_attention, duration_ms",
}


class Journal:
    """Numbers, stamps, stores and publishes the events of one run."""

    __slots__ = ("_callback", "_is_async", "clock", "run_id", "seq", "store")

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
        self._is_async = on_event is not None and inspect.iscoroutinefunction(on_event)

    async def emit(self, type_: str, fields: dict[str, Any]) -> Event:
        """Record one event (durable when this returns), then publish it; returns it."""
        self.seq += 1
        event: Event = {
            "type": type_,
            "run_id": self.run_id,
            "seq": self.seq,
            "at": rfc3339(self.clock.now()),
            **fields,
        }
        await self.store.append(self.run_id, (event,))
        if self._callback is not None:
            out = self._callback(event)
            if self._is_async or inspect.isawaitable(out):
                await out  # type: ignore[misc]
        return event
