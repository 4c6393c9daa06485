"""Appending to the journal: events as rows of `events`, and the same transaction's changes to
the materialised view (`steps`, `approvals`, the run's status) that those events imply.

An append is prepared on the caller's thread (`Prepared`: JSON encoded, statements built) so
that the writer thread, the bottleneck of group commit, only executes SQL; `apply_all` writes
many prepared appends, in order, as a few multi-row statements. `append_external` appends one
event from outside a running executor (an approval decision, a timeout). Everything here runs
inside the caller's transaction: this module never begins, commits or rolls back one, never
writes a row the journal's events do not imply (so replay and the view always agree), and never
sees a secret: what it is given has been redacted by the executor.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from sagac.runtime.clock import rfc3339
from sagac.runtime.errors import RunNotFound

from .base import Event
from .sqlite_leases import check_lease
from .sqlite_rows import dumps

_FINAL_STATUS = {"saga_completed", "saga_failed", "saga_waiting"}


def next_seq(c: sqlite3.Connection, run_id: str) -> int:
    row = c.execute("SELECT MAX(seq) FROM events WHERE run_id = ?", (run_id,)).fetchone()
    return int(row[0] or 0) + 1


def append_external(
    c: sqlite3.Connection, run_id: str, owner: str | None, type_: str, fields: dict[str, Any]
) -> Event:
    """Append one event from outside a running executor (a decision, a timeout): at the next
    seq, and only while no other live owner holds the run's lease (it would number its own)."""
    check_lease(c, run_id, owner, time.time())
    event: Event = {
        "type": type_,
        "run_id": run_id,
        "seq": next_seq(c, run_id),
        "at": rfc3339(time.time()),
    }
    event.update(fields)
    _append(c, run_id, (event,))
    return event


Statement = tuple[str, tuple[Any, ...]]


class Prepared:
    """An append made ready on the caller's thread (JSON encoded, statements built), so that
    the writer thread, the bottleneck of group commit, only executes SQL."""

    __slots__ = ("at", "rows", "run_id", "statements", "status")

    def __init__(self, run_id: str, events: Sequence[Event]) -> None:
        self.run_id = run_id
        self.rows = [
            (run_id, e["seq"], e["type"], e["at"], e.get("step"), dumps(e)) for e in events
        ]
        self.statements: list[Statement] = []
        self.status: str | None = None
        self.at = events[-1]["at"]
        for e in events:
            t = e["type"]
            builder = _MATERIALISE.get(t)
            if builder is not None:
                self.statements.extend(builder(run_id, e))
            if t in _FINAL_STATUS:
                self.status = e.get("status")
            elif t == "saga_resumed":
                self.status = "running"


def apply(c: sqlite3.Connection, p: Prepared, known: set[str] | None = None) -> None:
    """Write one prepared append."""
    apply_all(c, (p,), known)


def apply_all(
    c: sqlite3.Connection, appends: Sequence[Prepared], known: set[str] | None = None
) -> None:
    """Write prepared appends, in order, with as few statements as they allow: every event
    row in one multi-row INSERT, each run of adjacent step-state upserts in another. Events
    and steps are separate tables (no triggers), so only the order within each matters.
    A run's row changes only when its status does (then `updated_at` says when); `known`
    caches run ids seen to exist (runs are never deleted)."""
    for p in appends:
        if p.status is not None:
            cur = c.execute(
                "UPDATE runs SET updated_at = ?, status = ? WHERE run_id = ?",
                (p.at, p.status, p.run_id),
            )
            exists = cur.rowcount == 1
        elif known is not None and p.run_id in known:
            exists = True
        else:
            exists = c.execute("SELECT 1 FROM runs WHERE run_id = ?", (p.run_id,)).fetchone()
        if not exists:
            raise RunNotFound(f"no run {p.run_id!r} in this store")
        if known is not None:
            known.add(p.run_id)
    if len(appends) == 1:
        _execute_rows(c, _EVENT_ROWS, appends[0].rows)
    else:
        _execute_rows(c, _EVENT_ROWS, [row for p in appends for row in p.rows])
    rows: list[tuple[Any, ...]] = []  # adjacent step upserts, merged
    for p in appends:
        for sql, params in p.statements:
            if sql is _STEP_UPSERT:
                rows.append(params)
                continue
            if rows:
                _execute_rows(c, _STEP_ROWS, rows)
                rows = []
            c.execute(sql, params)
    if rows:
        _execute_rows(c, _STEP_ROWS, rows)


class _Rows:
    """An INSERT whose VALUES take many rows: its text for 1, 2, 4 ... 64 rows (few texts,
    so the connection's statement cache keeps them all; 64 rows stay under the 999 host
    parameters of old SQLite builds)."""

    __slots__ = ("texts",)

    def __init__(self, head: str, row: str, tail: str = "") -> None:
        self.texts = {k: head + ", ".join([row] * k) + tail for k in (1, 2, 4, 8, 16, 32, 64)}


def _execute_rows(c: sqlite3.Connection, form: _Rows, rows: Sequence[tuple[Any, ...]]) -> None:
    i, n = 0, len(rows)
    while i < n:
        k = min(64, 1 << ((n - i).bit_length() - 1))  # the largest size that fits
        if k == 1:
            c.execute(form.texts[1], rows[i])
        else:
            c.execute(form.texts[k], [v for row in rows[i : i + k] for v in row])
        i += k


_EVENT_ROWS = _Rows(
    "INSERT INTO events (run_id, seq, type, at, step, body) VALUES ", "(?, ?, ?, ?, ?, ?)"
)


def _append(c: sqlite3.Connection, run_id: str, events: Sequence[Event]) -> None:
    apply(c, Prepared(run_id, events))


# Each journal event type that changes the materialised view: the statements that apply it.

# Both ways a journal event changes a step's row, as one upsert (so that a batch's step changes
# are one statement): `started` sets the attempt and key and clears the error; an end (status
# completed, failed, cancelled or skipped) sets the result, error and ended_seq and keeps the
# highest attempt. Rows are (run_id, step, item_index, status, attempt, idempotency_key,
# result, error, started_seq, ended_seq).
_STEP_ROWS = _Rows(
    "INSERT INTO steps (run_id, step, item_index, status, attempt, idempotency_key, result,"
    " error, started_seq, ended_seq) VALUES ",
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    " ON CONFLICT (run_id, step, item_index) DO UPDATE SET status = excluded.status,"
    " attempt = CASE WHEN excluded.status = 'started' THEN excluded.attempt"
    " ELSE MAX(attempt, excluded.attempt) END,"
    " idempotency_key = CASE WHEN excluded.status = 'started' THEN excluded.idempotency_key"
    " ELSE idempotency_key END,"
    " result = CASE WHEN excluded.status = 'started' THEN result ELSE excluded.result END,"
    " error = excluded.error,"
    " ended_seq = CASE WHEN excluded.status = 'started' THEN ended_seq"
    " ELSE excluded.ended_seq END",
)
_STEP_UPSERT = _STEP_ROWS.texts[1]


def _step_started(run_id: str, e: Event) -> list[Statement]:
    key = e.get("idempotency_key")
    attempt = e.get("attempt", 0)
    args = (run_id, e["step"], _idx(e), "started", attempt, key, None, None, e["seq"], None)
    return [(_STEP_UPSERT, args)]


def _step_ended(status: str) -> Callable[[str, Event], list[Statement]]:
    def build(run_id: str, e: Event) -> list[Statement]:
        final = "cancelled" if status == "failed" and e.get("cancelled") else status
        result = dumps(e["result"]) if "result" in e else None
        error = dumps(e["error"]) if e.get("error") is not None else None
        attempt = e.get("attempt", 0)
        args = (run_id, e["step"], _idx(e), final, attempt, None, result, error, None, e["seq"])
        return [(_STEP_UPSERT, args)]

    return build


def _compensation(status: str) -> Callable[[str, Event], list[Statement]]:
    def build(run_id: str, e: Event) -> list[Statement]:
        if status == "failed" and not e.get("final"):
            return []  # a retry: still in progress
        return [
            (
                "UPDATE steps SET comp_status = ?, comp_attempt = ?"
                " WHERE run_id = ? AND step = ? AND item_index = ?",
                (status, e.get("attempt", 0), run_id, e["step"], _idx(e)),
            )
        ]

    return build


def _approval_requested(run_id: str, e: Event) -> list[Statement]:
    deadline = e.get("deadline")
    context = e.get("context")
    return [
        (
            "INSERT OR REPLACE INTO approvals (run_id, gate, key, message, approvers, context,"
            " deadline, deadline_epoch, on_timeout, token_sha256, definition_hash, status,"
            " requested_at, requested_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " COALESCE(?, (SELECT definition_hash FROM runs WHERE run_id = ?), ''),"
            " 'pending', ?, ?)",
            (
                run_id,
                e["step"],
                e.get("key"),
                e.get("message"),
                dumps(e.get("approvers", [])),
                dumps(context) if context is not None else None,
                deadline,
                _epoch(deadline),
                e.get("on_timeout"),
                e.get("token_sha256"),
                e.get("definition_hash"),
                run_id,
                e["at"],
                e["seq"],
            ),
        ),
        (
            "INSERT INTO steps (run_id, step, item_index, status, started_seq)"
            " VALUES (?, ?, -1, 'waiting', ?) ON CONFLICT (run_id, step, item_index)"
            " DO UPDATE SET status = 'waiting'",
            (run_id, e["step"], e["seq"]),
        ),
    ]


def _approval_decided(run_id: str, e: Event) -> list[Statement]:
    if e.get("approved"):
        status = "approved"
    elif e.get("timed_out"):
        status = "timed_out"
    else:
        status = "rejected"
    value = e.get("value")
    return [
        (
            "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, comment = ?,"
            " value = ?, decision_code = ? WHERE run_id = ? AND gate = ?",
            (
                status,
                e.get("by"),
                e.get("decided_at", e["at"]),
                e.get("comment"),
                dumps(value) if value is not None else None,
                e.get("code"),
                run_id,
                e["step"],
            ),
        )
    ]


_MATERIALISE: dict[str, Callable[[str, Event], list[Statement]]] = {
    "step_started": _step_started,
    "step_completed": _step_ended("completed"),
    "step_failed": _step_ended("failed"),
    "step_skipped": _step_ended("skipped"),
    "group_completed": _step_ended("completed"),
    "compensation_started": _compensation("started"),
    "compensation_completed": _compensation("ok"),
    "compensation_failed": _compensation("failed"),
    "approval_requested": _approval_requested,
    "approval_decided": _approval_decided,
}


def _idx(e: Event) -> int:
    i = e.get("item_index")
    return -1 if i is None else int(i)


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
