"""Stuck runs: unfinished runs that nothing moves, and why (`sagac runs --status stuck`).

A run is stuck when no unexpired lease covers it (an expired one names the worker that died
holding it) and it has not moved for longer than a lease's time to live: a `queued`, `running`
or `interrupted` run with no event for that long (for a queued run, since it was submitted),
or a run waiting for a person whose wake time (`RunRecord.meta["wake_at"]`: a decision, a
cancel request or a passed deadline made it runnable) is that old. Its worker died and no live
worker took it over, or no worker runs at all. A waiting run with no wake time waits for a
person: not stuck. This module only reads the store.
"""

from __future__ import annotations

import time
from typing import Any

from .clock import parse_rfc3339
from .leases import LEASE_TTL
from .store.base import RunRecord, Store

UNFINISHED = ("queued", "running", "interrupted")


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"


async def stuck_runs(
    store: Store, lease_ttl: float = LEASE_TTL, *, limit: int = 1000
) -> list[tuple[RunRecord, str]]:
    """(run, why) of each stuck run, newest first; only runs without a lease are read beyond
    their row (their last event)."""
    now = time.time()
    alive = {w.worker_id for w in await store.workers(lease_ttl)}
    workers = f"{len(alive)} worker{'s' if len(alive) != 1 else ''} alive"
    out: list[tuple[RunRecord, str]] = []
    for status in (*UNFINISHED, "waiting_approval", "waiting"):
        parked = status in ("waiting_approval", "waiting")
        for record in await store.list_runs(status=status, limit=limit):
            wake: float | None = record.meta.get("wake_at")
            if parked and (wake is None or now - wake <= lease_ttl):
                continue  # waits for a person, or woke too recently for a worker to be late
            lease = await store.get_lease(record.run_id, expired=True)
            if lease is not None and lease[1] > now:
                continue
            last = await _last_event(store, record)
            if wake is not None and parked:
                since, what = wake, _woken_by(record, last)
            elif last is None:
                since, what = parse_rfc3339(record.created_at), status
            else:
                since, what = parse_rfc3339(last["at"]), f"{status}, last event {last['type']}"
            if now - since <= lease_ttl:
                continue
            why = f"{what} {_ago(now - since)} ago; "
            if lease is None:
                why += f"no lease; {workers}"
            else:
                owner = lease[0] + ("" if lease[0] in alive else " (no longer alive)")
                why += f"lease of {owner} expired {_ago(now - lease[1])} ago; {workers}"
            out.append((record, why))
    out.sort(key=lambda pair: pair[0].created_at, reverse=True)
    return out[:limit]


def _woken_by(record: RunRecord, last: dict[str, Any] | None) -> str:
    """What made a waiting run runnable: a cancel request, a decision (its last event), or
    else the deadline of a gate passing (`waiting`: a due time, a signal or a callback)."""
    if record.meta.get("cancel_requested_at"):
        return f"{record.status}, cancel requested"
    if last is not None and last["type"] == "approval_decided":
        return f"waiting_approval, gate {last.get('step')} decided"
    if record.status == "waiting":
        return "waiting, woken (a due time, a signal or a callback)"
    return "waiting_approval, a gate's deadline passed"


async def _last_event(store: Store, record: RunRecord) -> dict[str, Any] | None:
    if record.status == "queued":
        return None
    events = await store.load_events(record.run_id)
    return events[-1] if events else None
