"""The journal file's rows as Python values: JSON columns, run records, approval requests and
audit entries.

What the store's operations and the journal appends share to read a row back or write an audit
entry, as plain functions on a connection inside the caller's transaction. This module never
opens, begins or commits a transaction, and never sees a secret: what it is given has been
redacted by the executor.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from sagac.runtime import codec
from sagac.runtime.clock import rfc3339

from sagac.errors import RunNotFound

from .base import AuditEntry, RunRecord, os_user

dumps = codec.dumps


def loads(text: str | None) -> Any:
    return None if text is None else codec.loads(text)


RUN_COLUMNS = (
    "run_id, saga, version, definition_hash, file, input, status, created_at, updated_at,"
    " report, meta, cancel_requested_at, cancel_by, cancel_reason,"
    " (SELECT key FROM idempotency_keys k WHERE k.run_id = runs.run_id)"
)


def run_record(r: Sequence[Any]) -> RunRecord:
    """A `RunRecord` from a row of `RUN_COLUMNS`."""
    meta = loads(r[10]) or {}
    for name, value in zip(
        ("cancel_requested_at", "cancel_by", "cancel_reason", "idempotency_key"),
        r[11:],
        strict=True,
    ):
        if value is not None:
            meta[name] = value
    return RunRecord(
        run_id=r[0],
        saga=r[1],
        version=r[2],
        definition_hash=r[3],
        file=r[4],
        input=loads(r[5]),
        status=r[6],
        created_at=r[7],
        updated_at=r[8],
        report=loads(r[9]),
        meta=meta,
    )


def get_run_sync(c: sqlite3.Connection, run_id: str) -> RunRecord:
    row = c.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(f"no run {run_id!r} in this store")
    return run_record(row)


APPROVAL_COLUMNS = (
    "run_id, gate, key, message, approvers, context, deadline, deadline_epoch, on_timeout,"
    " token_sha256, definition_hash, status, requested_at, requested_seq, decided_by,"
    " decided_at, comment, value, decision_code"
)


def approval_row(r: Sequence[Any]) -> dict[str, Any]:
    """An approval request (and its decision) from a row of `APPROVAL_COLUMNS`."""
    names = [n.strip() for n in APPROVAL_COLUMNS.split(",")]
    out = dict(zip(names, r, strict=True))
    out["approvers"] = loads(out["approvers"]) or []
    out["context"] = loads(out["context"])
    out["value"] = loads(out["value"])
    return out


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
    """Write `entry`, stamped with the time and the operating-system user of this process."""
    c.execute(
        "INSERT INTO audit (at, run_id, gate, actor, action, outcome, code, message, detail,"
        " os_user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            rfc3339(time.time()),
            entry.run_id,
            entry.gate,
            entry.actor,
            entry.action,
            entry.outcome,
            entry.code,
            entry.message,
            None if entry.detail is None else dumps(entry.detail),
            os_user(),
        ),
    )
