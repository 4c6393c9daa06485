"""The durable journal: one SQLite file (WAL, synchronous=FULL) shared by processes.

`SqliteStore` is the `Store` contract (`base.py`) on such a file: runs and journals, run-level
idempotency keys, leases, cancel requests, approvals and the audit log, parked rows,
signals, callbacks and child runs, and for workers the stored definitions, claims (one write
transaction), wake times and the worker registry, as SQL. Its parts:

* `sqlite_writer`: the connections and the writer and reader threads (group commit);
* `sqlite_journal`: appends, and the materialised view (`steps`, `approvals`, the run's
  status) they change in the same transaction;
* `sqlite_rows`: rows read and written on a connection (runs, approval requests, groups,
  audit entries); what a row means is `rows.py`'s, shared with PostgreSQL;
* `sqlite_leases`: who may write a run's journal, and writing a lease.

This module is the one front door: other code uses the SQLite store only as a `Store` (tests
and benchmarks also read `commits`, `write`, `read`). It never writes outside a `write`
operation (so every change is in a group commit) and never sees a secret: what it is given has
been redacted by the executor.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sagac.runtime import codec
from sagac.runtime.clock import parse_rfc3339, rfc3339

from sagac.errors import (
    DecisionConflict,
    RunFinished,
    RunNotFound,
    SignalAlreadySent,
    StoreError,
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
    pick_token,
    rebind_entry,
    signal_audit,
    token_entry,
    with_seq,
)
from .migrations import (
    API_TOKENS_FROM,
    PARKED_FROM,
    READS_FROM,
    SCHEMA_VERSION,
    TOKENS_FROM,
    WORKERS_FROM,
    current_version,
    migrate,
)
from .rows import (
    API_TOKEN_COLUMNS,
    APPROVAL_COLUMNS,
    CLAIM_ORDER,
    DEFINITION_COLUMNS,
    PARKED_SELECT,
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
    run_columns,
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
from .sqlite_journal import Prepared, append_external, apply, status_changed
from .sqlite_leases import check_lease, take_lease
from .sqlite_rows import add_audit, get_approval, get_run_sync, group_members
from .sqlite_writer import Worker, connect

__all__ = ["SqliteStore"]

T = TypeVar("T")
# The runs a claim takes (now, now, now + CLAIM_HORIZON, limit), read in order along
# `runs_to_claim` (named: with no statistics the planner would rather read `runs_by_status` and
# sort every unfinished run). The horizon bounds that read: a run that is not parked has a wake
# time no later than now (its creation or resumption, `rows.unpark_wake`), so only parked runs
# lie beyond it, and an empty claim never reads those waiting for a later deadline (2 ms for
# 10,000 of them without the bound, read at every claim of a worker while they wait); the
# margin is for a clock set back meanwhile.
CLAIM_SQL = (
    f"SELECT run_id FROM runs INDEXED BY runs_to_claim WHERE {runnable('?')}"
    f" AND wake_at <= ? ORDER BY {CLAIM_ORDER} LIMIT ?"
)
CLAIM_HORIZON = 1.0
POLL_SECONDS = 0.025  # how often `wait_for_work` looks at the file's commit counter
# ... and once nothing was committed for IDLE_AFTER seconds: each look wakes the process (about
# 0.2 ms of CPU on a busy 2-core VM), so an idle worker polling every 25 ms used 1% of a core.
IDLE_POLL_SECONDS = 0.1
IDLE_AFTER = 1.0


def _data_version(c: sqlite3.Connection) -> int:
    return int(c.execute("PRAGMA data_version").fetchone()[0])


@functools.lru_cache(maxsize=256)
def _absolute(cwd: str, file: str) -> str:
    """`file` (seen from `cwd`) as an absolute path when it exists, else as given: looked up
    once per folder and file, not for every run (a few system calls each)."""
    path = Path(cwd, file)
    return str(path.resolve()) if path.exists() else file


class SqliteStore(Store):
    """The `Store` on one SQLite file, shared by every process that opens it."""

    group_commit = True

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = str(path)
        self.readonly = readonly
        if readonly:
            self.migrated_from = self._check_schema()
        else:
            if self.path != ":memory:":
                try:
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StoreError(
                        f"cannot create the folder of {self.path}: {e.strerror}"
                    ) from None
            c = connect(self.path)
            try:
                self.migrated_from = migrate(c, self.path)
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{self.path} is not a sagac journal: {e}") from None
            finally:
                c.close()
        self._leased: dict[str, str] = {}  # run id -> owner: the leases this store holds
        self._last_writer: str | None = None  # of appends: for writers without a lease
        self._ended: set[tuple[str, str]] = set()  # (run id, owner): ended by a final append
        # The schema this store reads: a read-only store reads an older file as it is.
        self._schema = self.migrated_from if readonly else SCHEMA_VERSION
        # What a run's row is read as: a read-only look at an older file reads NULL for the
        # columns it does not have yet.
        self._run_columns = run_columns(
            wake_at=self._schema >= WORKERS_FROM,
            approval_token=self._schema >= TOKENS_FROM,
            parent=self._schema >= PARKED_FROM,
        )
        self._data_version: int | None = None  # the file's commit counter, last seen
        self._watch: sqlite3.Connection | None = None  # `wait_for_work`'s own connection
        self._changed_at = time.monotonic()  # when `wait_for_work` last saw a commit
        self._writer = Worker(self.path, writer=True, readonly=readonly)
        self._reader = Worker(self.path, writer=False, readonly=readonly)

    async def migrate(self) -> tuple[int, int]:
        """Done when the store was opened (read-only: checked, never upgraded)."""
        before = self.migrated_from or 0
        return before, before if self.readonly else max(before, SCHEMA_VERSION)

    def _check_schema(self) -> int:
        """A read-only store reads an existing journal as it is (from schema `READS_FROM`
        on): it neither creates nor upgrades one (an inspection never changes a journal)."""
        if not Path(self.path).is_file():
            raise StoreError(f"there is no journal at {self.path}")
        c = connect(self.path, readonly=True)
        try:
            version = current_version(c)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path} is not a sagac journal: {e}") from None
        finally:
            c.close()
        if version == 0:
            raise StoreError(
                f"{self.path} is not a sagac journal (it has no journal tables)",
                hint="point --store at the journal `sagac run` wrote (default .sagac/sagac.db)",
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has journal schema version {version}, newer than this sagac"
                f" knows ({SCHEMA_VERSION})",
                hint="upgrade sagac, or point --store at another file",
            )
        if version < READS_FROM:
            raise StoreError(
                f"{self.path} has journal schema version {version}, too old to read as it is"
                f" (this sagac reads {READS_FROM} to {SCHEMA_VERSION}); reading never upgrades it",
                hint="the next command that writes to it (run, resume, cancel, approve,"
                " reject) upgrades it in place",
            )
        return version

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    @property
    def commits(self) -> int:
        return self._writer.commits

    def write(
        self, fn: Callable[[sqlite3.Connection], T], inline: bool = False
    ) -> asyncio.Future[T]:
        """Run `fn(conn)` in the next group commit; the future resolves after the commit.
        `inline`: commit on the caller's thread if nothing else is queued (see `Worker`)."""
        return self._writer.submit(fn, inline)

    def _alone(self, run_id: str) -> bool:
        """Whether no run but `run_id` is being driven through this store: then its writes may
        commit inline, with no thread hand-over, as there is no other run's commit to share.
        A run driven by an executor holds a lease; appends without one (the store used
        directly) count as alone while the same run keeps writing."""
        leased = self._leased
        if leased:
            return len(leased) == 1 and run_id in leased
        return run_id == self._last_writer

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        return self._reader.submit(fn)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        self._writer.stop()
        self._reader.stop()
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    # -- runs and the journal --------------------------------------------------------------

    async def create_run(self, record: RunRecord, definition: Definition | None = None) -> None:
        now = time.time()
        wake = min(parse_rfc3339(record.created_at), now) if record.created_at else now
        record.created_at = record.created_at or rfc3339(now)
        record.updated_at = rfc3339(now)
        if record.file:
            record.file = _absolute(os.getcwd(), record.file)  # resume works from any folder
        if definition is not None and definition.file:
            definition = replace(definition, file=_absolute(os.getcwd(), definition.file))

        def fn(c: sqlite3.Connection) -> None:
            try:
                c.execute(insert_run("?"), run_values(record, wake))
            except sqlite3.IntegrityError:
                raise StoreError(f"run {record.run_id!r} already exists") from None
            if definition is not None:
                c.execute(insert_definition("?"), definition_values(definition))

        await self.write(fn, self._alone(record.run_id))

    async def get_run(self, run_id: str) -> RunRecord:
        return await self.read(partial(get_run_sync, run_id=run_id, columns=self._run_columns))

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
                    (status, now, dumps(report), run_id),
                )
            if cur.rowcount == 0:
                raise RunNotFound(f"no run {run_id!r} in {self.path}")
            status_changed(c, run_id, status)

        await self.write(fn, self._alone(run_id))

    async def append(
        self, run_id: str, events: Sequence[Event], report: dict[str, Any] | None = None
    ) -> None:
        if events:
            await self.submit_append(run_id, events, report)

    def submit_append(
        self, run_id: str, events: Sequence[Event], report: dict[str, Any] | None = None
    ) -> asyncio.Future[None]:
        """Queue an append now (in call order) and return the future of its commit. While one
        run writes alone it commits inline (see `Worker`). The final append (with the run's
        `report`) also ends the lease this store holds on the run, in the same commit."""
        alone = self._alone(run_id)
        release = self._leased.pop(run_id, None) if report is not None else None
        if release is not None:
            self._ended.add((run_id, release))
        prepared = Prepared(run_id, events, report, release)
        known = self._writer.known
        self._last_writer = run_id
        return self._writer.submit(
            lambda c: apply(c, prepared, known), inline=alone, append=prepared
        )

    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        def fn(c: sqlite3.Connection) -> list[Event]:
            rows = c.execute(
                "SELECT body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, after_seq),
            ).fetchall()
            if not rows:
                get_run_sync(c, run_id)  # RunNotFound for an unknown run
            return [codec.loads(r[0]) for r in rows]

        return await self.read(fn)

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
        def fn(c: sqlite3.Connection) -> list[RunRecord]:
            where, args = list_clause("?", "rowid", saga, status, since, until, before)
            sql = f"SELECT {self._run_columns} FROM runs{where}"
            sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
            return [run_record(r) for r in c.execute(sql, [*args, limit])]

        return await self.read(fn)

    async def definition(self, definition_hash: str) -> Definition | None:
        if self._schema < WORKERS_FROM:  # a read-only look at a file older than definitions
            return None

        def fn(c: sqlite3.Connection) -> Definition | None:
            row = c.execute(
                f"SELECT {DEFINITION_COLUMNS} FROM definitions WHERE hash = ?", (definition_hash,)
            ).fetchone()
            return definition_row(row) if row else None

        return await self.read(fn)

    async def claim_key(self, saga: str, key: str, run_id: str, input_hash: str) -> tuple[str, str]:
        """Claim saga `saga`'s run-level idempotency key for `run_id`; returns the (run_id,
        input_hash) the key belongs to: ours when it was free, the first claimant's otherwise.
        Keys are scoped to the saga's name: another saga's use of the same key is no claim."""

        def fn(c: sqlite3.Connection) -> tuple[str, str]:
            row = c.execute(
                "SELECT run_id, input_hash FROM idempotency_keys WHERE saga = ? AND key = ?",
                (saga, key),
            ).fetchone()
            if row is None:  # a claim from before keys were scoped, whose run never started
                row = c.execute(
                    "UPDATE idempotency_keys SET saga = ? WHERE saga = '' AND key = ?"
                    " RETURNING run_id, input_hash",
                    (saga, key),
                ).fetchone()
            if row is not None:
                return row[0], row[1]
            c.execute(
                "INSERT INTO idempotency_keys (saga, key, run_id, input_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (saga, key, run_id, input_hash, rfc3339(time.time())),
            )
            return run_id, input_hash

        return await self.write(fn)

    async def rebind_definition(self, run_id: str, definition: Definition, actor: str) -> None:
        """A forced resume under a changed definition: the run and its pending approval
        requests now belong to `definition` (kept here too; audited with the old hash)."""
        new_hash = definition.hash
        if definition.file:
            definition = replace(definition, file=_absolute(os.getcwd(), definition.file))

        def fn(c: sqlite3.Connection) -> None:
            old = get_run_sync(c, run_id).definition_hash
            c.execute(insert_definition("?"), definition_values(definition))
            c.execute("UPDATE runs SET definition_hash = ? WHERE run_id = ?", (new_hash, run_id))
            c.execute(
                "UPDATE approvals SET definition_hash = ? WHERE run_id = ? AND status = 'pending'",
                (new_hash, run_id),
            )
            add_audit(c, rebind_entry(run_id, actor, old, new_hash))

        await self.write(fn)

    async def steps(self, run_id: str) -> list[dict[str, Any]]:
        """The state of every step of a run (the `steps` view), in the order they started."""

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
                        "result": loads(r[5]),
                        "error": loads(r[6]),
                        "started_seq": r[7],
                        "ended_seq": r[8],
                        "compensation": r[9],
                        "compensation_attempt": r[10],
                    }
                )
            return out

        return await self.read(fn)

    async def dump_tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table and view (for tests and `sagac inspect`-style audits)."""

        def fn(c: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
            names = [
                r[0]
                for r in c.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
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
            check_lease(c, run_id, owner, now)
            return take_lease(c, run_id, owner, now, ttl)

        # Counted as driven from now on, and never inline: runs started together all ask for
        # their leases before any of them can take itself to be alone.
        had = self._leased.get(run_id)
        self._leased[run_id] = owner
        try:
            return await self.write(fn)
        except BaseException:
            if had is None:
                self._leased.pop(run_id, None)
            else:
                self._leased[run_id] = had
            raise

    async def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        """Extend our lease; False when it is no longer ours (it expired and was taken)."""
        if (run_id, owner) in self._ended:
            return True  # the run's final append ended it: nothing more will be written

        def fn(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE leases SET expires_at = ? WHERE run_id = ? AND owner = ?",
                (time.time() + ttl, run_id, owner),
            )
            return cur.rowcount == 1

        return await self.write(fn)

    async def release_lease(self, run_id: str, owner: str) -> None:
        if (run_id, owner) in self._ended:  # already, by the run's final append
            self._ended.discard((run_id, owner))
            return
        if self._leased.get(run_id) == owner:
            del self._leased[run_id]
        await self.write(
            lambda c: c.execute(
                "DELETE FROM leases WHERE run_id = ? AND owner = ?", (run_id, owner)
            ),
            self._alone(run_id),
        )

    async def get_lease(self, run_id: str, *, expired: bool = False) -> tuple[str, float] | None:
        """(owner, expires_at) of an unexpired lease (or, with `expired`, any), else None."""

        def fn(c: sqlite3.Connection) -> tuple[str, float] | None:
            row = c.execute(
                "SELECT owner, expires_at FROM leases WHERE run_id = ? AND expires_at > ?",
                (run_id, float("-inf") if expired else time.time()),
            ).fetchone()
            return (row[0], row[1]) if row else None

        return await self.read(fn)

    # workers

    async def claim_runs(self, owner: str, ttl: float, limit: int) -> list[str]:
        """One write transaction (`BEGIN IMMEDIATE`: other processes' claims wait for it) that
        picks the runnable runs (`CLAIM_SQL`) and writes their leases."""

        def fn(c: sqlite3.Connection) -> list[str]:
            now = time.time()
            ids = [r[0] for r in c.execute(CLAIM_SQL, (now, now, now + CLAIM_HORIZON, limit))]
            for run_id in ids:
                take_lease(c, run_id, owner, now, ttl)
            return ids

        if limit <= 0:
            return []
        claimed = await self.write(fn)
        for run_id in claimed:  # driven through this store from now on (see `_alone`)
            self._leased[run_id] = owner
            self._ended.discard((run_id, owner))
        return claimed

    async def next_wake(self) -> float | None:
        if self._schema < WORKERS_FROM:
            return None

        def fn(c: sqlite3.Connection) -> float | None:
            now = time.time()
            sql = next_wake_sql("?", "INDEXED BY runs_to_claim")
            row = c.execute(sql, (now, now, now)).fetchone()
            return None if row[0] is None else float(row[0])

        return await self.read(fn)

    async def wait_for_work(self, timeout: float) -> bool:
        """Poll the file's `PRAGMA data_version` on a connection of its own every
        `POLL_SECONDS` (`IDLE_POLL_SECONDS` once nothing was committed for `IDLE_AFTER`
        seconds): it changes when any other connection commits (another process, or this
        store's own writer: a spurious wake at worst). The value a wait last returned on is
        kept, so a commit made while nobody waited wakes the next wait, and every wait that
        began before a commit wakes on it."""
        deadline = time.monotonic() + timeout
        # Read inline on a connection of its own (microseconds, from the shared WAL index):
        # through the reader's thread, the hand-overs cost an idle worker 1.4% of a core.
        if self._watch is None:
            self._watch = connect(self.path, readonly=self.readonly)
        seen = self._data_version
        if seen is None:
            seen = self._data_version = _data_version(self._watch)
        while True:
            version = _data_version(self._watch)
            now = time.monotonic()
            if version != seen:
                self._data_version, self._changed_at = version, now
                return True
            left = deadline - now
            if left <= 0:
                return False
            idle = now - self._changed_at > IDLE_AFTER
            await asyncio.sleep(min(IDLE_POLL_SECONDS if idle else POLL_SECONDS, left))

    async def heartbeat(self, worker: WorkerInfo) -> None:
        values = worker_values(worker, time.time())
        await self.write(lambda c: c.execute(upsert_worker("?"), values))

    async def remove_worker(self, worker_id: str) -> None:
        sql = "DELETE FROM workers WHERE worker_id = ?"
        await self.write(lambda c: c.execute(sql, (worker_id,)))

    async def workers(self, alive_within: float) -> list[WorkerInfo]:
        if self._schema < WORKERS_FROM:
            return []

        def fn(c: sqlite3.Connection) -> list[WorkerInfo]:
            now = time.time()
            held: dict[str, list[str]] = {}
            for owner, run_id in c.execute(
                "SELECT owner, run_id FROM leases WHERE expires_at > ?", (now,)
            ):
                held.setdefault(owner, []).append(run_id)
            rows = c.execute(
                f"SELECT {WORKER_COLUMNS} FROM workers WHERE heartbeat_epoch >= ?"
                " ORDER BY started_at, worker_id",
                (now - alive_within,),
            )
            return [worker_row(r, held.get(r[0], ())) for r in rows]

        return await self.read(fn)

    # cancel requests

    async def request_cancel(self, run_id: str, by: str, reason: str | None) -> bool:
        """Record a cancel request (and its audit entry); False when one was already there."""

        def fn(c: sqlite3.Connection) -> bool:
            record = get_run_sync(c, run_id)
            now = rfc3339(time.time())
            first = not record.meta.get("cancel_requested_at")
            if first:
                c.execute(
                    "UPDATE runs SET cancel_requested_at = ?, cancel_by = ?, cancel_reason = ?,"
                    " wake_at = ? WHERE run_id = ?",
                    (now, by, reason, time.time(), run_id),
                )
            add_audit(c, cancel_entry(run_id, by, reason, first))
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

    # approver groups

    async def add_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        def fn(c: sqlite3.Connection) -> list[str]:
            now, by = rfc3339(time.time()), os_user()
            added = [
                user
                for user in dict.fromkeys(users)
                if c.execute(
                    "INSERT INTO approver_groups VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (group, user, now, by),
                ).rowcount
            ]
            add_audit(c, group_change("group_add", group, users, added))
            return added

        return await self.write(fn)

    async def remove_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        def fn(c: sqlite3.Connection) -> list[str]:
            removed = [
                user
                for user in dict.fromkeys(users)
                if c.execute(
                    "DELETE FROM approver_groups WHERE name = ? AND member = ?", (group, user)
                ).rowcount
            ]
            add_audit(c, group_change("group_remove", group, users, removed))
            return removed

        return await self.write(fn)

    async def group_members(self, group: str | None = None) -> dict[str, list[str]]:
        return await self.read(partial(group_members, name=group))

    # parked nodes, signals, callbacks, child runs

    async def parked(self, run_id: str) -> list[Parked]:
        if self._schema < PARKED_FROM:  # a read-only look at a file older than parked rows
            return []
        sql = f"SELECT {PARKED_SELECT} FROM parked WHERE run_id = ? ORDER BY opened_seq"
        return await self.read(lambda c: [parked_from(r) for r in c.execute(sql, (run_id,))])

    async def send_signal(
        self, run_id: str, name: str, data: Any, audit: AuditEntry, *, limit: int
    ) -> Signal:
        """One write transaction: the checks, the signal, its audit entry and the run's wake
        (one writer: a run parking meanwhile commits before or after it, and sees it)."""

        def fn(c: sqlite3.Connection) -> Signal:
            status = get_run_sync(c, run_id).status  # RunNotFound
            if status in FINISHED_STATUSES:
                raise RunFinished(f"run {run_id} has finished ({status})")
            (sent,) = c.execute(
                "SELECT COUNT(*) FROM signals WHERE run_id = ? AND name = ?", (run_id, name)
            ).fetchone()
            if sent >= limit:
                raise SignalAlreadySent(f"run {run_id} was sent {sent} {name!r} signal(s) already")
            signal = signal_from(
                c.execute(
                    insert_signal("?"), signal_values(run_id, name, data, audit.actor)
                ).fetchone()
            )
            add_audit(c, signal_audit(audit, signal))
            if c.execute(waited_for("?"), (run_id, name)).fetchone():
                c.execute(wake_parked("?"), (time.time(), run_id)).fetchall()
            return signal

        return await self.write(fn)

    async def signals(self, run_id: str, name: str | None = None) -> list[Signal]:
        if self._schema < PARKED_FROM:
            return []
        where, args = where_clause("?", run_id=run_id, name=name)
        sql = f"SELECT {SIGNAL_SELECT} FROM signals{where} ORDER BY signal_id"
        return await self.read(lambda c: [signal_from(r) for r in c.execute(sql, args)])

    async def callback(self, token_sha256: str) -> Parked | None:
        if self._schema < PARKED_FROM:
            return None
        return await self.read(partial(_callback_row, token=token_sha256))

    async def complete_callback(
        self, token_sha256: str, outcome: dict[str, Any], audit: AuditEntry
    ) -> Parked:
        """One write transaction: the checks (`base.callback_refusal`), the outcome where
        there is none yet, its audit entry and the run's wake."""

        def fn(c: sqlite3.Connection) -> Parked:
            row = _callback_row(c, token_sha256)
            if row is None:
                raise UnknownCallbackToken("no callback was issued with this token")
            run_id = row["run_id"]
            status = get_run_sync(c, run_id).status
            siblings = [
                parked_from(r)
                for r in c.execute(
                    f"SELECT {PARKED_SELECT} FROM parked WHERE run_id = ? AND step = ?"
                    " AND attempt != ?",
                    (run_id, row["step"], row["attempt"]),
                )
            ]
            callback_refusal(row, status, siblings, time.time())
            done = c.execute(
                record_outcome("?"), outcome_values(outcome, audit.actor, token_sha256)
            ).fetchone()
            add_audit(c, callback_audit(audit, row))
            c.execute(wake_parked("?"), (time.time(), run_id)).fetchall()
            return parked_from(done)

        return await self.write(fn)

    async def children(self, run_id: str) -> list[RunRecord]:
        if self._schema < PARKED_FROM:
            return []
        sql = (
            f"SELECT {self._run_columns} FROM runs WHERE parent_run_id = ?"
            " ORDER BY created_at, rowid"
        )
        return await self.read(lambda c: [run_record(r) for r in c.execute(sql, (run_id,))])

    # approvals and audit

    async def approvals(
        self, run_id: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        def fn(c: sqlite3.Connection) -> list[dict[str, Any]]:
            where, args = where_clause("?", run_id=run_id, status=status)
            sql = f"SELECT {APPROVAL_COLUMNS} FROM approvals{where} ORDER BY requested_at"
            return [approval_row(r) for r in c.execute(sql, args)]

        return await self.read(fn)

    async def approval(self, run_id: str, gate: str) -> Approval | None:
        return await self.read(partial(get_approval, run_id=run_id, gate=gate))

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
        def fn(c: sqlite3.Connection) -> Event:
            record = get_run_sync(c, run_id)  # RunNotFound
            row = get_approval(c, run_id, gate)
            if row is None or row["status"] != "pending":
                raise DecisionConflict(f"gate {gate!r} of run {run_id} is not pending")
            if definition_hash is not None and not (
                row["definition_hash"] == record.definition_hash == definition_hash
            ):
                raise DecisionConflict(f"gate {gate!r} of run {run_id} changed definition")
            event = append_external(c, run_id, owner, "approval_decided", fields)
            c.execute("UPDATE runs SET wake_at = ? WHERE run_id = ?", (time.time(), run_id))
            add_audit(c, with_seq(audit, event["seq"]))
            return event

        return await self.write(fn)

    async def audit(self, entry: AuditEntry) -> None:
        await self.write(lambda c: add_audit(c, entry))

    async def audit_log(self, run_id: str | None = None) -> list[dict[str, Any]]:
        def fn(c: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = "SELECT id, at, run_id, gate, actor, os_user, action, outcome, code, message,"
            where, args = where_clause("?", run_id=run_id)
            sql += f" detail FROM audit{where} ORDER BY id"
            keys = ("id", "at", "run_id", "gate", "actor", "os_user", "action", "outcome", "code")
            out = []
            for r in c.execute(sql, args):
                entry = dict(zip(keys, r[:9], strict=True))
                entry["message"], entry["detail"] = r[9], loads(r[10])
                out.append(entry)
            return out

        return await self.read(fn)

    # API tokens

    async def create_api_token(self, token: ApiToken) -> ApiToken:
        kept = replace(token, created_at=rfc3339(time.time()), revoked_at=None, revoked_by=None)

        def fn(c: sqlite3.Connection) -> ApiToken:
            try:
                c.execute(insert_api_token("?"), api_token_values(kept))
            except sqlite3.IntegrityError:
                raise StoreError(f"API token {kept.token_id!r} already exists") from None
            add_audit(c, token_entry("token_create", kept, kept.created_by))
            return kept

        return await self.write(fn)

    async def api_token(self, sha256: str) -> ApiToken | None:
        if self._schema < API_TOKENS_FROM:  # a read-only look at a file older than tokens
            return None

        def fn(c: sqlite3.Connection) -> ApiToken | None:
            sql = f"SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE sha256 = ?"
            row = c.execute(sql, (sha256,)).fetchone()
            return api_token_row(row) if row else None

        return await self.read(fn)

    async def api_tokens(self) -> list[ApiToken]:
        if self._schema < API_TOKENS_FROM:
            return []
        return await self.read(_api_tokens)

    async def revoke_api_token(self, id_or_prefix: str, by: str) -> ApiToken:
        def fn(c: sqlite3.Connection) -> ApiToken:
            token = pick_token(_api_tokens(c), id_or_prefix)
            now = rfc3339(time.time())
            first = c.execute(revoke_api_token_sql("?"), (now, by, token.token_id)).rowcount > 0
            if first:
                token = replace(token, revoked_at=now, revoked_by=by)
            add_audit(c, token_entry("token_revoke", token, by, first))
            return token

        return await self.write(fn)


def _api_tokens(c: sqlite3.Connection) -> list[ApiToken]:
    sql = f"SELECT {API_TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, rowid"
    return [api_token_row(r) for r in c.execute(sql)]


def _callback_row(c: sqlite3.Connection, token: str) -> Parked | None:
    row = c.execute(
        f"SELECT {PARKED_SELECT} FROM parked WHERE token_sha256 = ?", (token,)
    ).fetchone()
    return parked_from(row) if row else None
