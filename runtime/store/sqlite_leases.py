"""Who may write a run's journal: the lease check inside a SQLite transaction.

A run is driven by one process at a time, the holder of its row in `leases`; a journal append
from outside that process (a decision, a timeout) must not number events while another live
owner does. This module only reads `leases` inside the caller's transaction: it never takes,
renews or releases a lease (`SqliteStore` does).
"""

from __future__ import annotations

import sqlite3

from sagac.errors import LeaseHeld

from .base import owner_alive


def check_lease(c: sqlite3.Connection, run_id: str, owner: str | None, now: float) -> None:
    """Raise LeaseHeld when a live owner other than `owner` holds an unexpired lease."""
    row = c.execute("SELECT owner, expires_at FROM leases WHERE run_id = ?", (run_id,)).fetchone()
    if row is not None and row[0] != owner and row[1] > now and owner_alive(row[0]):
        raise LeaseHeld(run_id, row[0], row[1])
