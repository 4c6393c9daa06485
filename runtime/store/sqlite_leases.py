"""Who may write a run's journal: the lease check and whether a lease's owner is still alive.

A run is driven by one process at a time, the holder of its row in `leases`; a journal append
from outside that process (a decision, a timeout) must not number events while another live
owner does. This module only reads `leases` inside the caller's transaction: it never takes,
renews or releases a lease (`SqliteStore` does), and never signals a process (`os.kill(pid, 0)`
only asks whether it exists).
"""

from __future__ import annotations

import os
import socket
import sqlite3

from sagac.errors import LeaseHeld


def check_lease(c: sqlite3.Connection, run_id: str, owner: str | None, now: float) -> None:
    """Raise LeaseHeld when a live owner other than `owner` holds an unexpired lease."""
    row = c.execute("SELECT owner, expires_at FROM leases WHERE run_id = ?", (run_id,)).fetchone()
    if row is not None and row[0] != owner and row[1] > now and owner_alive(row[0]):
        raise LeaseHeld(run_id, row[0], row[1])


def owner_alive(owner: str) -> bool:
    """Whether a lease's owner (`user@host:pid/nonce`, see `leases.owner_id`) may still be
    alive: False only for a process of this host that no longer exists, so a crashed run can
    be resumed at once instead of after its lease expires. A reused pid errs on the safe side
    (the lease is honoured until it expires)."""
    _, _, where = owner.rpartition("@")
    host, _, rest = where.partition(":")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
