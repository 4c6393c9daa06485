"""The journal in PostgreSQL: the `Store` contract on a database server shared by machines.

`PostgresStore` keeps SQLite's tables with SQLite's meaning (runs, events, approvals, audit,
leases, cancel requests, run-level idempotency keys, approver groups; schema in
`postgres_migrations.py`), through psycopg 3's async API and a `psycopg_pool` connection pool
opened on first use. Event bodies are stored as the codec's JSON text, so `load_events` gives
back exactly what SQLite gives back. The steps view is folded from the run's events with the
same code as the memory store (`memory.steps_of`, SQLite's view in Python). Every multi-row
write is one transaction; an approval decision locks the run and its approval row (`FOR
UPDATE`) and is a compare-and-set on the gate's status.

psycopg is imported only when a store is opened (`sagac --help` never loads it). This module
never builds SQL from values (parameters only), never lets a driver error through as a
traceback (it becomes a `StoreError` naming the server, without its password), and never sees
a secret: what it is given has been redacted by the executor.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sagac.runtime import codec
from sagac.runtime.clock import rfc3339

from sagac.errors import DecisionConflict, LeaseHeld, RunNotFound, StoreError

from .base import (
    Approval,
    AuditEntry,
    Event,
    RunRecord,
    Store,
    cancel_entry,
    group_change,
    os_user,
    owner_alive,
    rebind_entry,
    with_seq,
)
from .memory import steps_of
from .postgres_migrations import SCHEMA_VERSION, current_version, migrate, too_new
from .rows import (
    APPROVAL_COLUMNS,
    RUN_COLUMNS,
    approval_decision_values,
    approval_request_values,
    approval_row,
    audit_values,
    dumps,
    loads,
    run_record,
    where_clause,
)

if TYPE_CHECKING:
    from psycopg import AsyncCursor
    from psycopg_pool import AsyncConnectionPool

__all__ = ["PostgresStore", "redact_url"]

PREFIXES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT = 5  # seconds to reach the server before a clear error


def redact_url(url: str) -> str:
    """`url` without its password (for messages)."""
    return re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", url)


_FINAL_STATUS = {"saga_completed", "saga_failed", "saga_waiting"}
# The event types the steps view reads (`memory.steps_of`).
_STEP_TYPES = [
    "step_started",
    "step_completed",
    "step_failed",
    "step_skipped",
    "group_completed",
    "approval_requested",
    "compensation_started",
    "compensation_completed",
    "compensation_failed",
]


class PostgresStore(Store):
    """The `Store` on one PostgreSQL database, shared by every process that connects to it."""

    shared = True
    group_commit = False

    def __init__(self, url: str, *, readonly: bool = False, max_size: int = 10) -> None:
        self.url = url
        self.readonly = readonly
        self.max_size = max_size
        self.where = redact_url(url)
        self.migrated_from: int | None = None
        self._pool: AsyncConnectionPool | None = None
        self._opening: asyncio.Lock | None = None
        self._locks: dict[str, asyncio.Lock] = {}  # run id -> its appends, in call order
        self._leased: dict[str, str] = {}  # run id -> owner: the leases this store holds
        self._ended: set[tuple[str, str]] = set()  # (run id, owner): ended by a final append

    # -- connections -----------------------------------------------------------------------

    def _error(self, e: BaseException) -> StoreError:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return StoreError(
            f"PostgreSQL store {self.where}: {text}",
            hint="check that the server is up and the URL (postgresql://USER@HOST:PORT/DB)",
        )

    async def _open(self) -> AsyncConnectionPool:
        """The pool, opened on first use after one direct connection has checked the server
        and brought (or, read-only, checked) the schema up to date."""
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is not None:
                return self._pool
            try:
                import psycopg
                from psycopg_pool import AsyncConnectionPool
            except ImportError as e:  # pragma: no cover - a dependency of the package
                raise StoreError(f"the PostgreSQL store needs psycopg: {e}") from None
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, connect_timeout=CONNECT_TIMEOUT, autocommit=True
                )
            except (psycopg.Error, ValueError) as e:
                raise self._error(e) from None
            try:
                if self.readonly:
                    version = await current_version(conn)
                    if version == 0:
                        raise StoreError(
                            f"{self.where} is not a sagac journal (it has no journal tables)"
                        )
                    if version > SCHEMA_VERSION:
                        raise too_new(self.where, version)
                    self.migrated_from = version
                else:
                    self.migrated_from = await migrate(conn, self.where)
            except psycopg.Error as e:
                raise self._error(e) from None
            finally:
                await conn.close()
            pool: AsyncConnectionPool = AsyncConnectionPool(
                self.url,
                min_size=1,
                max_size=self.max_size,
                open=False,
                kwargs={"connect_timeout": CONNECT_TIMEOUT},
                timeout=CONNECT_TIMEOUT * 2,
            )
            try:
                await pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
            except Exception as e:
                await pool.close()
                raise self._error(e) from None
            self._pool = pool
            return pool

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncCursor[Any]]:
        """A cursor inside one transaction (committed when the block ends without error)."""
        import psycopg

        pool = await self._open()
        try:
            async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.Error as e:
            raise self._error(e) from None
        except Exception as e:
            from psycopg_pool import PoolTimeout

            if isinstance(e, PoolTimeout):
                raise self._error(e) from None
            raise

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._tx() as cur:
            await cur.execute(sql, args)
            return await cur.fetchall()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    # -- runs and the journal --------------------------------------------------------------

    async def create_run(self, record: RunRecord) -> None:
        import psycopg

        now = rfc3339(time.time())
        record.created_at = record.created_at or now
        record.updated_at = now
        if record.file:
            path = os.path.join(os.getcwd(), record.file)
            record.file = os.path.realpath(path) if os.path.exists(path) else record.file
        try:
            async with self._tx() as cur:
                await cur.execute(
                    "INSERT INTO runs (run_id, saga, version, definition_hash, file, input,"
                    " status, created_at, updated_at, meta)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        record.run_id,
                        record.saga,
                        record.version,
                        record.definition_hash,
                        record.file,
                        dumps(record.input),
                        record.status,
                        record.created_at,
                        record.updated_at,
                        dumps(record.meta),
                    ),
                )
        except StoreError as e:
            if isinstance(e.__context__, psycopg.errors.UniqueViolation):
                raise StoreError(f"run {record.run_id!r} already exists") from None
            raise

    async def _get_run(self, cur: AsyncCursor[Any], run_id: str, lock: bool = False) -> RunRecord:
        sql = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = %s"
        await cur.execute(sql + (" FOR UPDATE" if lock else ""), (run_id,))
        row = await cur.fetchone()
        if row is None:
            raise RunNotFound(f"no run {run_id!r} in this store")
        return run_record(row)

    async def get_run(self, run_id: str) -> RunRecord:
        async with self._tx() as cur:
            return await self._get_run(cur, run_id)

    async def update_run(
        self, run_id: str, status: str, report: dict[str, Any] | None = None
    ) -> None:
        now = rfc3339(time.time())
        async with self._tx() as cur:
            if report is None:
                await cur.execute(
                    "UPDATE runs SET status = %s, updated_at = %s WHERE run_id = %s",
                    (status, now, run_id),
                )
            else:
                await cur.execute(
                    "UPDATE runs SET status = %s, updated_at = %s, report = %s WHERE run_id = %s",
                    (status, now, dumps(report), run_id),
                )
            if cur.rowcount == 0:
                raise RunNotFound(f"no run {run_id!r} in {self.where}")

    async def list_runs(
        self, *, saga: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        where, args = where_clause("%s", saga=saga, status=status)
        sql = f"SELECT {RUN_COLUMNS} FROM runs{where} ORDER BY created_at DESC, id DESC LIMIT %s"
        return [run_record(r) for r in await self._fetch(sql, [*args, limit])]

    async def claim_key(self, saga: str, key: str, run_id: str, input_hash: str) -> tuple[str, str]:
        async with self._tx() as cur:
            await cur.execute(
                "INSERT INTO idempotency_keys (saga, key, run_id, input_hash, created_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (saga, key, run_id, input_hash, rfc3339(time.time())),
            )
            await cur.execute(
                "SELECT run_id, input_hash FROM idempotency_keys WHERE saga = %s AND key = %s",
                (saga, key),
            )
            row = await cur.fetchone()
            assert row is not None  # inserted or already there, and never deleted
            return row[0], row[1]

    async def rebind_definition(self, run_id: str, new_hash: str, actor: str) -> None:
        async with self._tx() as cur:
            old = (await self._get_run(cur, run_id, lock=True)).definition_hash
            await cur.execute(
                "UPDATE runs SET definition_hash = %s WHERE run_id = %s", (new_hash, run_id)
            )
            await cur.execute(
                "UPDATE approvals SET definition_hash = %s"
                " WHERE run_id = %s AND status = 'pending'",
                (new_hash, run_id),
            )
            await _add_audit(cur, rebind_entry(run_id, actor, old, new_hash))

    async def append(
        self, run_id: str, events: Sequence[Event], report: dict[str, Any] | None = None
    ) -> None:
        """One transaction: the events (at the seqs they carry; (run_id, seq) is unique), the
        approval rows they imply, the run's status and report, and the end of the lease this
        store holds on the run when this is its final append. Appends of one run through this
        store are written in call order."""
        if not events:
            return
        async with self._lock(run_id):
            status: str | None = None
            for e in events:
                if e["type"] in _FINAL_STATUS:
                    status = e.get("status")
                elif e["type"] == "saga_resumed":
                    status = "running"
            if report is not None:
                status = report["status"]
            release = self._leased.get(run_id) if report is not None else None
            async with self._tx() as cur:
                await _append(cur, run_id, events, status, report, release)
            if release is not None:
                self._leased.pop(run_id, None)
                self._ended.add((run_id, release))

    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        async with self._tx() as cur:
            await cur.execute(
                "SELECT body FROM events WHERE run_id = %s AND seq > %s ORDER BY seq",
                (run_id, after_seq),
            )
            rows = await cur.fetchall()
            if not rows:
                await self._get_run(cur, run_id)  # RunNotFound for an unknown run
            return [codec.loads(r[0]) for r in rows]

    async def steps(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT body FROM events WHERE run_id = %s AND type = ANY(%s) ORDER BY seq",
            (run_id, _STEP_TYPES),
        )
        return steps_of([codec.loads(r[0]) for r in rows])

    # -- leases ----------------------------------------------------------------------------

    async def acquire_lease(self, run_id: str, owner: str, ttl: float) -> float:
        async with self._tx() as cur:
            now = time.time()
            await cur.execute(
                "INSERT INTO leases (run_id, owner, acquired_at, expires_at)"
                " VALUES (%s, '', '', 0) ON CONFLICT DO NOTHING",
                (run_id,),
            )
            await _check_lease(cur, run_id, owner, now)  # the row is locked from here on
            expires = now + ttl
            await cur.execute(
                "UPDATE leases SET owner = %s, acquired_at = %s, expires_at = %s WHERE run_id = %s",
                (owner, rfc3339(now), expires, run_id),
            )
        self._leased[run_id] = owner
        return expires

    async def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        if (run_id, owner) in self._ended:
            return True  # the run's final append ended it: nothing more will be written
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE leases SET expires_at = %s WHERE run_id = %s AND owner = %s",
                (time.time() + ttl, run_id, owner),
            )
            return cur.rowcount == 1

    async def release_lease(self, run_id: str, owner: str) -> None:
        if (run_id, owner) in self._ended:  # already, by the run's final append
            self._ended.discard((run_id, owner))
            return
        if self._leased.get(run_id) == owner:
            del self._leased[run_id]
        async with self._tx() as cur:
            await cur.execute(
                "DELETE FROM leases WHERE run_id = %s AND owner = %s", (run_id, owner)
            )

    async def get_lease(self, run_id: str) -> tuple[str, float] | None:
        rows = await self._fetch(
            "SELECT owner, expires_at FROM leases WHERE run_id = %s AND expires_at > %s",
            (run_id, time.time()),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    # -- cancel requests -------------------------------------------------------------------

    async def request_cancel(self, run_id: str, by: str, reason: str | None) -> bool:
        async with self._tx() as cur:
            record = await self._get_run(cur, run_id, lock=True)
            first = not record.meta.get("cancel_requested_at")
            if first:
                await cur.execute(
                    "UPDATE runs SET cancel_requested_at = %s, cancel_by = %s,"
                    " cancel_reason = %s WHERE run_id = %s",
                    (rfc3339(time.time()), by, reason, run_id),
                )
            await _add_audit(cur, cancel_entry(run_id, by, reason, first))
            return first

    async def cancel_request(self, run_id: str) -> dict[str, Any] | None:
        rows = await self._fetch(
            "SELECT cancel_requested_at, cancel_by, cancel_reason FROM runs WHERE run_id = %s",
            (run_id,),
        )
        if not rows or rows[0][0] is None:
            return None
        return {"at": rows[0][0], "by": rows[0][1], "reason": rows[0][2]}

    # -- approvals and audit ---------------------------------------------------------------

    async def approvals(
        self, run_id: str | None = None, status: str | None = None
    ) -> list[Approval]:
        where, args = where_clause("%s", run_id=run_id, status=status)
        sql = f"SELECT {APPROVAL_COLUMNS} FROM approvals{where} ORDER BY requested_at, n"
        return [approval_row(r) for r in await self._fetch(sql, args)]

    async def approval(self, run_id: str, gate: str) -> Approval | None:
        rows = await self._fetch(
            f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE run_id = %s AND gate = %s",
            (run_id, gate),
        )
        return approval_row(rows[0]) if rows else None

    async def append_decision(
        self,
        run_id: str,
        gate: str,
        fields: dict[str, Any],
        audit: AuditEntry,
        *,
        owner: str | None = None,
        definition_hash: str | None = None,
    ) -> Event:
        async with self._tx() as cur:
            # The run's row first (every external append of the run waits here: one numbers
            # its event after the other), then the gate's: the compare-and-set's lock.
            record = await self._get_run(cur, run_id, lock=True)  # RunNotFound
            await cur.execute(
                f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE run_id = %s AND gate = %s"
                " FOR UPDATE",
                (run_id, gate),
            )
            found = await cur.fetchone()
            row = approval_row(found) if found else None
            if row is None or row["status"] != "pending":
                raise DecisionConflict(f"gate {gate!r} of run {run_id} is not pending")
            if definition_hash is not None and not (
                row["definition_hash"] == record.definition_hash == definition_hash
            ):
                raise DecisionConflict(f"gate {gate!r} of run {run_id} changed definition")
            await _check_lease(cur, run_id, owner, time.time())
            await cur.execute("SELECT MAX(seq) FROM events WHERE run_id = %s", (run_id,))
            top = await cur.fetchone()
            event: Event = {
                "type": "approval_decided",
                "run_id": run_id,
                "seq": int((top[0] if top else 0) or 0) + 1,
                "at": rfc3339(time.time()),
            }
            event.update(fields)
            await _append(cur, run_id, (event,), None, None, None)
            await _add_audit(cur, with_seq(audit, event["seq"]))
            return event

    async def audit(self, entry: AuditEntry) -> None:
        async with self._tx() as cur:
            await _add_audit(cur, entry)

    async def audit_log(self, run_id: str | None = None) -> list[dict[str, Any]]:
        where, args = where_clause("%s", run_id=run_id)
        sql = (
            "SELECT id, at, run_id, gate, actor, os_user, action, outcome, code, message,"
            f" detail FROM audit{where} ORDER BY id"
        )
        keys = ("id", "at", "run_id", "gate", "actor", "os_user", "action", "outcome", "code")
        out = []
        for r in await self._fetch(sql, args):
            entry = dict(zip(keys, r[:9], strict=True))
            entry["message"], entry["detail"] = r[9], loads(r[10])
            out.append(entry)
        return out

    # -- approver groups -------------------------------------------------------------------

    async def add_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        async with self._tx() as cur:
            now, by = rfc3339(time.time()), os_user()
            added = []
            for user in dict.fromkeys(users):
                await cur.execute(
                    "INSERT INTO approver_groups VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (group, user, now, by),
                )
                if cur.rowcount:
                    added.append(user)
            await _add_audit(cur, group_change("group_add", group, users, added))
            return added

    async def remove_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        async with self._tx() as cur:
            removed = []
            for user in dict.fromkeys(users):
                await cur.execute(
                    "DELETE FROM approver_groups WHERE name = %s AND member = %s", (group, user)
                )
                if cur.rowcount:
                    removed.append(user)
            await _add_audit(cur, group_change("group_remove", group, users, removed))
            return removed

    async def group_members(self, group: str | None = None) -> dict[str, list[str]]:
        where, args = where_clause("%s", name=group)
        rows = await self._fetch(
            f"SELECT name, member FROM approver_groups{where} ORDER BY name, member", args
        )
        out: dict[str, list[str]] = {}
        for name, member in rows:
            out.setdefault(name, []).append(member)
        return out


# -- inside a transaction -----------------------------------------------------------------


async def _check_lease(cur: AsyncCursor[Any], run_id: str, owner: str | None, now: float) -> None:
    """Raise LeaseHeld when a live owner other than `owner` holds an unexpired lease (and
    lock the lease row, if any, until the transaction ends)."""
    await cur.execute(
        "SELECT owner, expires_at FROM leases WHERE run_id = %s FOR UPDATE", (run_id,)
    )
    row = await cur.fetchone()
    if row is not None and row[0] and row[0] != owner and row[1] > now and owner_alive(row[0]):
        raise LeaseHeld(run_id, row[0], row[1])


async def _append(
    cur: AsyncCursor[Any],
    run_id: str,
    events: Sequence[Event],
    status: str | None,
    report: dict[str, Any] | None,
    release: str | None,
) -> None:
    """Write `events` and what they imply (approval rows; the run's status and report; the
    end of `release`'s lease)."""
    if status is not None:
        await cur.execute(
            "UPDATE runs SET updated_at = %s, status = %s, report = COALESCE(%s, report)"
            " WHERE run_id = %s",
            (events[-1]["at"], status, None if report is None else dumps(report), run_id),
        )
        exists = cur.rowcount == 1
    else:
        await cur.execute("SELECT 1 FROM runs WHERE run_id = %s", (run_id,))
        exists = await cur.fetchone() is not None
    if not exists:
        raise RunNotFound(f"no run {run_id!r} in this store")
    if release is not None:
        await cur.execute("DELETE FROM leases WHERE run_id = %s AND owner = %s", (run_id, release))
    await cur.executemany(
        "INSERT INTO events (run_id, seq, type, at, step, body) VALUES (%s, %s, %s, %s, %s, %s)",
        [(run_id, e["seq"], e["type"], e["at"], e.get("step"), dumps(e)) for e in events],
    )
    for e in events:
        if e["type"] == "approval_requested":
            await _approval_requested(cur, run_id, e)
        elif e["type"] == "approval_decided":
            await _approval_decided(cur, run_id, e)


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


async def _approval_decided(cur: AsyncCursor[Any], run_id: str, e: Event) -> None:
    await cur.execute(
        "UPDATE approvals SET status = %s, decided_by = %s, decided_at = %s, comment = %s,"
        " value = %s, decision_code = %s WHERE run_id = %s AND gate = %s",
        approval_decision_values(run_id, e),
    )


async def _add_audit(cur: AsyncCursor[Any], entry: AuditEntry) -> None:
    """Write `entry` (`rows.audit_values`)."""
    await cur.execute(
        "INSERT INTO audit (at, run_id, gate, actor, action, outcome, code, message, detail,"
        " os_user) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        audit_values(entry),
    )
