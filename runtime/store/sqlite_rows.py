"""The journal file's rows read and written on a SQLite connection: a run, an approval request,
approver groups and audit entries (what a row means is `rows.py`'s, shared with PostgreSQL).

What the store's operations and the journal appends share to read a row back or write an audit
entry, as plain functions on a connection inside the caller's transaction. This module never
opens, begins or commits a transaction, and never sees a secret: what it is given has been
redacted by the executor.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sagac.errors import RunNotFound

from .base import AuditEntry, RunRecord
from .rows import APPROVAL_COLUMNS, RUN_COLUMNS, approval_row, audit_values, run_record


def get_run_sync(c: sqlite3.Connection, run_id: str, columns: str = RUN_COLUMNS) -> RunRecord:
    """The run's record (`columns`: a read-only store's on an older file); RunNotFound."""
    row = c.execute(f"SELECT {columns} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(f"no run {run_id!r} in this store")
    return run_record(row)


def get_approval(c: sqlite3.Connection, run_id: str, gate: str) -> dict[str, Any] | None:
    row = c.execute(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE run_id = ? AND gate = ?",
        (run_id, gate),
    ).fetchone()
    return approval_row(row) if row else None


def group_members(c: sqlite3.Connection, name: str | None = None) -> dict[str, list[str]]:
    """Approver groups and their members, sorted (one group when `name` is given)."""
    sql = "SELECT name, member FROM approver_groups"
    args: tuple[str, ...] = ()
    if name is not None:
        sql, args = sql + " WHERE name = ?", (name,)
    out: dict[str, list[str]] = {}
    for group, member in c.execute(sql + " ORDER BY name, member", args):
        out.setdefault(group, []).append(member)
    return out


def add_audit(c: sqlite3.Connection, entry: AuditEntry) -> None:
    """Write `entry` (`rows.audit_values`)."""
    c.execute(
        "INSERT INTO audit (at, run_id, gate, actor, action, outcome, code, message, detail,"
        " os_user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        audit_values(entry),
    )
