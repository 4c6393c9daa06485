"""The journal file's connections and the threads that use them: group commit.

A store has two `Worker`s, each a thread with its own connection. The writer takes every
queued operation, runs them in one `BEGIN IMMEDIATE` transaction (a savepoint each if one of
them fails, so it fails alone) and commits; only then does each caller's `await` return. A
batch of plain appends is one multi-row INSERT outside a transaction instead, which SQLite
commits by itself: one call, so one GIL hand-over for the writer thread.
Appends from many concurrent sagas in one process therefore share a commit, and none of them
acts before its own record is durable. The reader runs reads one by one; WAL lets them run
while the writer commits. Other processes may open the same file: `busy_timeout` makes their
writers wait for each other instead of failing.

This module owns transactions and nothing else: it never builds SQL about runs, events or
steps (the operations it is given do, and journal appends are written by `sqlite_journal`),
and it never resolves a caller's future before the commit that made its write durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from sagac.errors import StoreError

from .sqlite_journal import Prepared, apply_all, one_statement

T = TypeVar("T")
BUSY_TIMEOUT_MS = 30_000
MAX_BATCH = 2_000  # operations per group commit
CACHED_STATEMENTS = 384  # one multi-row INSERT per size (sqlite_journal.MAX_ROWS), the rest
MIN_SQLITE = (3, 38)  # JSON `->`/`->>` in the `steps` view (migration 5)


def connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the journal at `path`. `readonly`: opened with `mode=ro`, so that
    nothing (no WAL setting, no checkpoint) is ever written; when even that cannot open the
    file (the folder is not writable, so no `-shm` file can be made), it is read as an
    immutable snapshot."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreError(
            f"the journal needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; this Python"
            f" uses {sqlite3.sqlite_version}",
            hint="use a Python linked with a newer SQLite, or --store memory",
        )
    if readonly:
        return _connect_readonly(path)
    try:
        c = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
            cached_statements=CACHED_STATEMENTS,
        )
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        c.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as e:
        raise StoreError(f"cannot open the journal {path}: {e}") from None
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot put the journal {path} in WAL mode (got {mode})")
    return c


def _connect_readonly(path: str) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(os.path.abspath(path))
    error: sqlite3.Error | None = None
    for options in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            c = sqlite3.connect(
                uri + options,
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            c.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the file now
            return c
        except sqlite3.Error as e:
            error = e
    raise StoreError(f"cannot open the journal {path} to read it: {error}") from None


class _Op:
    __slots__ = ("append", "error", "fn", "future", "loop", "result")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], Any], append: Prepared | None = None
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


class Worker:
    """A thread with its own connection that runs queued operations; a writer groups every
    queued operation into one transaction.

    A writer may also run an operation inline, on the caller's thread, when nothing is queued
    or in progress: that saves two thread hand-overs per commit for a lone saga, at the price
    of holding up the caller's loop for that commit. Callers ask for it only while a single
    run is writing (`SqliteStore.submit_append`), so concurrent runs still share commits.
    """

    def __init__(self, path: str, *, writer: bool, readonly: bool = False) -> None:
        self.path = path
        self.writer = writer
        self.readonly = readonly
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
        append: Prepared | None = None,
    ) -> asyncio.Future[T]:
        op = _Op(fn, append)
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.conn = connect(self.path, self.readonly)
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
        appends are written together (`apply_all`: one multi-row INSERT of their events instead of
        one per event, each a GIL hand-over on this thread) and any failure rolls back the
        whole batch: False, so that the caller runs it again with a savepoint per operation
        (a batch of one simply fails)."""
        if not savepoints and self._one_statement(conn, batch):
            return True
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            for op in batch:
                op.error = StoreError(f"cannot write to the journal {self.path}: {e}")
            return True
        if not savepoints:
            try:
                appends: list[Prepared] = []
                for op in batch:
                    if op.append is not None:
                        appends.append(op.append)
                        continue
                    if appends:
                        apply_all(conn, appends, self.known)
                        appends = []
                    op.result = op.fn(conn)
                if appends:
                    apply_all(conn, appends, self.known)
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

    def _one_statement(self, conn: sqlite3.Connection, batch: list[_Op]) -> bool:
        """Commit a batch of plain appends as one autocommit INSERT (`one_statement`); False
        when the batch is not one, or the INSERT failed (it then wrote nothing, and the
        caller's transaction finds which operation is at fault)."""
        appends = [op.append for op in batch if op.append is not None]
        if len(appends) != len(batch):
            return False
        statement = one_statement(appends, self.known)
        if statement is None:
            return False
        try:
            conn.execute(*statement)
        except sqlite3.Error:
            return False
        self.commits += 1
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
