"""Journal rows as Python values, the same for every SQL store: JSON columns, run records,
approval requests and decisions, audit entries, and WHERE clauses of equalities.

SQLite and PostgreSQL keep the same tables with the same columns; what a row means is decided
here once, so that both stores read and write a run, an approval or an audit entry alike (only
their SQL text differs: `?` or `%s` placeholders, upsert syntax). Plain functions on values:
this module never talks to a database and never sees a secret (what it is given has been
redacted by the executor).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sagac.runtime import codec
from sagac.runtime.clock import parse_rfc3339, rfc3339

from .base import Approval, AuditEntry, Event, RunRecord, os_user

dumps = codec.dumps


def loads(text: str | None) -> Any:
    return None if text is None else codec.loads(text)


RUN_COLUMNS = (
    "run_id, saga, version, definition_hash, file, input, status, created_at, updated_at,"
    " report, meta, cancel_requested_at, cancel_by, cancel_reason,"
    " (SELECT key FROM idempotency_keys k WHERE k.run_id = runs.run_id LIMIT 1)"
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


APPROVAL_COLUMNS = (
    "run_id, gate, key, message, approvers, context, deadline, deadline_epoch, on_timeout,"
    " token_sha256, definition_hash, status, requested_at, requested_seq, decided_by,"
    " decided_at, comment, value, decision_code"
)
_APPROVAL_NAMES = tuple(n.strip() for n in APPROVAL_COLUMNS.split(","))


def approval_row(r: Sequence[Any]) -> Approval:
    """An approval request (and its decision) from a row of `APPROVAL_COLUMNS`."""
    out = dict(zip(_APPROVAL_NAMES, r, strict=True))
    out["approvers"] = loads(out["approvers"]) or []
    out["context"] = loads(out["context"])
    out["value"] = loads(out["value"])
    return out


def approval_request_values(run_id: str, e: Event) -> tuple[Any, ...]:
    """The parameters of an `approval_requested` event's approvals row: run_id, gate, key,
    message, approvers, context, deadline, deadline_epoch, on_timeout, token_sha256, then
    definition_hash, run_id (for the run's own hash when the event has none), requested_at and
    requested_seq."""
    deadline = e.get("deadline")
    context = e.get("context")
    return (
        run_id,
        e["step"],
        e.get("key"),
        e.get("message"),
        dumps(e.get("approvers", [])),
        dumps(context) if context is not None else None,
        deadline,
        parse_rfc3339(deadline) if deadline else None,
        e.get("on_timeout"),
        e.get("token_sha256"),
        e.get("definition_hash"),
        run_id,
        e["at"],
        e["seq"],
    )


def approval_decision_values(run_id: str, e: Event) -> tuple[Any, ...]:
    """The parameters of an `approval_decided` event's update: status, decided_by, decided_at,
    comment, value, decision_code, then the row's run_id and gate."""
    if e.get("approved"):
        status = "approved"
    elif e.get("timed_out"):
        status = "timed_out"
    else:
        status = "rejected"
    value = e.get("value")
    return (
        status,
        e.get("by"),
        e.get("decided_at", e["at"]),
        e.get("comment"),
        dumps(value) if value is not None else None,
        e.get("code"),
        run_id,
        e["step"],
    )


def audit_values(entry: AuditEntry) -> tuple[Any, ...]:
    """An audit row's parameters (at, run_id, gate, actor, action, outcome, code, message,
    detail, os_user), stamped with the time and the operating-system user of this process."""
    return (
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
    )


def where_clause(placeholder: str, **filters: Any) -> tuple[str, list[Any]]:
    """A WHERE clause testing each column given a value (not None) for equality, with the
    driver's `placeholder`, and its arguments; empty when no value is given."""
    given = [(column, value) for column, value in filters.items() if value is not None]
    if not given:
        return "", []
    clause = " AND ".join(f"{column} = {placeholder}" for column, _ in given)
    return " WHERE " + clause, [v for _, v in given]
