"""PostgreSQL journal appends: the SQL that writes events and what they imply, and the writer
that lets appends share commits (group commit).

`Writer` queues the appends a `PostgresStore` is given (`submit_append`) and writes whatever
has queued up while the previous commit was in flight in one go, on one connection: a
batch of plain appends (events only, no status, approval or lease change; a queued run's
`saga_started` moves it to `running` in the same statement) is one multi-row INSERT committed
by itself (autocommit: one round trip), anything else one transaction. Should
the batch fail for any reason other than a lost connection, each append is written again in a
transaction of its own, so it fails alone. A caller's future is resolved only after the commit
that made its append durable; appends are written in call order.

This module never opens a connection (the store hands it a pool), never resolves a future
before its commit, and never builds SQL from values.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sagac.errors import RunNotFound

from .base import FINISHED_STATUSES, PARKED_KINDS, PARKED_STATUSES, AuditEntry, Event
from .rows import (
    UNPARKED,
    approval_decision_values,
    approval_request_values,
    audit_values,
    dumps,
    open_parked,
    open_parked_values,
    park_wake,
    unpark_wake,
    wait_ended_statements,
    wake_parent,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection, AsyncCursor

MAX_BATCH = 2_000  # appends per commit
CHANNEL = "sagac_work"  # NOTIFY'd when there is work for workers
NOTIFY = f"NOTIFY {CHANNEL}"

_FINAL_STATUS = {"saga_completed", "saga_failed", "saga_waiting"}
# The event types that change another table than `events` (besides a run's status).
_MATERIALISED = frozenset(("approval_requested", "approval_decided", "wait_ended", *PARKED_KINDS))

MAX_ROWS = 4_000  # events per INSERT statement (6 parameters each, of at most 65,535)


@dataclass(slots=True)
class Append:
    """One append: its events, the run status they imply, the run's report (the final
    append), and the owner whose lease the final append ends."""

    run_id: str
    events: Sequence[Event]
    report: dict[str, Any] | None = None
    release: str | None = None

    @property
    def status(self) -> str | None:
        if self.report is not None:
            return str(self.report["status"])
        status: str | None = None
        for e in self.events:
            if e["type"] in _FINAL_STATUS:
                status = e.get("status")
            elif e["type"] == "saga_resumed":
                status = "running"
        return status

    @property
    def plain(self) -> bool:
        """Events only: nothing but rows of `events` to write."""
        return (
            self.report is None
            and self.status is None
            and not any(e["type"] in _MATERIALISED for e in self.events)
        )


def event_inserts(appends: Sequence[Append]) -> list[tuple[str, list[Any]]]:
    """The INSERT statements (one per MAX_ROWS events) that write the events of `appends`, in
    order. A multi-row VALUES list, not arrays: psycopg escapes array elements one by one.
    The first also moves the queued runs whose `saga_started` is among them to `running`
    (a data-modifying WITH: the same statement, so the same commit and round trip)."""
    rows = [
        (a.run_id, e["seq"], e["type"], e["at"], e.get("step"), dumps(e))
        for a in appends
        for e in a.events
    ]
    out = []
    for start in range(0, len(rows), MAX_ROWS):
        chunk = rows[start : start + MAX_ROWS]
        out.append((_insert_events(len(chunk)), [v for row in chunk for v in row]))
    started = [r for r in rows if r[2] == "saga_started"]
    if started:
        sql, args = out[0]
        out[0] = (_START + sql, [started[-1][3], [r[0] for r in started], *args])
    return out


# A queued run (submitted) becomes running with its first event: no commit of its own.
_START = (
    "WITH started AS (UPDATE runs SET status = 'running', updated_at = %s"
    " WHERE run_id = ANY(%s) AND status = 'queued') "
)


@functools.lru_cache(maxsize=64)
def _insert_events(rows: int) -> str:
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * rows)
    return f"INSERT INTO events (run_id, seq, type, at, step, body) VALUES {values}"


async def write(cur: AsyncCursor[Any], a: Append) -> None:
    """Inside a transaction: write `a` and what it implies (the run's status, report and wake
    time, approval and parked rows, consumed signals, the end of `a.release`'s lease).
    RunNotFound for an unknown run. The status UPDATE comes first: it locks the run's row,
    which `send_signal` and `complete_callback` lock first too (see `wake_for`)."""
    import psycopg

    status = a.status
    if status is not None:
        await cur.execute(
            "UPDATE runs SET updated_at = %s, status = %s, report = COALESCE(%s, report)"
            " WHERE run_id = %s",
            (a.events[-1]["at"], status, None if a.report is None else dumps(a.report), a.run_id),
        )
        if cur.rowcount != 1:
            raise RunNotFound(f"no run {a.run_id!r} in this store")
    try:
        for sql, args in event_inserts([a]):
            await cur.execute(sql, args)
    except psycopg.errors.ForeignKeyViolation:
        raise RunNotFound(f"no run {a.run_id!r} in this store") from None
    for e in a.events:
        t = e["type"]
        if t not in _MATERIALISED:
            continue
        if t == "approval_requested":
            await _approval_requested(cur, a.run_id, e)
        elif t == "approval_decided":
            await cur.execute(
                "UPDATE approvals SET status = %s, decided_by = %s, decided_at = %s,"
                " comment = %s, value = %s, decision_code = %s WHERE run_id = %s AND gate = %s",
                approval_decision_values(a.run_id, e),
            )
        elif t == "wait_ended":
            for statement, params in wait_ended_statements("%s", a.run_id, e):
                await cur.execute(statement, params)
        else:
            await cur.execute(open_parked("%s"), open_parked_values(a.run_id, e))
    if status is not None:
        await wake_for(cur, a.run_id, status)
    if a.release is not None:
        await cur.execute(
            "DELETE FROM leases WHERE run_id = %s AND owner = %s", (a.run_id, a.release)
        )


async def wake_for(cur: AsyncCursor[Any], run_id: str, status: str) -> None:
    """The wake time of a run whose status became `status`: a run that parks gets its own
    (`rows.park_wake`), one resumed now at the latest (`rows.unpark_wake`); a finished child
    run wakes its parked parent (and workers: NOTIFY).

    A signal or a callback arriving while the run parks is never lost: both lock the run's
    row (`FOR UPDATE`) before they write, and the parking transaction's status UPDATE (the
    first statement of `write`) holds that lock until it commits. So either the signal came
    first, and `park_wake`, a later statement of the parking transaction, reads it in its
    snapshot (taken after the lock was granted) and makes the wake time now; or the parking
    committed first, and the signal sees the run parked and wakes it itself. A child's wake
    of its parent waits likewise for the parent's parking to commit, then sees it parked."""
    now = time.time()
    if status in PARKED_STATUSES:
        await cur.execute(park_wake("%s"), (now, run_id))
    elif status in UNPARKED:
        await cur.execute(unpark_wake("%s"), (now, run_id, now))
    elif status in FINISHED_STATUSES:
        await cur.execute(wake_parent("%s"), (now, run_id))
        if await cur.fetchall():
            await cur.execute(NOTIFY)


async def _approval_requested(cur: AsyncCursor[Any], run_id: str, e: Event) -> None:
    await cur.execute(
        "INSERT INTO approvals (run_id, gate, key, message, approvers, context, deadline,"
        " deadline_epoch, on_timeout, token_sha256, definition_hash, status, requested_at,"
        " requested_seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " COALESCE(%s, (SELECT definition_hash FROM runs WHERE run_id = %s), ''),"
        " 'pending', %s, %s)"
        " ON CONFLICT (run_id, gate) DO UPDATE SET key = excluded.key,"
        " message = excluded.message, approvers = excluded.approvers,"
        " context = excluded.context, deadline = excluded.deadline,"
        " deadline_epoch = excluded.deadline_epoch, on_timeout = excluded.on_timeout,"
        " token_sha256 = excluded.token_sha256, definition_hash = excluded.definition_hash,"
        " status = 'pending', requested_at = excluded.requested_at,"
        " requested_seq = excluded.requested_seq, decided_by = NULL, decided_at = NULL,"
        " comment = NULL, value = NULL, decision_code = NULL, n = excluded.n",
        approval_request_values(run_id, e),
    )


async def add_audit(cur: AsyncCursor[Any], entry: AuditEntry) -> None:
    """Write `entry` (`rows.audit_values`)."""
    await cur.execute(
        "INSERT INTO audit (at, run_id, gate, actor, action, outcome, code, message, detail,"
        " os_user) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        audit_values(entry),
    )


# -- group commit ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Queued:
    append: Append
    future: asyncio.Future[None]


class Writer:
    """Appends in call order, each batch of what queued up meanwhile sharing one commit.

    `connection()` gives an autocommit connection; `failure(error)` turns a driver
    error into the StoreError the callers get (and lets the store drop a lost connection)."""

    def __init__(
        self,
        connection: Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]],
        failure: Callable[[BaseException], BaseException],
    ) -> None:
        self._connection = connection
        self._failure = failure
        self._queue: list[_Queued] = []
        self._task: asyncio.Task[None] | None = None
        self._last: asyncio.Future[None] | None = None  # the latest append submitted
        self.commits = 0  # for the measurements

    def submit(self, append: Append) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Queued(append, future))
        self._last = future
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return future

    async def flushed(self) -> None:
        """Return once every append submitted so far is written (or failed): they are
        written in order, so once the latest has been. Appends submitted meanwhile are not
        waited for (a busy writer never holds this up for long)."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait([last])

    async def idle(self) -> None:
        """Return once everything queued so far is written (or failed)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._write(batch)
                except asyncio.CancelledError:  # the loop is ending: nothing more is written
                    for q in batch + self._queue:
                        q.future.cancel()
                    self._queue.clear()
                    raise
                except Exception as e:  # a lost connection: this batch fails
                    error = self._failure(e)
                    for q in batch:
                        _settle(q.future, error)
        finally:
            self._task = None

    async def _write(self, batch: list[_Queued]) -> None:
        import psycopg

        async with self._connection() as conn:
            appends = [q.append for q in batch]
            try:
                inserts = event_inserts(appends) if all(a.plain for a in appends) else []
                if len(inserts) == 1:  # one statement: committed by itself
                    await conn.execute(*inserts[0])
                else:
                    await _transaction(conn, appends)
            except (psycopg.Error, RunNotFound):
                if conn.broken or conn.closed:
                    raise
            else:
                self.commits += 1
                for q in batch:
                    _settle(q.future, None)
                return
            for q in batch:  # one by one, so that a bad append fails alone
                try:
                    await _transaction(conn, [q.append])
                    self.commits += 1
                    _settle(q.future, None)
                except psycopg.Error as e:
                    if conn.broken or conn.closed:
                        raise
                    _settle(q.future, self._failure(e))
                except RunNotFound as e:
                    _settle(q.future, e)


async def _transaction(conn: AsyncConnection[Any], appends: Sequence[Append]) -> None:
    async with conn.transaction(), conn.cursor() as cur:
        for a in appends:
            await write(cur, a)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
