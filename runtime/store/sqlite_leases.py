"""Who may write a run's journal: the lease check inside a SQLite transaction.

A run is driven by one process at a time, the holder of its row in `leases`; a journal append
from outside that process (a decision, a timeout) must not number events while another live
owner does. This module reads and writes `leases` inside the caller's transaction only (the
store decides when to take, renew or release a lease); it never begins or commits one.
"""

from __future__ import annotations

import sqlite3

from sagac.runtime.clock import rfc3339

from sagac.errors import LeaseHeld

from .base import owner_alive


def check_lease(c: sqlite3.Connection, run_id: str, owner: str | None, now: float) -> None:
    """Raise LeaseHeld when a live owner other than `owner` holds an unexpired lease."""
    row = c.execute("SELECT owner, expires_at FROM leases WHERE run_id = ?", (run_id,)).fetchone()
    if row is not None and row[0] != owner and row[1] > now and owner_alive(row[0]):
        raise LeaseHeld(run_id, row[0], row[1])


def take_lease(c: sqlite3.Connection, run_id: str, owner: str, now: float, ttl: float) -> float:
    """Write `owner`'s lease of `run_id` until `now + ttl` (the caller checked it may); returns
    the expiry."""
    c.execute(
        "INSERT INTO leases (run_id, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner,"
        " acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
        (run_id, owner, rfc3339(now), now + ttl),
    )
    return now + ttl
