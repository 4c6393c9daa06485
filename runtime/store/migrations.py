"""The SQLite journal's schema, as an ordered list of migrations.

`MIGRATIONS[i]` takes a database at schema version `i` to version `i + 1`; `migrate` applies
the missing ones in one transaction and records each in `schema_version`. A migration is never
edited once released (a file written by an older sagac must still upgrade): a change is a new
migration at the end. A file whose version is newer than the last migration is refused rather
than guessed at.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from sagac.runtime.clock import rfc3339

from sagac.errors import StoreError

Migration = Callable[[sqlite3.Connection], None]


def _script(c: sqlite3.Connection, sql: str) -> None:
    """Run `;`-separated statements inside the caller's transaction (`executescript` would
    commit it first)."""
    for statement in sql.split(";"):
        if statement.strip():
            c.execute(statement)


def _v1_journal(c: sqlite3.Connection) -> None:
    """Runs, their events and the materialised state of every step.

    Events and steps are rowid tables (rows land in insertion order, so one group commit of
    many runs' appends dirties a few pages at the end) with a unique index per run: about a
    third fewer pages written per commit than tables clustered by run.
    """
    _script(
        c,
        """
        CREATE TABLE runs (
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
            meta TEXT
        );
        CREATE INDEX runs_by_status ON runs (status, created_at);
        CREATE INDEX runs_by_saga ON runs (saga, created_at);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            type TEXT NOT NULL,
            at TEXT NOT NULL,
            step TEXT,
            body TEXT NOT NULL
        );
        CREATE UNIQUE INDEX events_by_run ON events (run_id, seq);
        CREATE TABLE steps (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            step TEXT NOT NULL,
            item_index INTEGER NOT NULL DEFAULT -1,
            status TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 0,
            idempotency_key TEXT,
            result TEXT,
            error TEXT,
            started_seq INTEGER,
            ended_seq INTEGER
        );
        CREATE UNIQUE INDEX steps_by_run ON steps (run_id, step, item_index);
        """,
    )


def _v2_approvals_and_audit(c: sqlite3.Connection) -> None:
    """Approval requests (token kept as a sha256 only), the audit log, compensation state."""
    _script(
        c,
        """
        CREATE TABLE approvals (
            run_id TEXT NOT NULL,
            gate TEXT NOT NULL,
            key TEXT,
            message TEXT,
            approvers TEXT NOT NULL,
            context TEXT,
            deadline TEXT,
            deadline_epoch REAL,
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
            PRIMARY KEY (run_id, gate)
        );
        CREATE INDEX approvals_by_status ON approvals (status);
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            run_id TEXT,
            gate TEXT,
            actor TEXT,
            action TEXT NOT NULL,
            outcome TEXT NOT NULL,
            code TEXT,
            message TEXT,
            detail TEXT
        );
        CREATE INDEX audit_by_run ON audit (run_id, id);
        ALTER TABLE steps ADD COLUMN comp_status TEXT;
        ALTER TABLE steps ADD COLUMN comp_attempt INTEGER NOT NULL DEFAULT 0;
        """,
    )


def _v3_leases_cancel_keys(c: sqlite3.Connection) -> None:
    """Leases (one owner per run), cancel requests, and run-level idempotency keys (claimed
    before the run exists, so that two callers with one key start one run)."""
    _script(
        c,
        """
        CREATE TABLE leases (
            run_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            acquired_at TEXT NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE TABLE idempotency_keys (
            key TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            input_hash TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX idempotency_keys_by_run ON idempotency_keys (run_id);
        ALTER TABLE runs ADD COLUMN cancel_requested_at TEXT;
        ALTER TABLE runs ADD COLUMN cancel_by TEXT;
        ALTER TABLE runs ADD COLUMN cancel_reason TEXT
        """,
    )


def _v4_steps_by_run(c: sqlite3.Connection) -> None:
    """`steps` becomes one B-tree keyed by (run_id, step, item_index) (WITHOUT ROWID): a step's
    commit then writes its state to one page instead of a table page and an index page. Rows
    of one run stay together, as the old unique index kept them; the view is read only by run
    and in an explicit order, so nothing else changes."""
    _script(
        c,
        """
        CREATE TABLE steps_v4 (
            run_id TEXT NOT NULL,
            step TEXT NOT NULL,
            item_index INTEGER NOT NULL DEFAULT -1,
            status TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 0,
            idempotency_key TEXT,
            result TEXT,
            error TEXT,
            started_seq INTEGER,
            ended_seq INTEGER,
            comp_status TEXT,
            comp_attempt INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, step, item_index)
        ) WITHOUT ROWID;
        INSERT INTO steps_v4 (run_id, step, item_index, status, attempt, idempotency_key,
            result, error, started_seq, ended_seq, comp_status, comp_attempt)
            SELECT run_id, step, item_index, status, attempt, idempotency_key, result, error,
            started_seq, ended_seq, comp_status, comp_attempt FROM steps;
        DROP TABLE steps;
        ALTER TABLE steps_v4 RENAME TO steps
        """,
    )


# Event types that set a step's state (`approval_requested`: its gate waits), the ones among
# them that end an attempt, and the compensation events (a non-final failure is a retry).
_STATE = (
    "'step_started', 'step_completed', 'step_failed', 'step_skipped', 'group_completed',"
    " 'approval_requested'"
)
_ENDS = "'step_completed', 'step_failed', 'step_skipped', 'group_completed'"
_COMP = "'compensation_started', 'compensation_completed', 'compensation_failed'"


def _v5_steps_view(c: sqlite3.Connection) -> None:
    """`steps` becomes a view of the journal instead of a table kept in step with it: it can
    never disagree with `events`, and a step's commit writes one table and its index instead of
    two tables (measured in docs/durability.md: about a third fewer WAL pages a commit). Same
    columns and meaning as the table: per (run, step, item) the status of its latest event, the
    highest attempt, the key of its latest start, the result of its latest end, the error of its
    latest event, the seq of its first event when that was a start (or a gate's request), the
    seq of its latest end, and its compensation's latest status and attempt. Needs SQLite 3.38
    (`->`, `->>`); rows read for one run use the events' (run_id, seq) index."""
    _script(
        c,
        f"""
        DROP TABLE steps;
        CREATE VIEW steps AS
        WITH e AS (
            SELECT run_id, seq, type, step, body,
                COALESCE(body ->> '$.item_index', -1) AS item_index
            FROM events WHERE type IN ({_STATE}, {_COMP})
        ), g AS (
            SELECT run_id, step, item_index,
                min(seq) FILTER (WHERE type IN ({_STATE})) AS first_seq,
                max(seq) FILTER (WHERE type IN ({_STATE})) AS last_seq,
                max(seq) FILTER (WHERE type IN ({_STATE}) AND type != 'approval_requested')
                    AS error_seq,
                max(seq) FILTER (WHERE type = 'step_started') AS start_seq,
                max(seq) FILTER (WHERE type IN ({_ENDS})) AS end_seq,
                max(COALESCE(body ->> '$.attempt', 0)) FILTER (WHERE type IN ({_STATE}))
                    AS attempt,
                max(seq) FILTER (WHERE type IN ({_COMP})
                    AND (type != 'compensation_failed' OR body ->> '$.final')) AS comp_seq
            FROM e GROUP BY run_id, step, item_index
        )
        SELECT g.run_id, g.step, g.item_index,
            CASE l.type
                WHEN 'step_started' THEN 'started'
                WHEN 'step_skipped' THEN 'skipped'
                WHEN 'approval_requested' THEN 'waiting'
                WHEN 'step_failed' THEN IIF(l.body ->> '$.cancelled', 'cancelled', 'failed')
                ELSE 'completed'
            END AS status,
            g.attempt AS attempt,
            s.body ->> '$.idempotency_key' AS idempotency_key,
            x.body -> '$.result' AS result,
            NULLIF(r.body -> '$.error', 'null') AS error,
            IIF(f.type IN ('step_started', 'approval_requested'), g.first_seq, NULL)
                AS started_seq,
            g.end_seq AS ended_seq,
            CASE k.type
                WHEN 'compensation_started' THEN 'started'
                WHEN 'compensation_completed' THEN 'ok'
                WHEN 'compensation_failed' THEN 'failed'
            END AS comp_status,
            COALESCE(k.body ->> '$.attempt', 0) AS comp_attempt
        FROM g
        JOIN events l ON l.run_id = g.run_id AND l.seq = g.last_seq
        JOIN events f ON f.run_id = g.run_id AND f.seq = g.first_seq
        LEFT JOIN events s ON s.run_id = g.run_id AND s.seq = g.start_seq
        LEFT JOIN events x ON x.run_id = g.run_id AND x.seq = g.end_seq
        LEFT JOIN events r ON r.run_id = g.run_id AND r.seq = g.error_seq
        LEFT JOIN events k ON k.run_id = g.run_id AND k.seq = g.comp_seq
        """,
    )


def _v6_approver_groups(c: sqlite3.Connection) -> None:
    """Approver groups (`group:NAME` in a gate's approvers) kept in the journal, changed only by
    `sagac groups` (audited), instead of read from the deciding process's environment; and the
    operating-system user of the process that wrote each audit entry, next to the claimed actor."""
    _script(
        c,
        """
        CREATE TABLE approver_groups (
            name TEXT NOT NULL,
            member TEXT NOT NULL,
            added_at TEXT NOT NULL,
            added_by TEXT,
            PRIMARY KEY (name, member)
        ) WITHOUT ROWID;
        ALTER TABLE audit ADD COLUMN os_user TEXT
        """,
    )


def _v7_keys_by_saga(c: sqlite3.Connection) -> None:
    """Run-level idempotency keys are scoped to the saga's name: the same key given to two
    sagas starts two runs (it used to return the first saga's report to the second). A key
    already claimed belongs to the saga of its run; a claim whose run never started (its
    claimant died first) gets the saga `''` and is adopted by the first saga to claim the key
    again (`SqliteStore.claim_key`), as it would have been before."""
    _script(
        c,
        """
        CREATE TABLE idempotency_keys_v6 (
            saga TEXT NOT NULL,
            key TEXT NOT NULL,
            run_id TEXT NOT NULL,
            input_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (saga, key)
        );
        INSERT INTO idempotency_keys_v6 (saga, key, run_id, input_hash, created_at)
            SELECT COALESCE((SELECT r.saga FROM runs r WHERE r.run_id = k.run_id), ''),
                k.key, k.run_id, k.input_hash, k.created_at
            FROM idempotency_keys k;
        DROP TABLE idempotency_keys;
        ALTER TABLE idempotency_keys_v6 RENAME TO idempotency_keys;
        CREATE INDEX idempotency_keys_by_run ON idempotency_keys (run_id)
        """,
    )


def _v8_workers(c: sqlite3.Connection) -> None:
    """What workers need (`sagac worker`): the definitions runs were submitted with (once per
    hash), each run's wake time (`runs.wake_at`, epoch seconds: its creation until it parks,
    then the earliest deadline of its pending gates, or NULL; a decision or a cancel request
    makes it now), a partial index in claim order of the runs that are not finished and have a
    wake time (a claim reads only those, and in order: `rows.WAKEABLE`), and the registry of
    live workers. Runs of older files get the wake time they would have had (now for a waiting
    run with news: a cancel request, or a decision since it parked); they have no stored
    definition: no worker claims them until one with their hash is saved (`sagac resume`
    moves them as before)."""
    _script(
        c,
        """
        CREATE TABLE definitions (
            hash TEXT PRIMARY KEY,
            saga TEXT NOT NULL,
            source TEXT NOT NULL,
            file TEXT,
            created_at TEXT NOT NULL
        );
        ALTER TABLE runs ADD COLUMN wake_at REAL;
        UPDATE runs SET wake_at = (julianday(created_at) - 2440587.5) * 86400.0
            WHERE status IN ('queued', 'running', 'interrupted');
        UPDATE runs SET wake_at = CASE WHEN cancel_requested_at IS NOT NULL
                OR EXISTS (SELECT 1 FROM events d WHERE d.run_id = runs.run_id
                    AND d.type = 'approval_decided' AND d.seq > (SELECT MAX(w.seq) FROM events w
                        WHERE w.run_id = runs.run_id AND w.type = 'saga_waiting'))
            THEN (julianday('now') - 2440587.5) * 86400.0
            ELSE (SELECT MIN(a.deadline_epoch) FROM approvals a
                WHERE a.run_id = runs.run_id AND a.status = 'pending') END
            WHERE status = 'waiting_approval';
        CREATE INDEX runs_to_claim ON runs (wake_at, created_at, run_id) WHERE wake_at IS NOT NULL
            AND status IN ('queued', 'running', 'interrupted', 'waiting_approval');
        CREATE TABLE workers (
            worker_id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            concurrency INTEGER NOT NULL,
            state TEXT NOT NULL,
            started_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL,
            heartbeat_epoch REAL NOT NULL
        )
        """,
    )


def _v9_approval_tokens(c: sqlite3.Connection) -> None:
    """Each run's approval token, as its sha256 (`runs.approval_token_sha256`): a submitted
    run's gates take it instead of a fresh token each. Runs already there have none."""
    _script(c, "ALTER TABLE runs ADD COLUMN approval_token_sha256 TEXT")


def _v10_parked_signals_children(c: sqlite3.Connection) -> None:
    """Issue 13's parking: parked rows (a sleep, a wait for a signal, a callback: opened and
    closed by the journal's events, `Store.parked`; a callback's token kept as its sha256
    only, unique), the signals sent to runs, each run's parent (a `call`'s child run), and
    the `waiting` status among the runs a claim looks at (`runs_to_claim` again, with
    `rows.WAKEABLE`'s new condition). Runs already there have no parent and nothing parked."""
    _script(
        c,
        """
        CREATE TABLE parked (
            run_id TEXT NOT NULL,
            step TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 0,
            kind TEXT NOT NULL,
            signal TEXT,
            token_sha256 TEXT,
            due_epoch REAL,
            state TEXT NOT NULL,
            opened_seq INTEGER NOT NULL,
            outcome TEXT,
            outcome_at TEXT,
            outcome_by TEXT,
            PRIMARY KEY (run_id, step, attempt)
        );
        CREATE UNIQUE INDEX parked_by_token ON parked (token_sha256)
            WHERE token_sha256 IS NOT NULL;
        CREATE TABLE signals (
            signal_id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            name TEXT NOT NULL,
            data TEXT,
            sent_at TEXT NOT NULL,
            sent_by TEXT,
            consumed_step TEXT,
            consumed_seq INTEGER
        );
        CREATE INDEX signals_by_run ON signals (run_id, name);
        ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
        ALTER TABLE runs ADD COLUMN parent_step TEXT;
        CREATE INDEX runs_by_parent ON runs (parent_run_id, created_at)
            WHERE parent_run_id IS NOT NULL;
        DROP INDEX runs_to_claim;
        CREATE INDEX runs_to_claim ON runs (wake_at, created_at, run_id) WHERE wake_at IS NOT NULL
            AND status IN ('queued', 'running', 'interrupted', 'waiting_approval', 'waiting')
        """,
    )


def _v11_api_tokens(c: sqlite3.Connection) -> None:
    """Issue 14's bearer tokens of the HTTP API (`sagac tokens`): each kept as its sha256
    only (unique), with its public id, user, groups and scopes (JSON lists), who created it
    and when, and when and by whom it was revoked."""
    _script(
        c,
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
        )
        """,
    )


MIGRATIONS: tuple[Migration, ...] = (
    _v1_journal,
    _v2_approvals_and_audit,
    _v3_leases_cancel_keys,
    _v4_steps_by_run,
    _v5_steps_view,
    _v6_approver_groups,
    _v7_keys_by_saga,
    _v8_workers,
    _v9_approval_tokens,
    _v10_parked_signals_children,
    _v11_api_tokens,
)
SCHEMA_VERSION = len(MIGRATIONS)
# The oldest schema this sagac's read queries work on as it is: a read-only store (the
# inspection commands) reads such a file without upgrading it. Raise it when a read query
# comes to need a table or column of a later migration.
READS_FROM = 6
# The first schema with what workers need (definitions, wake times, the workers table): a
# read-only store on an older file answers that it has none of them.
WORKERS_FROM = 8
# The first schema with runs' approval tokens (`runs.approval_token_sha256`).
TOKENS_FROM = 9
# The first schema with parked rows, signals and runs' parents: a read-only store on an older
# file answers that it has none of them.
PARKED_FROM = 10
# The first schema with API tokens: a read-only store on an older file lists none.
API_TOKENS_FROM = 11


def current_version(c: sqlite3.Connection) -> int:
    """The file's schema version (0: an empty file)."""
    exists = c.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not exists:
        return 0
    row = c.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(c: sqlite3.Connection, path: str, target: int = SCHEMA_VERSION) -> int:
    """Bring the database up to `target`; returns the version it was at. The caller's
    connection is in autocommit mode; this takes the write lock for the whole upgrade, so two
    processes opening an old file at once migrate it once."""
    c.execute("BEGIN IMMEDIATE")
    try:
        before = current_version(c)
        if before > SCHEMA_VERSION:
            raise StoreError(
                f"{path} has journal schema version {before}, newer than this sagac knows "
                f"({SCHEMA_VERSION})",
                hint="upgrade sagac, or point --store at another file",
            )
        if before == 0:
            c.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT)")
        for version in range(before, target):
            MIGRATIONS[version](c)
            c.execute(
                "INSERT INTO schema_version VALUES (?, ?)", (version + 1, rfc3339(time.time()))
            )
        c.execute("COMMIT")
    except BaseException:
        c.execute("ROLLBACK")
        raise
    return before
