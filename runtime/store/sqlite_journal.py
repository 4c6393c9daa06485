"""Appending to the journal: events as rows of `events`, and the same transaction's changes
that those events imply to `approvals`, `parked`, `signals` (consumed) and to the run's
status; a run's final append also stores its report and ends its driver's lease. (Step states
need no writing: `steps` is a view of `events`, migration 5.)

A run that parks (its status becomes `waiting` or `waiting_approval`) or is resumed gets its
wake time in the same transaction (`rows.park_wake`, `rows.unpark_wake`); a child run that
finishes wakes its parked parent (`rows.wake_parent`). An append is prepared on the
caller's thread (`Prepared`: JSON encoded, statements built) so that the writer thread, the
bottleneck of group commit, only executes SQL; `apply_all` writes many prepared appends, in
order, with one multi-row INSERT of their events. `append_external` appends one event from
outside a running executor (an approval decision, a timeout). Everything here runs inside the
caller's transaction: this module never begins, commits or rolls back one, never writes an
approval the journal's events do not imply (so replay and the tables always agree), and never
sees a secret: what it is given has been redacted by the executor.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from sagac.runtime.clock import rfc3339

from sagac.errors import RunNotFound

from .base import FINISHED_STATUSES, PARKED_KINDS, PARKED_STATUSES, Event
from .rows import (
    UNPARKED,
    approval_decision_values,
    approval_request_values,
    dumps,
    open_parked,
    open_parked_values,
    park_wake,
    unpark_wake,
    wait_ended_statements,
    wake_parent,
)
from .sqlite_leases import check_lease

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
    the writer thread, the bottleneck of group commit, only executes SQL. A run's final append
    also stores its `report` and may end its driver's lease (`release`: the owner)."""

    __slots__ = ("at", "release", "report", "rows", "run_id", "statements", "status")

    def __init__(
        self,
        run_id: str,
        events: Sequence[Event],
        report: dict[str, Any] | None = None,
        release: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.report = None if report is None else dumps(report)
        self.release = release
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
        if report is not None:
            self.status = report["status"]  # so apply_all's UPDATE of the run stores it


def apply(c: sqlite3.Connection, p: Prepared, known: set[str] | None = None) -> None:
    """Write one prepared append."""
    apply_all(c, (p,), known)


def apply_all(
    c: sqlite3.Connection, appends: Sequence[Prepared], known: set[str] | None = None
) -> None:
    """Write prepared appends, in order: every event row in one multi-row INSERT (few
    statements: each is a GIL hand-over on the writer thread), then the approvals they change.
    A run's row changes only when its status does (then `updated_at` says when); `known`
    caches run ids seen to exist (runs are never deleted)."""
    for p in appends:
        if p.status is not None:
            cur = c.execute(
                "UPDATE runs SET updated_at = ?, status = ?, report = COALESCE(?, report)"
                " WHERE run_id = ?",
                (p.at, p.status, p.report, p.run_id),
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
        if p.release is not None:
            c.execute("DELETE FROM leases WHERE run_id = ? AND owner = ?", (p.run_id, p.release))
    rows = appends[0].rows if len(appends) == 1 else [row for p in appends for row in p.rows]
    for i in range(0, len(rows), MAX_ROWS):
        c.execute(*_insert_events(rows[i : i + MAX_ROWS]))
    for p in appends:
        for sql, params in p.statements:
            c.execute(sql, params)
        status_changed(c, p.run_id, p.status)


def status_changed(c: sqlite3.Connection, run_id: str, status: str | None) -> None:
    """What a run's new status changes besides: a run that parks gets its wake time (when a
    worker should look at it again), a resumed one keeps one, a finished child run wakes its
    parked parent."""
    if status in PARKED_STATUSES:
        c.execute(park_wake("?"), (time.time(), run_id))
    elif status in UNPARKED:  # resumed (`saga_resumed`)
        now = time.time()
        c.execute(unpark_wake("?"), (now, run_id, now))
    elif status in FINISHED_STATUSES:
        c.execute(wake_parent("?"), (time.time(), run_id)).fetchall()


MAX_ROWS = 256  # rows per INSERT: 1,536 host parameters (SQLite 3.32+ allows 32,766)


@functools.cache
def _insert_text(k: int) -> str:
    """The INSERT of `k` event rows: one text per row count up to MAX_ROWS (the connections'
    statement caches hold them all)."""
    return "INSERT INTO events (run_id, seq, type, at, step, body) VALUES " + ", ".join(
        ["(?, ?, ?, ?, ?, ?)"] * k
    )


def _insert_events(rows: Sequence[tuple[Any, ...]]) -> tuple[str, Sequence[Any]]:
    """(SQL, parameters) inserting `rows` (at most MAX_ROWS) in one statement."""
    if len(rows) == 1:
        return _insert_text(1), rows[0]
    return _insert_text(len(rows)), [v for row in rows for v in row]


def one_statement(appends: Sequence[Prepared], known: set[str]) -> tuple[str, Sequence[Any]] | None:
    """The whole of `appends` as one INSERT (SQL, parameters), when that is all they write:
    events only (no status, report, lease or approval) of runs known to exist, at most
    MAX_ROWS rows. Run by itself outside a transaction, SQLite makes it one: it takes the write
    lock (waiting as `busy_timeout` says), inserts and commits in a single call, so the writer
    thread hands the GIL over once a commit instead of once a statement. None otherwise."""
    rows: list[tuple[Any, ...]] = []
    for p in appends:
        if p.status is not None or p.release is not None or p.statements:
            return None
        if p.run_id not in known:
            return None
        rows.extend(p.rows)
    if not rows or len(rows) > MAX_ROWS:
        return None
    return _insert_events(rows)


def _append(c: sqlite3.Connection, run_id: str, events: Sequence[Event]) -> None:
    apply(c, Prepared(run_id, events))


# Each journal event type that changes another table (approvals; a queued run's status): the
# statements that apply it.


def _approval_requested(run_id: str, e: Event) -> list[Statement]:
    return [
        (
            "INSERT OR REPLACE INTO approvals (run_id, gate, key, message, approvers, context,"
            " deadline, deadline_epoch, on_timeout, token_sha256, definition_hash, status,"
            " requested_at, requested_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " COALESCE(?, (SELECT definition_hash FROM runs WHERE run_id = ?), ''),"
            " 'pending', ?, ?)",
            approval_request_values(run_id, e),
        ),
    ]


def _approval_decided(run_id: str, e: Event) -> list[Statement]:
    return [
        (
            "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, comment = ?,"
            " value = ?, decision_code = ? WHERE run_id = ? AND gate = ?",
            approval_decision_values(run_id, e),
        )
    ]


def _saga_started(run_id: str, e: Event) -> list[Statement]:
    # A queued run (submitted) becomes running with its first event, in the same commit.
    sql = (
        "UPDATE runs SET status = 'running', updated_at = ? WHERE run_id = ? AND status = 'queued'"
    )
    return [(sql, (e["at"], run_id))]


def _parked_opened(run_id: str, e: Event) -> list[Statement]:
    return [(open_parked("?"), open_parked_values(run_id, e))]


def _wait_ended(run_id: str, e: Event) -> list[Statement]:
    return wait_ended_statements("?", run_id, e)


_MATERIALISE: dict[str, Callable[[str, Event], list[Statement]]] = {
    "saga_started": _saga_started,
    "approval_requested": _approval_requested,
    "approval_decided": _approval_decided,
    **dict.fromkeys(PARKED_KINDS, _parked_opened),
    "wait_ended": _wait_ended,
}
