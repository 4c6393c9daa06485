"""The PostgreSQL journal's schema, as an ordered list of migrations.

`MIGRATIONS[i]` takes a database at schema version `i` to version `i + 1`; `migrate` applies
the missing ones in one transaction, under an advisory lock (two processes opening a new
database at once migrate it once), and records each in `sagac_schema_version`. The tables
and their meaning are SQLite's (`migrations.py`) at its latest version; the numbering is this
store's own. A migration is never edited once released: a change is a new migration at the
end. A database whose version is newer than the last migration is refused, never guessed at.
This module only runs DDL inside the caller's connection; it never opens a connection.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sagac.runtime.clock import rfc3339

from sagac.errors import StoreError

if TYPE_CHECKING:
    from psycopg import AsyncConnection

# Any fixed number: the key of the advisory lock that serialises migrations.
_LOCK_KEY = 0x5A6AC

_V1 = (
    """
    CREATE TABLE runs (
        id BIGSERIAL UNIQUE,
        run_id TEXT PRIMARY KEY,
        saga TEXT NOT NULL,
        version INTEGER NOT NULL,
        definition_hash TEXT NOT NULL,
        file TEXT,
        input TEXT,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        report TEXT,
        meta TEXT,
        cancel_requested_at TEXT,
        cancel_by TEXT,
        cancel_reason TEXT
    )""",
    "CREATE INDEX runs_by_status ON runs (status, created_at)",
    "CREATE INDEX runs_by_saga ON runs (saga, created_at)",
    """
    CREATE TABLE events (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        step TEXT,
        body TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    )""",
    """
    CREATE TABLE approvals (
        run_id TEXT NOT NULL,
        gate TEXT NOT NULL,
        key TEXT,
        message TEXT,
        approvers TEXT NOT NULL,
        context TEXT,
        deadline TEXT,
        deadline_epoch DOUBLE PRECISION,
        on_timeout TEXT,
        token_sha256 TEXT,
        definition_hash TEXT NOT NULL,
        status TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        requested_seq INTEGER NOT NULL,
        decided_by TEXT,
        decided_at TEXT,
        comment TEXT,
        value TEXT,
        decision_code TEXT,
        n BIGSERIAL,
        PRIMARY KEY (run_id, gate)
    )""",
    "CREATE INDEX approvals_by_status ON approvals (status)",
    """
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        at TEXT NOT NULL,
        run_id TEXT,
        gate TEXT,
        actor TEXT,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        code TEXT,
        message TEXT,
        detail TEXT,
        os_user TEXT
    )""",
    "CREATE INDEX audit_by_run ON audit (run_id, id)",
    """
    CREATE TABLE leases (
        run_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        acquired_at TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    """
    CREATE TABLE idempotency_keys (
        saga TEXT NOT NULL,
        key TEXT NOT NULL,
        run_id TEXT NOT NULL,
        input_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (saga, key)
    )""",
    "CREATE INDEX idempotency_keys_by_run ON idempotency_keys (run_id)",
    """
    CREATE TABLE approver_groups (
        name TEXT NOT NULL,
        member TEXT NOT NULL,
        added_at TEXT NOT NULL,
        added_by TEXT,
        PRIMARY KEY (name, member)
    )""",
)

# What workers need (`sagac worker`), as SQLite's migration 8 has it: the definitions runs
# were submitted with, each run's wake time (`runs.wake_at`: its creation until it parks, then
# the earliest deadline of its pending gates, or now once a cancel was requested; runs already
# there get the time they would have had), the index claims read in order (`rows.WAKEABLE`),
# the registry of live workers, and the owner index `workers()` joins leases by. Also each
# event's run as a foreign key: an append to an unknown run fails in its one INSERT instead
# of needing a look-up first (NOT VALID: the rows already there are not scanned again).
_V2 = (
    """
    CREATE TABLE definitions (
        hash TEXT PRIMARY KEY,
        saga TEXT NOT NULL,
        source TEXT NOT NULL,
        file TEXT,
        created_at TEXT NOT NULL
    )""",
    "ALTER TABLE runs ADD COLUMN wake_at DOUBLE PRECISION",
    "UPDATE runs SET wake_at = EXTRACT(EPOCH FROM created_at::timestamptz)"
    " WHERE status IN ('queued', 'running', 'interrupted')",
    "UPDATE runs SET wake_at = CASE WHEN cancel_requested_at IS NOT NULL"
    " THEN EXTRACT(EPOCH FROM now()) ELSE (SELECT MIN(a.deadline_epoch) FROM approvals a"
    " WHERE a.run_id = runs.run_id AND a.status = 'pending') END"
    " WHERE status = 'waiting_approval'",
    "CREATE INDEX runs_to_claim ON runs (wake_at, created_at, run_id) WHERE wake_at IS NOT NULL"
    " AND status IN ('queued', 'running', 'interrupted', 'waiting_approval')",  # rows.WAKEABLE
    "ALTER TABLE events ADD CONSTRAINT events_run FOREIGN KEY (run_id) REFERENCES runs (run_id)"
    " NOT VALID",
    """
    CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        concurrency INTEGER NOT NULL,
        state TEXT NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL,
        heartbeat_epoch DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX leases_by_owner ON leases (owner, expires_at)",
)

# Each run's approval token, as its sha256, as SQLite's migration 9 has it: a submitted run's
# gates take it instead of a fresh token each. Runs already there have none.
_V3 = ("ALTER TABLE runs ADD COLUMN approval_token_sha256 TEXT",)

# Issue 13's parking, as SQLite's migration 10 has it: parked rows (a sleep, a wait for a
# signal, a callback, opened and closed by the journal's events; a token kept as its sha256
# only, unique), the signals sent to runs, each run's parent (a `call`'s child run), and the
# `waiting` status among the runs a claim reads (`rows.WAKEABLE`).
_V4 = (
    """
    CREATE TABLE parked (
        run_id TEXT NOT NULL,
        step TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        kind TEXT NOT NULL,
        signal TEXT,
        token_sha256 TEXT,
        due_epoch DOUBLE PRECISION,
        state TEXT NOT NULL,
        opened_seq INTEGER NOT NULL,
        outcome TEXT,
        outcome_at TEXT,
        outcome_by TEXT,
        PRIMARY KEY (run_id, step, attempt)
    )""",
    "CREATE UNIQUE INDEX parked_by_token ON parked (token_sha256) WHERE token_sha256 IS NOT NULL",
    """
    CREATE TABLE signals (
        signal_id BIGSERIAL PRIMARY KEY,
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        data TEXT,
        sent_at TEXT NOT NULL,
        sent_by TEXT,
        consumed_step TEXT,
        consumed_seq INTEGER
    )""",
    "CREATE INDEX signals_by_run ON signals (run_id, name)",
    "ALTER TABLE runs ADD COLUMN parent_run_id TEXT",
    "ALTER TABLE runs ADD COLUMN parent_step TEXT",
    "CREATE INDEX runs_by_parent ON runs (parent_run_id, created_at)"
    " WHERE parent_run_id IS NOT NULL",
    "DROP INDEX runs_to_claim",
    "CREATE INDEX runs_to_claim ON runs (wake_at, created_at, run_id) WHERE wake_at IS NOT NULL"
    " AND status IN ('queued', 'running', 'interrupted', 'waiting_approval', 'waiting')",
)

_V5 = (
    """
    CREATE TABLE api_tokens (
        token_id TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        username TEXT NOT NULL,
        token_groups TEXT NOT NULL,
        token_scopes TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT,
        revoked_at TEXT,
        revoked_by TEXT
    )""",
)

# Each migration: its statements, run in order inside the upgrade's transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4, _V5)
SCHEMA_VERSION = len(MIGRATIONS)


async def current_version(c: AsyncConnection) -> int:
    """The database's schema version (0: no sagac tables)."""
    cur = await c.execute("SELECT to_regclass('sagac_schema_version') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return 0
    cur = await c.execute("SELECT MAX(version) FROM sagac_schema_version")
    row = await cur.fetchone()
    return int(row[0] or 0) if row else 0


def too_new(where: str, version: int) -> StoreError:
    return StoreError(
        f"{where} has journal schema version {version}, newer than this sagac knows"
        f" ({SCHEMA_VERSION})",
        hint="upgrade sagac, or point --store at another database",
    )


async def migrate(c: AsyncConnection, where: str, target: int = SCHEMA_VERSION) -> int:
    """Bring the database up to `target` in one transaction; returns the version it was at."""
    async with c.transaction():
        await c.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        before = await current_version(c)
        if before > SCHEMA_VERSION:
            raise too_new(where, before)
        if before == 0:
            await c.execute(
                "CREATE TABLE sagac_schema_version (version INTEGER NOT NULL, applied_at TEXT)"
            )
        for version in range(before, target):
            for statement in MIGRATIONS[version]:
                await c.execute(statement)
            await c.execute(
                "INSERT INTO sagac_schema_version VALUES (%s, %s)",
                (version + 1, rfc3339(time.time())),
            )
    return before
