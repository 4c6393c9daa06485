"""The journal in PostgreSQL: the `Store` contract on a database server shared by machines.

`PostgresStore` keeps SQLite's tables with SQLite's meaning (runs, events, approvals, audit,
leases, cancel requests, run-level idempotency keys, approver groups, definitions, workers,
parked rows, signals;
schema in `postgres_migrations.py`), through psycopg 3's async API and a `psycopg_pool` pool
of autocommit connections opened on first use. Appends go through a group-committing writer
(`postgres_journal.Writer`). Event bodies are stored as the codec's JSON text, so
`load_events` gives back exactly what SQLite gives back. The steps view is folded from the
run's events with the same code as the memory store (`memory.steps_of`). Every multi-row write
is one transaction; an approval decision locks the run and its approval row (`FOR UPDATE`) and
is a compare-and-set on the gate's status; a signal or a callback locks the run first too
(`postgres_journal.wake_for` says why); `claim_runs` picks runs `FOR NO KEY UPDATE SKIP
LOCKED` and writes their leases in the same transaction. Creating a queued run, a decision, a
cancel request, a released lease and a parked run woken (a signal, a callback, a finished
child) `NOTIFY sagac_work` in their transaction; `wait_for_work`
LISTENs on a connection of its own.

A lost connection (the server restarted or is down) is `StoreUnavailable`: the pool is then
dropped, and the next operation opens a new one, so a store outlives an outage; a pooled
connection the server closed while it sat idle is noticed before it is used. psycopg is
imported only when a store is opened (`sagac --help` never loads it). This module never
builds SQL from values (parameters only), never lets a driver error through as a traceback (it
becomes a `StoreError` naming the server, without its password), and never sees a secret: what
it is given has been redacted by the executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sagac.runtime import codec
from sagac.runtime.clock import parse_rfc3339, rfc3339

from sagac.errors import (
    DecisionConflict,
    LeaseHeld,
    RunFinished,
    RunNotFound,
    SagacError,
    SignalAlreadySent,
    StoreError,
    StoreUnavailable,
    UnknownCallbackToken,
)

from .base import (
    FINISHED_STATUSES,
    ApiToken,
    Approval,
    AuditEntry,
    Definition,
    Event,
    Parked,
    RunRecord,
    Signal,
    Store,
    WorkerInfo,
    callback_audit,
    callback_refusal,
    cancel_entry,
    group_change,
    os_user,
    owner_alive,
    pick_token,
    rebind_entry,
    signal_audit,
    token_entry,
    with_seq,
)
from .memory import steps_of
from .postgres_journal import CHANNEL, NOTIFY, Append, Writer, add_audit, wake_for, write
from .postgres_migrations import SCHEMA_VERSION, current_version, migrate, too_new
from .rows import (
    API_TOKEN_COLUMNS,
    APPROVAL_COLUMNS,
    CLAIM_ORDER,
    DEFINITION_COLUMNS,
    PARKED_SELECT,
    RUN_COLUMNS,
    SIGNAL_SELECT,
    WORKER_COLUMNS,
    api_token_row,
    api_token_values,
    approval_row,
    definition_row,
    definition_values,
    dumps,
    insert_api_token,
    insert_definition,
    insert_run,
    insert_signal,
    list_clause,
    loads,
    next_wake_sql,
    outcome_values,
    parked_from,
    record_outcome,
    revoke_api_token_sql,
    run_record,
    run_values,
    runnable,
    signal_from,
    signal_values,
    upsert_worker,
    waited_for,
    wake_parked,
    where_clause,
    worker_row,
    worker_values,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection, AsyncCursor
    from psycopg_pool import AsyncConnectionPool

__all__ = ["CHANNEL", "PostgresStore", "redact_url"]

PREFIXES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT = 5  # seconds to reach the server before a clear error
POOL_TIMEOUT = 10  # seconds to wait for a free pooled connection
# The runs a claim takes (now, now, now + CLAIM_HORIZON, limit), in order along
# `runs_to_claim`, each row locked for the claim's transaction; a row another claim (or a
# decision) holds is skipped. The horizon bounds the index range read, as in SQLite: a run that
# is not parked has a wake time no later than now, so only runs parked until a later deadline
# lie beyond it, and an empty claim never reads them (the margin is for a clock set back).
_CLAIM = (
    f"SELECT run_id FROM runs WHERE {runnable('%s')} AND wake_at <= %s"
    f" ORDER BY {CLAIM_ORDER} LIMIT %s FOR NO KEY UPDATE SKIP LOCKED"
)
CLAIM_HORIZON = 1.0
# A connection failure reported by a server that is there but not ready (FATAL at connect).
_NOT_READY = ("the database system is", "too many clients", "remaining connection slots")
# SQLSTATEs of a connection that is lost or of a server that cannot serve now.
_LOST_STATES = ("57P01", "57P02", "57P03", "53300")


# The pool logs every failed reconnection at WARNING: with no logging configured, Python would
# print each to stderr. An outage is told once, as StoreUnavailable, by whoever met it.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


def redact_url(url: str) -> str:
    """`url` without its password (for messages)."""
    return re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", url)


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


def _absolute(file: str | None) -> str | None:
    """`file` as an absolute path when it exists here (python actions import beside it, from
    wherever the run is resumed), else as given."""
    if not file:
        return file
    path = os.path.join(os.getcwd(), file)
    return os.path.realpath(path) if os.path.exists(path) else file


async def _alive(conn: AsyncConnection[Any]) -> bool:
    """Whether an idle connection is still open. The server sends an idle connection nothing
    unless it ends it (a restart, `pg_terminate_backend`), so one with nothing to read is
    taken as open (no round trip); one with something to read is asked (an empty query)."""
    import select

    import psycopg
    from psycopg.pq import ConnStatus

    pgconn = conn.pgconn
    if pgconn.status != ConnStatus.OK:
        return False
    try:
        poll = select.poll()
        poll.register(pgconn.socket, select.POLLIN)
        if not poll.poll(0):
            return True
        await conn.execute("")
    except (OSError, psycopg.Error):
        return False
    return True


def unavailable(e: BaseException) -> bool:
    """Whether `e` says the server is unreachable or the connection was lost (as opposed to
    a wrong URL, a refused login or a bad statement): trying again later may succeed."""
    import psycopg

    if not isinstance(e, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    state = e.sqlstate
    if state is not None:
        return state.startswith("08") or state in _LOST_STATES
    text = str(e)
    if "FATAL:" in text:  # the server answered: a missing database or role, a bad password
        return any(words in text for words in _NOT_READY)
    return "connection option" not in text and "invalid dsn" not in text.lower()


class PostgresStore(Store):
    """The `Store` on one PostgreSQL database, shared by every process that connects to it."""

    shared = True
    group_commit = True

    def __init__(self, url: str, *, readonly: bool = False, max_size: int = 10) -> None:
        self.url = url
        self.readonly = readonly
        self.max_size = max_size
        self.where = redact_url(url)
        self.migrated_from: int | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._opening: asyncio.Lock | None = None
        self._writer = Writer(self._writer_connection, self._failure)
        self._writes: AsyncConnection[Any] | None = None  # the writer's own connection
        self._listener: AsyncConnection[Any] | None = None
        self._listened = False  # a listener connected once: a new one may have missed news
        self._listening: asyncio.Lock | None = None  # one waiter reads the listener at a time
        self._heard = 0  # how many waits ended on news (a queued waiter sees it changed)
        self._dropped: set[asyncio.Task[None]] = set()  # pools being closed after a loss
        self._leased: dict[str, str] = {}  # run id -> owner: the leases this store holds
        self._ended: set[tuple[str, str]] = set()  # (run id, owner): ended by a final append

    # -- connections -----------------------------------------------------------------------

    def _failure(self, e: BaseException) -> BaseException:
        """What a caller gets for `e`: a SagacError as it is, a lost connection as
        StoreUnavailable (and the pool dropped: its connections are dead), any other driver
        error as a StoreError naming the server."""
        if isinstance(e, SagacError | asyncio.CancelledError):
            return e
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if unavailable(e):
            self._drop_pool(self._pool)
            return StoreUnavailable(
                f"PostgreSQL store {self.where} is unavailable: {text}",
                hint="check that the server is up; trying again is safe once it is",
            )
        hint = None
        if text.startswith("connection"):  # refused by the server: a login, a database
            hint = "check the URL (postgresql://USER@HOST:PORT/DB) and that the database exists"
        return StoreError(f"PostgreSQL store {self.where}: {text}", hint=hint)

    def _drop_pool(self, pool: AsyncConnectionPool[Any] | None) -> None:
        """Forget `pool` (its connections are dead), closing it in the background; the next
        operation opens a new one."""
        if pool is not None and pool is self._pool:
            self._pool = None
            task = asyncio.get_running_loop().create_task(pool.close(timeout=1))
            self._dropped.add(task)
            task.add_done_callback(self._dropped.discard)

    async def _open(self) -> AsyncConnectionPool[Any]:
        """The pool, opened on first use (and again after a lost connection dropped it) once
        one direct connection has checked the server and brought (or, read-only, checked)
        the schema up to date."""
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
                conn = await self._connect()
                try:
                    self.migrated_from = await self._check_schema(conn)
                finally:
                    await conn.close()
                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.max_size,
                    open=False,
                    kwargs={"connect_timeout": CONNECT_TIMEOUT, "autocommit": True},
                    timeout=POOL_TIMEOUT,
                )
                try:
                    await pool.open(wait=True, timeout=POOL_TIMEOUT)
                except BaseException:
                    await pool.close()
                    raise
            except (psycopg.Error, ValueError) as e:
                raise self._failure(e) from None
            self._pool = pool
            return pool

    async def _connect(self) -> AsyncConnection[Any]:
        import psycopg

        return await psycopg.AsyncConnection.connect(
            self.url, connect_timeout=CONNECT_TIMEOUT, autocommit=True
        )

    async def _check_schema(self, conn: AsyncConnection[Any]) -> int:
        if not self.readonly:
            return await migrate(conn, self.where)
        version = await current_version(conn)
        if version == 0:
            raise StoreError(f"{self.where} is not a sagac journal (it has no journal tables)")
        if version > SCHEMA_VERSION:
            raise too_new(self.where, version)
        return version

    async def migrate(self) -> tuple[int, int]:
        """On a connection of its own, whether or not the store was used (read-only: checked,
        never upgraded)."""
        import psycopg

        try:
            conn = await self._connect()
            try:
                before = await self._check_schema(conn)
            finally:
                await conn.close()
        except (psycopg.Error, ValueError) as e:
            raise self._failure(e) from None
        return before, before if self.readonly else max(before, SCHEMA_VERSION)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled (autocommit) connection the server has not closed. One it closed while it
        sat in the pool means the server restarted (or is down): the pool is dropped and a
        new one opened, so that no operation is handed a dead connection, and one during an
        outage fails at once (StoreUnavailable) instead of waiting for the pool."""
        pool = await self._open()
        async with pool.connection() as conn:
            if await _alive(conn):
                yield conn
                return
        self._drop_pool(pool)
        async with (await self._open()).connection() as conn:
            yield conn

    @asynccontextmanager
    async def _writer_connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """The writer's own connection, kept between its commits (a lone saga commits once a
        step: a pool checkout each time costs a tenth of it), replaced when the server has
        closed it."""
        conn = self._writes
        if conn is None or not await _alive(conn):
            self._writes = None
            if conn is not None:
                await conn.close()
            await self._open()  # the schema is there
            conn = self._writes = await self._connect()
        try:
            yield conn
        finally:
            if conn.broken or conn.closed:
                self._writes = None

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncCursor[Any]]:
        """A cursor inside one transaction (committed when the block ends without error)."""
        try:
            async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur
        except Exception as e:
            raise self._failure(e) from None

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement's rows (autocommit: one round trip)."""
        try:
            async with self._connection() as conn:
                cur = await conn.execute(sql, args)
                rows: list[tuple[Any, ...]] = await cur.fetchall()
                return rows
        except Exception as e:
            raise self._failure(e) from None

    async def close(self) -> None:
        await self._writer.idle()
        await asyncio.gather(*self._dropped, return_exceptions=True)
        writes, self._writes = self._writes, None
        if writes is not None:
            await writes.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        self._listening = self._opening = None  # bound to this event loop
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- runs and the journal --------------------------------------------------------------

    async def create_run(self, record: RunRecord, definition: Definition | None = None) -> None:
        import psycopg

        now = time.time()
        wake = min(parse_rfc3339(record.created_at), now) if record.created_at else now
        record.created_at = record.created_at or rfc3339(now)
        record.updated_at = rfc3339(now)
        record.file = _absolute(record.file)
        if definition is not None and definition.file:
            definition = replace(definition, file=_absolute(definition.file))
        try:
            async with self._tx() as cur:
                if definition is not None:
                    await cur.execute(insert_definition("%s"), definition_values(definition))
                await cur.execute(insert_run("%s"), run_values(record, wake))
                if record.status == "queued":
                    await cur.execute(NOTIFY)
        except StoreError as e:
            if isinstance(e.__context__, psycopg.errors.UniqueViolation):
                raise StoreError(f"run {record.run_id!r} already exists") from None
            raise

    async def definition(self, definition_hash: str) -> Definition | None:
        rows = await self._fetch(
            f"SELECT {DEFINITION_COLUMNS} FROM definitions WHERE hash = %s", (definition_hash,)
        )
        return definition_row(rows[0]) if rows else None

    async def _get_run(self, cur: AsyncCursor[Any], run_id: str, lock: bool = False) -> RunRecord:
        sql = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = %s"
        await cur.execute(sql + (" FOR UPDATE" if lock else ""), (run_id,))
        row = await cur.fetchone()
        if row is None:
            raise RunNotFound(f"no run {run_id!r} in this store")
        return run_record(row)

    async def get_run(self, run_id: str) -> RunRecord:
        rows = await self._fetch(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = %s", (run_id,))
        if not rows:
            raise RunNotFound(f"no run {run_id!r} in this store")
        return run_record(rows[0])

    async def update_run(
        self, run_id: str, status: str, report: dict[str, Any] | None = None
    ) -> None:
        await self._writer.flushed()  # after this store's appends, as they were asked for
        now = rfc3339(time.time())
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE runs SET status = %s, updated_at = %s, report = COALESCE(%s, report)"
                " WHERE run_id = %s",
                (status, now, None if report is None else dumps(report), run_id),
            )
            if cur.rowcount == 0:
                raise RunNotFound(f"no run {run_id!r} in {self.where}")
            await wake_for(cur, run_id, status)

    async def list_runs(
        self,
        *,
        saga: str | None = None,
        status: str | None = None,
        limit: int = 100,
        since: str | None = None,
        until: str | None = None,
        before: str | None = None,
    ) -> list[RunRecord]:
        where, args = list_clause("%s", "id", saga, status, since, until, before)
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

    async def rebind_definition(self, run_id: str, definition: Definition, actor: str) -> None:
        await self._writer.flushed()  # after this store's appends, as they were asked for
        new_hash = definition.hash
        if definition.file:
            definition = replace(definition, file=_absolute(definition.file))
        async with self._tx() as cur:
            old = (await self._get_run(cur, run_id, lock=True)).definition_hash
            await cur.execute(insert_definition("%s"), definition_values(definition))
            await cur.execute(
                "UPDATE runs SET definition_hash = %s WHERE run_id = %s", (new_hash, run_id)
            )
            await cur.execute(
                "UPDATE approvals SET definition_hash = %s"
                " WHERE run_id = %s AND status = 'pending'",
                (new_hash, run_id),
            )
            await add_audit(cur, rebind_entry(run_id, actor, old, new_hash))

    async def append(
        self, run_id: str, events: Sequence[Event], report: dict[str, Any] | None = None
    ) -> None:
        """One commit (shared with other appends queued meanwhile): the events (at the seqs
        they carry; (run_id, seq) is unique), the approval rows they imply, the run's status,
        report and wake time, and the end of the lease this store holds on the run when this
        is its final append. Appends through this store are written in call order."""
        await self.submit_append(run_id, events, report)

    def submit_append(
        self, run_id: str, events: Sequence[Event], report: dict[str, Any] | None = None
    ) -> asyncio.Future[None]:
        if not events:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        release = self._leased.pop(run_id, None) if report is not None else None
        if release is not None:
            self._ended.add((run_id, release))
        return self._writer.submit(Append(run_id, events, report, release))

    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        # One round trip: the run's row joined to its events (one row with no body when there
        # are none; no row at all for an unknown run).
        rows = await self._fetch(
            "SELECT e.body FROM runs r LEFT JOIN events e ON e.run_id = r.run_id AND e.seq > %s"
            " WHERE r.run_id = %s ORDER BY e.seq",
            (after_seq, run_id),
        )
        if not rows:
            raise RunNotFound(f"no run {run_id!r} in this store")
        return [codec.loads(r[0]) for r in rows if r[0] is not None]

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
        self._ended.discard((run_id, owner))
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
        await self._writer.flushed()  # after this store's appends, as they were asked for
        if (run_id, owner) in self._ended:  # already, by the run's final append
            self._ended.discard((run_id, owner))
            return
        if self._leased.get(run_id) == owner:
            del self._leased[run_id]
        async with self._tx() as cur:
            await cur.execute(
                "DELETE FROM leases WHERE run_id = %s AND owner = %s", (run_id, owner)
            )
            if cur.rowcount:
                await cur.execute(NOTIFY)

    async def get_lease(self, run_id: str, *, expired: bool = False) -> tuple[str, float] | None:
        rows = await self._fetch(
            "SELECT owner, expires_at FROM leases WHERE run_id = %s AND expires_at > %s",
            (run_id, float("-inf") if expired else time.time()),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    # -- workers ---------------------------------------------------------------------------

    async def claim_runs(self, owner: str, ttl: float, limit: int) -> list[str]:
        if limit <= 0:
            return []
        if self._listener is None and not (self._listening and self._listening.locked()):
            await self._listen()  # before looking: work made after this claim wakes a wait
        async with self._tx() as cur:
            now = time.time()
            await cur.execute(_CLAIM, (now, now, now + CLAIM_HORIZON, limit))
            picked = [r[0] for r in await cur.fetchall()]
            if not picked:
                return []
            # A lease taken meanwhile by `acquire_lease` (which does not lock the run) wins:
            # the upsert's WHERE is checked against the lease row as it is now.
            await cur.execute(
                "INSERT INTO leases (run_id, owner, acquired_at, expires_at)"
                " SELECT unnest(%s::text[]), %s, %s, %s"
                " ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner,"
                " acquired_at = excluded.acquired_at, expires_at = excluded.expires_at"
                " WHERE leases.expires_at <= %s RETURNING run_id",
                (picked, owner, rfc3339(now), now + ttl, now),
            )
            taken = {r[0] for r in await cur.fetchall()}
        claimed = [run_id for run_id in picked if run_id in taken]
        for run_id in claimed:
            self._leased[run_id] = owner
            self._ended.discard((run_id, owner))
        return claimed

    async def next_wake(self) -> float | None:
        now = time.time()
        rows = await self._fetch(next_wake_sql("%s"), (now, now, now))
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def wait_for_work(self, timeout: float) -> bool:
        """One waiter reads the listening connection at a time; the others queue, and one
        that queued while news came returns True at once (every waiter hears it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0)
        heard = self._heard
        if self._listening is None:
            self._listening = asyncio.Lock()
        async with self._listening:
            if self._heard != heard:
                return True
            woken = await self._read_news(max(deadline - loop.time(), 0))
            if woken:
                self._heard += 1
            return woken

    async def _read_news(self, timeout: float) -> bool:
        import psycopg

        if (self._listener is None or self._listener.closed) and await self._listen():
            return True  # a new connection after a lost one: news may have been missed
        assert self._listener is not None
        try:
            woken = False
            news = self._listener.notifies(timeout=timeout, stop_after=1)
            async with contextlib.aclosing(news):  # the connection's lock, even if cancelled
                async for _ in news:
                    woken = True
            return woken
        except psycopg.Error as e:
            listener, self._listener = self._listener, None
            await listener.close()
            if not unavailable(e):
                raise self._failure(e) from None
            return await self._listen()

    async def _listen(self) -> bool:
        """Open the listening connection; True when it replaces one that was lost."""
        import psycopg

        try:
            conn = await self._connect()
        except (psycopg.Error, ValueError) as e:
            raise self._failure(e) from None
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
        except BaseException as e:  # lost at once, or the wait was cancelled
            await conn.close()
            if isinstance(e, psycopg.Error):
                raise self._failure(e) from None
            raise
        if self._listener is not None:  # opened meanwhile by a claim or a wait: keep that one
            await conn.close()
            return False
        self._listener = conn
        again, self._listened = self._listened, True
        return again

    async def heartbeat(self, worker: WorkerInfo) -> None:
        async with self._tx() as cur:
            await cur.execute(upsert_worker("%s"), worker_values(worker, time.time()))

    async def remove_worker(self, worker_id: str) -> None:
        async with self._tx() as cur:
            await cur.execute("DELETE FROM workers WHERE worker_id = %s", (worker_id,))

    async def workers(self, alive_within: float) -> list[WorkerInfo]:
        now = time.time()
        async with self._tx() as cur:
            await cur.execute(
                f"SELECT {WORKER_COLUMNS} FROM workers WHERE heartbeat_epoch >= %s"
                " ORDER BY started_at, worker_id",
                (now - alive_within,),
            )
            found = await cur.fetchall()
            await cur.execute(
                "SELECT owner, run_id FROM leases WHERE owner = ANY(%s) AND expires_at > %s",
                ([r[0] for r in found], now),
            )
            held: dict[str, list[str]] = {}
            for owner, run_id in await cur.fetchall():
                held.setdefault(owner, []).append(run_id)
        return [worker_row(r, held.get(r[0], ())) for r in found]

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
                await _wake(cur, run_id)
            await add_audit(cur, cancel_entry(run_id, by, reason, first))
            return first

    async def cancel_request(self, run_id: str) -> dict[str, Any] | None:
        rows = await self._fetch(
            "SELECT cancel_requested_at, cancel_by, cancel_reason FROM runs WHERE run_id = %s",
            (run_id,),
        )
        if not rows or rows[0][0] is None:
            return None
        return {"at": rows[0][0], "by": rows[0][1], "reason": rows[0][2]}

    # -- parked nodes, signals, callbacks, child runs ---------------------------------------
    # `send_signal` and `complete_callback` lock the run's row first (`FOR UPDATE`), as the
    # parking append's status UPDATE does: see `postgres_journal.wake_for` for why a signal or
    # a callback that comes while the run parks is never lost.

    async def parked(self, run_id: str) -> list[Parked]:
        sql = f"SELECT {PARKED_SELECT} FROM parked WHERE run_id = %s ORDER BY opened_seq"
        return [parked_from(r) for r in await self._fetch(sql, (run_id,))]

    async def send_signal(
        self, run_id: str, name: str, data: Any, audit: AuditEntry, *, limit: int
    ) -> Signal:
        await self._writer.flushed()  # after this store's appends, as they were asked for
        async with self._tx() as cur:
            status = (await self._get_run(cur, run_id, lock=True)).status  # RunNotFound
            if status in FINISHED_STATUSES:
                raise RunFinished(f"run {run_id} has finished ({status})")
            await cur.execute(
                "SELECT COUNT(*) FROM signals WHERE run_id = %s AND name = %s", (run_id, name)
            )
            sent = (await cur.fetchone() or (0,))[0]
            if sent >= limit:
                raise SignalAlreadySent(f"run {run_id} was sent {sent} {name!r} signal(s) already")
            await cur.execute(insert_signal("%s"), signal_values(run_id, name, data, audit.actor))
            row = await cur.fetchone()
            assert row is not None  # RETURNING the row inserted
            signal = signal_from(row)
            await add_audit(cur, signal_audit(audit, signal))
            await cur.execute(waited_for("%s"), (run_id, name))
            if await cur.fetchone():
                await _wake_parked(cur, run_id)
            return signal

    async def signals(self, run_id: str, name: str | None = None) -> list[Signal]:
        where, args = where_clause("%s", run_id=run_id, name=name)
        sql = f"SELECT {SIGNAL_SELECT} FROM signals{where} ORDER BY signal_id"
        return [signal_from(r) for r in await self._fetch(sql, args)]

    async def callback(self, token_sha256: str) -> Parked | None:
        sql = f"SELECT {PARKED_SELECT} FROM parked WHERE token_sha256 = %s"
        rows = await self._fetch(sql, (token_sha256,))
        return parked_from(rows[0]) if rows else None

    async def complete_callback(
        self, token_sha256: str, outcome: dict[str, Any], audit: AuditEntry
    ) -> Parked:
        await self._writer.flushed()  # after this store's appends, as they were asked for
        found = await self.callback(token_sha256)
        if found is None:
            raise UnknownCallbackToken("no callback was issued with this token")
        run_id = found["run_id"]
        async with self._tx() as cur:
            # The run's row first (a completion of another token of the step, the run's
            # parking, wait here), then the rows of the step as they are now.
            status = (await self._get_run(cur, run_id, lock=True)).status
            await cur.execute(
                f"SELECT {PARKED_SELECT} FROM parked WHERE run_id = %s AND step = %s",
                (run_id, found["step"]),
            )
            rows = [parked_from(r) for r in await cur.fetchall()]
            row = next((r for r in rows if r["token_sha256"] == token_sha256), None)
            if row is None:  # replaced meanwhile by a new opening of its attempt
                raise UnknownCallbackToken("no callback was issued with this token")
            siblings = [r for r in rows if r is not row]
            callback_refusal(row, status, siblings, time.time())
            await cur.execute(
                record_outcome("%s"), outcome_values(outcome, audit.actor, token_sha256)
            )
            done = await cur.fetchone()
            assert done is not None  # no outcome yet: checked under the run's lock
            await add_audit(cur, callback_audit(audit, row))
            await _wake_parked(cur, run_id)
            return parked_from(done)

    async def children(self, run_id: str) -> list[RunRecord]:
        sql = f"SELECT {RUN_COLUMNS} FROM runs WHERE parent_run_id = %s ORDER BY created_at, id"
        return [run_record(r) for r in await self._fetch(sql, (run_id,))]

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
        await self._writer.flushed()  # numbered after this store's appends of the run
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
            await write(cur, Append(run_id, (event,)))
            await _wake(cur, run_id)
            await add_audit(cur, with_seq(audit, event["seq"]))
            return event

    async def audit(self, entry: AuditEntry) -> None:
        async with self._tx() as cur:
            await add_audit(cur, entry)

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
            await add_audit(cur, group_change("group_add", group, users, added))
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
            await add_audit(cur, group_change("group_remove", group, users, removed))
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

    # -- API tokens ------------------------------------------------------------------------

    async def create_api_token(self, token: ApiToken) -> ApiToken:
        import psycopg

        kept = replace(token, created_at=rfc3339(time.time()), revoked_at=None, revoked_by=None)
        try:
            async with self._tx() as cur:
                await cur.execute(insert_api_token("%s"), api_token_values(kept))
                await add_audit(cur, token_entry("token_create", kept, kept.created_by))
        except StoreError as e:
            if isinstance(e.__context__, psycopg.errors.UniqueViolation):
                raise StoreError(f"API token {kept.token_id!r} already exists") from None
            raise
        return kept

    async def api_token(self, sha256: str) -> ApiToken | None:
        sql = f"SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE sha256 = %s"
        rows = await self._fetch(sql, (sha256,))
        return api_token_row(rows[0]) if rows else None

    async def api_tokens(self) -> list[ApiToken]:
        sql = f"SELECT {API_TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, token_id"
        return [api_token_row(r) for r in await self._fetch(sql)]

    async def revoke_api_token(self, id_or_prefix: str, by: str) -> ApiToken:
        async with self._tx() as cur:
            await cur.execute(f"SELECT {API_TOKEN_COLUMNS} FROM api_tokens FOR UPDATE")
            token = pick_token([api_token_row(r) for r in await cur.fetchall()], id_or_prefix)
            now = rfc3339(time.time())
            await cur.execute(revoke_api_token_sql("%s"), (now, by, token.token_id))
            first = cur.rowcount > 0
            if first:
                token = replace(token, revoked_at=now, revoked_by=by)
            await add_audit(cur, token_entry("token_revoke", token, by, first))
            return token


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


async def _wake(cur: AsyncCursor[Any], run_id: str) -> None:
    """The run is to be moved now (a decision, a cancel request): wake workers."""
    await cur.execute("UPDATE runs SET wake_at = %s WHERE run_id = %s", (time.time(), run_id))
    await cur.execute(NOTIFY)


async def _wake_parked(cur: AsyncCursor[Any], run_id: str) -> None:
    """A signal or callback for the run came: when it is parked, it is to be moved now (wake
    workers)."""
    await cur.execute(wake_parked("%s"), (time.time(), run_id))
    if await cur.fetchall():
        await cur.execute(NOTIFY)
