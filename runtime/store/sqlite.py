"""The durable journal: one SQLite file (WAL, synchronous=FULL) shared by processes.

Every write goes through one writer thread per store with a queue: it takes whatever is queued,
runs it in one `BEGIN IMMEDIATE` transaction (each operation in its own savepoint, so one bad
operation fails alone) and commits; only then does each caller's `await` return. Appends from
many concurrent sagas in one process therefore share a commit (group commit), and none of them
acts before its own record is durable. Reads use a second connection on a reader thread; WAL
lets them run while the writer commits. Other processes may open the same file: `busy_timeout`
makes their writers wait for each other instead of failing.

Besides the journal (`runs`, `events`), the same transaction keeps a materialised view of it up
to date: `steps` (status, attempt, idempotency key, result, error, compensation state) and
`approvals` (requests and decisions). Leases, cancel requests and the audit log live here too.
This module never sees a secret: what it is given has been redacted by the executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sagac.runtime.clock import rfc3339
from sagac.runtime.errors import RunNotFound, StoreError

from .base import Event, RunRecord, Store
from .migrations import migrate

T = TypeVar("T")
# One encoder for every row: json.dumps with options builds a new JSONEncoder per call.
_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode
BUSY_TIMEOUT_MS = 30_000
MAX_BATCH = 2_000  # operations per group commit
_FINAL_STATUS = {"saga_completed", "saga_failed", "saga_waiting"}


class LeaseHeld(StoreError):
    """The run is leased by another live owner (`owner`, until `expires_at`, epoch seconds)."""

    code = "RUN_BUSY"
    exit_code = 75

    def __init__(self, run_id: str, owner: str, expires_at: float) -> None:
        super().__init__(
            f"run {run_id} is being resumed by {owner} until {rfc3339(expires_at)}",
            hint="wait for it to finish, or retry after that time if its owner died",
        )
        self.run_id, self.owner, self.expires_at = run_id, owner, expires_at


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _connect(path: str) -> sqlite3.Connection:
    try:
        c = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        c.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as e:
        raise StoreError(f"cannot open the journal {path}: {e}") from None
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot put the journal {path} in WAL mode (got {mode})")
    return c


class _Op:
    __slots__ = ("append", "error", "fn", "future", "loop", "result")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], Any], append: _Prepared | None = None
    ) -> None:
        self.fn = fn
        self.append = append  # a journal append: the writer may merge its rows with others'
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Any] = self.loop.create_future()
        self.result: Any = None
        self.error: BaseException | None = None

    def resolve(self) -> None:
        _resolve_all([self])

    def set(self) -> None:
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)


def _as_store_error(e: BaseException) -> BaseException:
    if isinstance(e, sqlite3.Error):
        return StoreError(f"the journal store failed: {e}")
    return e


class _Worker:
    """A thread with its own connection that runs queued operations; a writer groups every
    queued operation into one transaction.

    A writer may also run an operation inline, on the caller's thread, when nothing is queued
    or in progress: that saves two thread hand-overs per commit for a lone saga, at the price
    of holding up the caller's loop for that commit. Callers ask for it only while a single
    run is writing (`SqliteStore.submit_append`), so concurrent runs still share commits.
    """

    def __init__(self, path: str, *, writer: bool) -> None:
        self.path = path
        self.writer = writer
        self.queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        self.conn_lock = threading.Lock()  # whoever runs a transaction holds it
        self.submitted = 0  # written by callers only
        self.finished = 0  # written by the worker thread (or an inline caller) only
        self.commits = 0  # group commits done (for the benchmark and tests)
        self.known: set[str] = set()  # run ids seen to exist (runs are never deleted)

    def submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        inline: bool = False,
        append: _Prepared | None = None,
    ) -> asyncio.Future[T]:
        op = _Op(fn, append)
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.conn = _connect(self.path)
                    name = "sagac-journal-" + ("writer" if self.writer else "reader")
                    self.thread = threading.Thread(target=self._main, name=name, daemon=True)
                    self.thread.start()
        if (
            inline
            and self.submitted == self.finished
            and self.conn is not None
            and self.conn_lock.acquire(blocking=False)
        ):
            try:
                if self.submitted == self.finished:  # still nothing queued or running
                    self._transaction(self.conn, [op], savepoints=False)
                    op.set()
                    return op.future
            finally:
                self.conn_lock.release()
        self.submitted += 1
        self.queue.put(op)
        return op.future

    def stop(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None

    def _main(self) -> None:
        conn = self.conn
        assert conn is not None
        try:
            while True:
                op = self.queue.get()
                if op is None:
                    return
                if not self.writer:
                    self._read(conn, op)
                    self.finished += 1
                    continue
                batch = [op]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                with self.conn_lock:
                    self._write(conn, batch)
                self.finished += len(batch)
                if stop:
                    return
        finally:
            self.conn = None
            conn.close()

    @staticmethod
    def _read(conn: sqlite3.Connection, op: _Op) -> None:
        try:
            op.result = op.fn(conn)
        except BaseException as e:
            op.error = _as_store_error(e)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        op.resolve()

    def _write(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        # Fast path: the whole batch in one transaction. Should any operation fail, roll the
        # batch back and run it again with a savepoint per operation, so it fails alone (the
        # operations only touch the database, so running them again is safe).
        if not self._transaction(conn, batch, savepoints=False):
            self._transaction(conn, batch, savepoints=True)
        _resolve_all(batch)

    def _transaction(self, conn: sqlite3.Connection, batch: list[_Op], savepoints: bool) -> bool:
        """Run `batch` in one transaction and commit. Without savepoints, consecutive journal
        appends are written together (`_apply_all`: a few multi-row statements instead of a
        few per event, each a GIL hand-over on this thread) and any failure rolls back the
        whole batch: False, so that the caller runs it again with a savepoint per operation
        (a batch of one simply fails)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            for op in batch:
                op.error = StoreError(f"cannot write to the journal {self.path}: {e}")
            return True
        if not savepoints:
            try:
                appends: list[_Prepared] = []
                for op in batch:
                    if op.append is not None:
                        appends.append(op.append)
                        continue
                    if appends:
                        _apply_all(conn, appends, self.known)
                        appends = []
                    op.result = op.fn(conn)
                if appends:
                    _apply_all(conn, appends, self.known)
            except BaseException as e:
                conn.execute("ROLLBACK")
                if len(batch) > 1:
                    return False
                batch[0].error = _as_store_error(e)
                return True
        for op in batch:
            if not savepoints:
                break
            conn.execute("SAVEPOINT op")
            try:
                op.result = op.fn(conn)
                op.error = None
            except BaseException as e:
                op.error = _as_store_error(e)
                conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
        try:
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for op in batch:
                op.error = StoreError(f"the journal could not commit to {self.path}: {e}")
        return True


def _resolve_all(batch: list[_Op]) -> None:
    """Wake each caller's loop once per batch (not once per operation: that is a pipe write
    and a GIL hand-over each)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Op]] = {}
    for op in batch:
        by_loop.setdefault(op.loop, []).append(op)
    for loop, ops in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody to tell
            loop.call_soon_threadsafe(_set_all, ops)


def _set_all(ops: list[_Op]) -> None:
    for op in ops:
        op.set()


class SqliteStore(Store):
    """A `Store` on one SQLite file; also leases, cancel requests, approvals and audit."""

    group_commit = True

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder of {self.path}: {e.strerror}") from None
        c = _connect(self.path)
        try:
            self.migrated_from = migrate(c, self.path)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path} is not a sagac journal: {e}") from None
        finally:
            c.close()
        self._last_writer: str | None = None
        self._writer = _Worker(self.path, writer=True)
        self._reader = _Worker(self.path, writer=False)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    @property
    def commits(self) -> int:
        return self._writer.commits

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run `fn(conn)` in the next group commit; the future resolves after the commit."""
        return self._writer.submit(fn)

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        return self._reader.submit(fn)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        self._writer.stop()
        self._reader.stop()

    # -- the Store interface -------------------------------------------------------------

    async def create_run(self, record: RunRecord) -> None:
        now = rfc3339(time.time())
        record.created_at = record.created_at or now
        record.updated_at = now
        if record.file and Path(record.file).exists():
            record.file = str(Path(record.file).resolve())  # resume works from any folder

        def fn(c: sqlite3.Connection) -> None:
            try:
                c.execute(
                    "INSERT INTO runs (run_id, saga, version, definition_hash, file, input,"
                    " status, created_at, updated_at, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.run_id,
                        record.saga,
                        record.version,
                        record.definition_hash,
                        record.file,
                        _dumps(record.input),
                        record.status,
                        record.created_at,
                        record.updated_at,
                        _dumps(record.meta),
                    ),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"run {record.run_id!r} already exists") from None

        await self.write(fn)

    async def get_run(self, run_id: str) -> RunRecord:
        return await self.read(partial(_get_run, run_id=run_id))

    async def update_run(
        self, run_id: str, status: str, report: dict[str, Any] | None = None
    ) -> None:
        now = rfc3339(time.time())

        def fn(c: sqlite3.Connection) -> None:
            if report is None:
                cur = c.execute(
                    "UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?",
                    (status, now, run_id),
                )
            else:
                cur = c.execute(
                    "UPDATE runs SET status = ?, updated_at = ?, report = ? WHERE run_id = ?",
                    (status, now, _dumps(report), run_id),
                )
            if cur.rowcount == 0:
                raise RunNotFound(f"no run {run_id!r} in {self.path}")

        await self.write(fn)

    async def append(self, run_id: str, events: Sequence[Event]) -> None:
        if events:
            await self.submit_append(run_id, events)

    def submit_append(self, run_id: str, events: Sequence[Event]) -> asyncio.Future[None]:
        """Queue an append now (in call order) and return the future of its commit. While one
        run writes alone it commits inline (see `_Worker`)."""
        prepared = _Prepared(run_id, events)
        known = self._writer.known
        alone = run_id == self._last_writer
        self._last_writer = run_id
        return self._writer.submit(
            lambda c: _apply(c, prepared, known), inline=alone, append=prepared
        )

    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        def fn(c: sqlite3.Connection) -> list[Event]:
            rows = c.execute(
                "SELECT body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, after_seq),
            ).fetchall()
            if not rows:
                _get_run(c, run_id)  # RunNotFound for an unknown run
            return [json.loads(r[0]) for r in rows]

        return await self.read(fn)

    async def list_runs(
        self, *, saga: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        def fn(c: sqlite3.Connection) -> list[RunRecord]:
            sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE 1 = 1"
            args: list[Any] = []
            if saga is not None:
                sql += " AND saga = ?"
                args.append(saga)
            if status is not None:
                sql += " AND status = ?"
                args.append(status)
            sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
            args.append(limit)
            return [_record(r) for r in c.execute(sql, args)]

        return await self.read(fn)

    # -- more than the interface: what durability needs -----------------------------------

    async def claim_key(self, key: str, run_id: str, input_hash: str) -> tuple[str, str]:
        """Claim a run-level idempotency key for `run_id`; returns the (run_id, input_hash) the
        key belongs to: ours when it was free, the first claimant's otherwise."""

        def fn(c: sqlite3.Connection) -> tuple[str, str]:
            row = c.execute(
                "SELECT run_id, input_hash FROM idempotency_keys WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                return row[0], row[1]
            c.execute(
                "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?)",
                (key, run_id, input_hash, rfc3339(time.time())),
            )
            return run_id, input_hash

        return await self.write(fn)

    async def rebind_definition(self, run_id: str, new_hash: str, actor: str) -> None:
        """A forced resume under a changed definition: the run and its pending approval
        requests now belong to `new_hash` (audited with the old one)."""

        def fn(c: sqlite3.Connection) -> None:
            old = _get_run(c, run_id).definition_hash
            c.execute("UPDATE runs SET definition_hash = ? WHERE run_id = ?", (new_hash, run_id))
            c.execute(
                "UPDATE approvals SET definition_hash = ? WHERE run_id = ? AND status = 'pending'",
                (new_hash, run_id),
            )
            add_audit(
                c,
                run_id=run_id,
                actor=actor,
                action="force_resume",
                outcome="accepted",
                message="resumed under a changed definition",
                detail={"from": old, "to": new_hash},
            )

        await self.write(fn)

    async def steps(self, run_id: str) -> list[dict[str, Any]]:
        """The materialised state of every step of a run, in the order they started."""

        def fn(c: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = c.execute(
                "SELECT step, item_index, status, attempt, idempotency_key, result, error,"
                " started_seq, ended_seq, comp_status, comp_attempt FROM steps"
                " WHERE run_id = ? ORDER BY COALESCE(started_seq, ended_seq), step, item_index",
                (run_id,),
            )
            out = []
            for r in cur:
                out.append(
                    {
                        "step": r[0],
                        "item_index": None if r[1] < 0 else r[1],
                        "status": r[2],
                        "attempt": r[3],
                        "idempotency_key": r[4],
                        "result": _loads(r[5]),
                        "error": _loads(r[6]),
                        "started_seq": r[7],
                        "ended_seq": r[8],
                        "compensation": r[9],
                        "compensation_attempt": r[10],
                    }
                )
            return out

        return await self.read(fn)

    async def dump_tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (for tests and `sagac inspect`-style audits)."""

        def fn(c: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
            names = [
                r[0]
                for r in c.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%'"
                )
            ]
            return {n: c.execute(f'SELECT * FROM "{n}"').fetchall() for n in names}

        return await self.read(fn)

    # leases

    async def acquire_lease(self, run_id: str, owner: str, ttl: float) -> float:
        """Take (or re-take) the run's lease for `ttl` seconds; returns its expiry. Raises
        LeaseHeld when another owner holds an unexpired lease."""

        def fn(c: sqlite3.Connection) -> float:
            now = time.time()
            _check_lease(c, run_id, owner, now)
            expires = now + ttl
            c.execute(
                "INSERT INTO leases (run_id, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner,"
                " acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                (run_id, owner, rfc3339(now), expires),
            )
            return expires

        return await self.write(fn)

    async def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        """Extend our lease; False when it is no longer ours (it expired and was taken)."""

        def fn(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE leases SET expires_at = ? WHERE run_id = ? AND owner = ?",
                (time.time() + ttl, run_id, owner),
            )
            return cur.rowcount == 1

        return await self.write(fn)

    async def release_lease(self, run_id: str, owner: str) -> None:
        await self.write(
            lambda c: c.execute(
                "DELETE FROM leases WHERE run_id = ? AND owner = ?", (run_id, owner)
            )
        )

    async def get_lease(self, run_id: str) -> tuple[str, float] | None:
        """(owner, expires_at) of an unexpired lease, else None."""

        def fn(c: sqlite3.Connection) -> tuple[str, float] | None:
            row = c.execute(
                "SELECT owner, expires_at FROM leases WHERE run_id = ? AND expires_at > ?",
                (run_id, time.time()),
            ).fetchone()
            return (row[0], row[1]) if row else None

        return await self.read(fn)

    # cancel requests

    async def request_cancel(self, run_id: str, by: str, reason: str | None) -> bool:
        """Record a cancel request (and its audit entry); False when one was already there."""

        def fn(c: sqlite3.Connection) -> bool:
            record = _get_run(c, run_id)
            now = rfc3339(time.time())
            first = not record.meta.get("cancel_requested_at")
            if first:
                c.execute(
                    "UPDATE runs SET cancel_requested_at = ?, cancel_by = ?, cancel_reason = ?"
                    " WHERE run_id = ?",
                    (now, by, reason, run_id),
                )
            add_audit(
                c,
                run_id=run_id,
                actor=by,
                action="cancel",
                outcome="accepted" if first else "repeated",
                message=reason,
            )
            return first

        return await self.write(fn)

    async def cancel_request(self, run_id: str) -> dict[str, Any] | None:
        """{at, by, reason} when a cancel was requested, else None."""

        def fn(c: sqlite3.Connection) -> dict[str, Any] | None:
            row = c.execute(
                "SELECT cancel_requested_at, cancel_by, cancel_reason FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None or row[0] is None:
                return None
            return {"at": row[0], "by": row[1], "reason": row[2]}

        return await self.read(fn)

    # approvals and audit

    async def approvals(
        self, run_id: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        def fn(c: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE 1 = 1"
            args: list[Any] = []
            if run_id is not None:
                sql += " AND run_id = ?"
                args.append(run_id)
            if status is not None:
                sql += " AND status = ?"
                args.append(status)
            return [_approval(r) for r in c.execute(sql + " ORDER BY requested_at", args)]

        return await self.read(fn)

    async def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in a write transaction of its own group commit (for `approvals`)."""
        return await self.write(fn)

    async def audit(self, **entry: Any) -> None:
        """Write one audit entry (run_id, gate, actor, action, outcome, code, message, detail)."""
        await self.write(lambda c: add_audit(c, **entry))

    async def audit_log(self, run_id: str | None = None) -> list[dict[str, Any]]:
        def fn(c: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = "SELECT id, at, run_id, gate, actor, action, outcome, code, message, detail"
            sql += " FROM audit"
            args: tuple[Any, ...] = ()
            if run_id is not None:
                sql += " WHERE run_id = ?"
                args = (run_id,)
            keys = ("id", "at", "run_id", "gate", "actor", "action", "outcome", "code")
            out = []
            for r in c.execute(sql + " ORDER BY id", args):
                entry = dict(zip(keys, r[:8], strict=True))
                entry["message"], entry["detail"] = r[8], _loads(r[9])
                out.append(entry)
            return out

        return await self.read(fn)


# -- SQL helpers, run on the worker threads ---------------------------------------------------

_RUN_COLUMNS = (
    "run_id, saga, version, definition_hash, file, input, status, created_at, updated_at,"
    " report, meta, cancel_requested_at, cancel_by, cancel_reason,"
    " (SELECT key FROM idempotency_keys k WHERE k.run_id = runs.run_id)"
)


def _record(r: Sequence[Any]) -> RunRecord:
    meta = _loads(r[10]) or {}
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
        input=_loads(r[5]),
        status=r[6],
        created_at=r[7],
        updated_at=r[8],
        report=_loads(r[9]),
        meta=meta,
    )


def _get_run(c: sqlite3.Connection, run_id: str) -> RunRecord:
    row = c.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(f"no run {run_id!r} in this store")
    return _record(row)


def _check_lease(c: sqlite3.Connection, run_id: str, owner: str | None, now: float) -> None:
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


def add_audit(
    c: sqlite3.Connection,
    *,
    action: str,
    outcome: str,
    run_id: str | None = None,
    gate: str | None = None,
    actor: str | None = None,
    code: str | None = None,
    message: str | None = None,
    detail: Any = None,
) -> None:
    c.execute(
        "INSERT INTO audit (at, run_id, gate, actor, action, outcome, code, message, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            rfc3339(time.time()),
            run_id,
            gate,
            actor,
            action,
            outcome,
            code,
            message,
            None if detail is None else _dumps(detail),
        ),
    )


def next_seq(c: sqlite3.Connection, run_id: str) -> int:
    row = c.execute("SELECT MAX(seq) FROM events WHERE run_id = ?", (run_id,)).fetchone()
    return int(row[0] or 0) + 1


def append_external(
    c: sqlite3.Connection, run_id: str, owner: str | None, type_: str, fields: dict[str, Any]
) -> Event:
    """Append one event from outside a running executor (a decision, a timeout): at the next
    seq, and only while no other live owner holds the run's lease (it would number its own)."""
    _check_lease(c, run_id, owner, time.time())
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


class _Prepared:
    """An append made ready on the caller's thread (JSON encoded, statements built), so that
    the writer thread, the bottleneck of group commit, only executes SQL."""

    __slots__ = ("at", "rows", "run_id", "statements", "status")

    def __init__(self, run_id: str, events: Sequence[Event]) -> None:
        self.run_id = run_id
        self.rows = [
            (run_id, e["seq"], e["type"], e["at"], e.get("step"), _dumps(e)) for e in events
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


def _apply(c: sqlite3.Connection, p: _Prepared, known: set[str] | None = None) -> None:
    """Write one prepared append."""
    _apply_all(c, (p,), known)


def _apply_all(
    c: sqlite3.Connection, appends: Sequence[_Prepared], known: set[str] | None = None
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
    _apply(c, _Prepared(run_id, events))


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
        result = _dumps(e["result"]) if "result" in e else None
        error = _dumps(e["error"]) if e.get("error") is not None else None
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
                _dumps(e.get("approvers", [])),
                _dumps(context) if context is not None else None,
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
                _dumps(value) if value is not None else None,
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


_APPROVAL_COLUMNS = (
    "run_id, gate, key, message, approvers, context, deadline, deadline_epoch, on_timeout,"
    " token_sha256, definition_hash, status, requested_at, requested_seq, decided_by,"
    " decided_at, comment, value, decision_code"
)


def _approval(r: Sequence[Any]) -> dict[str, Any]:
    names = [n.strip() for n in _APPROVAL_COLUMNS.split(",")]
    out = dict(zip(names, r, strict=True))
    out["approvers"] = _loads(out["approvers"]) or []
    out["context"] = _loads(out["context"])
    out["value"] = _loads(out["value"])
    return out


def get_approval(c: sqlite3.Connection, run_id: str, gate: str) -> dict[str, Any] | None:
    row = c.execute(
        f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE run_id = ? AND gate = ?",
        (run_id, gate),
    ).fetchone()
    return _approval(row) if row else None


get_run_sync = _get_run
