"""Journal rows as Python values, the same for every SQL store: JSON columns, run records,
approval requests and decisions, audit entries, definitions and workers, parked rows and
signals, API tokens, WHERE clauses of equalities, and the SQL of claims, wake times, parked rows and
signals (text with the driver's placeholder).

SQLite and PostgreSQL keep the same tables with the same columns; what a row means is decided
here once, so that both stores read and write a run, an approval or an audit entry alike (only
their SQL text differs: `?` or `%s` placeholders, upsert syntax). Plain functions on values:
this module never talks to a database and never sees a secret (what it is given has been
redacted by the executor).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sagac.runtime import codec
from sagac.runtime.clock import parse_rfc3339, rfc3339

from .base import (
    PARKED_COLUMNS,
    ApiToken,
    Approval,
    AuditEntry,
    Definition,
    Event,
    Parked,
    RunRecord,
    Signal,
    WorkerInfo,
    os_user,
    parked_row,
)

dumps = codec.dumps


def loads(text: str | None) -> Any:
    return None if text is None else codec.loads(text)


# The columns of `runs` that a record shows in its `meta` when set (besides the JSON `meta`).
_META_COLUMNS = ("cancel_requested_at", "cancel_by", "cancel_reason", "wake_at")


def run_columns(wake_at: bool = True, approval_token: bool = True, parent: bool = True) -> str:
    """The SELECT list `run_record` reads. A read-only SQLite store on a file older than a
    column reads NULL in its place (`wake_at`: schema 8, `approval_token_sha256`: 9,
    `parent_run_id` and `parent_step`: 10)."""
    return (
        "run_id, saga, version, definition_hash, file, input, status, created_at, updated_at,"
        " report, meta, cancel_requested_at, cancel_by, cancel_reason,"
        f" {'wake_at' if wake_at else 'NULL'},"
        " (SELECT key FROM idempotency_keys k WHERE k.run_id = runs.run_id LIMIT 1),"
        f" {'approval_token_sha256' if approval_token else 'NULL'},"
        f" {'parent_run_id, parent_step' if parent else 'NULL, NULL'}"
    )


RUN_COLUMNS = run_columns()


def run_record(r: Sequence[Any]) -> RunRecord:
    """A `RunRecord` from a row of `run_columns()`."""
    meta = loads(r[10]) or {}
    for name, value in zip((*_META_COLUMNS, "idempotency_key"), r[11:16], strict=True):
        if value is not None:
            meta[name] = value
    return RunRecord(
        run_id=r[0],
        saga=r[1],
        version=r[2],
        definition_hash=r[3],
        file=r[4],
        input=loads(r[5]),
        status=r[6],
        created_at=r[7],
        updated_at=r[8],
        report=loads(r[9]),
        meta=meta,
        approval_token_sha256=r[16],
        parent_run_id=r[17],
        parent_step=r[18],
    )


APPROVAL_COLUMNS = (
    "run_id, gate, key, message, approvers, context, deadline, deadline_epoch, on_timeout,"
    " token_sha256, definition_hash, status, requested_at, requested_seq, decided_by,"
    " decided_at, comment, value, decision_code"
)
_APPROVAL_NAMES = tuple(n.strip() for n in APPROVAL_COLUMNS.split(","))


def approval_row(r: Sequence[Any]) -> Approval:
    """An approval request (and its decision) from a row of `APPROVAL_COLUMNS`."""
    out = dict(zip(_APPROVAL_NAMES, r, strict=True))
    out["approvers"] = loads(out["approvers"]) or []
    out["context"] = loads(out["context"])
    out["value"] = loads(out["value"])
    return out


def approval_request_values(run_id: str, e: Event) -> tuple[Any, ...]:
    """The parameters of an `approval_requested` event's approvals row: run_id, gate, key,
    message, approvers, context, deadline, deadline_epoch, on_timeout, token_sha256, then
    definition_hash, run_id (for the run's own hash when the event has none), requested_at and
    requested_seq."""
    deadline = e.get("deadline")
    context = e.get("context")
    return (
        run_id,
        e["step"],
        e.get("key"),
        e.get("message"),
        dumps(e.get("approvers", [])),
        dumps(context) if context is not None else None,
        deadline,
        parse_rfc3339(deadline) if deadline else None,
        e.get("on_timeout"),
        e.get("token_sha256"),
        e.get("definition_hash"),
        run_id,
        e["at"],
        e["seq"],
    )


def approval_decision_values(run_id: str, e: Event) -> tuple[Any, ...]:
    """The parameters of an `approval_decided` event's update: status, decided_by, decided_at,
    comment, value, decision_code, then the row's run_id and gate."""
    if e.get("approved"):
        status = "approved"
    elif e.get("timed_out"):
        status = "timed_out"
    else:
        status = "rejected"
    value = e.get("value")
    return (
        status,
        e.get("by"),
        e.get("decided_at", e["at"]),
        e.get("comment"),
        dumps(value) if value is not None else None,
        e.get("code"),
        run_id,
        e["step"],
    )


def audit_values(entry: AuditEntry) -> tuple[Any, ...]:
    """An audit row's parameters (at, run_id, gate, actor, action, outcome, code, message,
    detail, os_user), stamped with the time and the operating-system user of this process."""
    return (
        rfc3339(time.time()),
        entry.run_id,
        entry.gate,
        entry.actor,
        entry.action,
        entry.outcome,
        entry.code,
        entry.message,
        None if entry.detail is None else dumps(entry.detail),
        os_user(),
    )


def where_clause(placeholder: str, **filters: Any) -> tuple[str, list[Any]]:
    """A WHERE clause testing each column given a value (not None) for equality, with the
    driver's `placeholder`, and its arguments; empty when no value is given."""
    given = [(column, value) for column, value in filters.items() if value is not None]
    if not given:
        return "", []
    clause = " AND ".join(f"{column} = {placeholder}" for column, _ in given)
    return " WHERE " + clause, [v for _, v in given]


def list_clause(
    p: str,
    seq: str,
    saga: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    before: str | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause of `Store.list_runs` (ordered by `created_at DESC, SEQ DESC`, `seq`
    being the table's insertion order column): equality filters, a time range, and the keyset
    condition of a page after run `before`."""
    where, args = where_clause(p, saga=saga, status=status)
    parts = [where.removeprefix(" WHERE ")] if where else []
    if since is not None:
        parts.append(f"created_at >= {p}")
        args.append(since)
    if until is not None:
        parts.append(f"created_at < {p}")
        args.append(until)
    if before is not None:
        parts.append(
            f"(created_at, {seq}) < (SELECT created_at, {seq} FROM runs WHERE run_id = {p})"
        )
        args.append(before)
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


# -- what workers need: stored definitions, claims, wake times and the worker registry ------

# The runs `claim_runs` and `next_wake` look at: not finished, and with a wake time (a run parked
# with no deadline has none: only a person wakes it). The partial index `runs_to_claim` of both
# SQL stores covers exactly these rows, so this text must stay the index's condition.
WAKEABLE = (
    "wake_at IS NOT NULL"
    " AND status IN ('queued', 'running', 'interrupted', 'waiting_approval', 'waiting')"
)
# A parked run's statuses (`base.PARKED_STATUSES`), as SQL.
PARKED = "('waiting_approval', 'waiting')"
CLAIM_ORDER = "wake_at, created_at, run_id"
DEFINITION_COLUMNS = "hash, saga, source, file"
WORKER_COLUMNS = "worker_id, host, pid, concurrency, started_at, heartbeat_at, state"


def insert_run(p: str) -> str:
    """The INSERT of a new `runs` row; its parameters are `run_values`."""
    return (
        "INSERT INTO runs (run_id, saga, version, definition_hash, file, input, status,"
        " created_at, updated_at, meta, wake_at, approval_token_sha256, parent_run_id,"
        f" parent_step) VALUES ({', '.join([p] * 14)})"
    )


def run_values(record: RunRecord, wake_at: float | None) -> tuple[Any, ...]:
    """`insert_run`'s parameters."""
    return (
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
        wake_at,
        record.approval_token_sha256,
        record.parent_run_id,
        record.parent_step,
    )


def insert_definition(p: str) -> str:
    """The INSERT of a `definitions` row (hash, saga, source, file, created_at): nothing when
    the hash is there already (a hash names one source)."""
    return (
        f"INSERT INTO definitions ({DEFINITION_COLUMNS}, created_at)"
        f" VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (hash) DO NOTHING"
    )


def definition_values(d: Definition) -> tuple[Any, ...]:
    """`insert_definition`'s parameters."""
    return (d.hash, d.saga, d.source, d.file, rfc3339(time.time()))


def definition_row(r: Sequence[Any]) -> Definition:
    """A `Definition` from a row of `DEFINITION_COLUMNS`."""
    return Definition(hash=r[0], saga=r[1], source=r[2], file=r[3])


def runnable(p: str) -> str:
    """The condition a `runs` row must meet to be claimed, with two parameters: now, now (see
    `Store.claim_runs`): `WAKEABLE`, its definition stored, no unexpired lease, and either not
    parked or parked and its wake time come."""
    return (
        f"{WAKEABLE}"
        " AND EXISTS (SELECT 1 FROM definitions d WHERE d.hash = runs.definition_hash)"
        " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.run_id = runs.run_id"
        f" AND l.expires_at > {p})"
        f" AND (status NOT IN {PARKED} OR wake_at <= {p})"
    )


def next_wake_sql(p: str, index: str = "") -> str:
    """The earliest time after now (three parameters, each now) at which a `WAKEABLE` run with
    a stored definition becomes runnable: a parked run without a live lease at its wake time,
    read along `runs_to_claim` in wake time order, so that the first one ends the read (`index`:
    SQLite's `INDEXED BY` for it); a run with a live lease (the few that `leases` holds) at
    its lease's expiry, or its wake time when parked until later (see `Store.next_wake`)."""
    defined = "EXISTS (SELECT 1 FROM definitions d WHERE d.hash = runs.definition_hash)"
    later = f"CASE WHEN status IN {PARKED} AND wake_at > l.expires_at THEN wake_at"
    return (
        f"SELECT MIN(t) FROM (SELECT (SELECT wake_at FROM runs {index} WHERE {WAKEABLE}"
        f" AND status IN {PARKED} AND wake_at > {p} AND NOT EXISTS (SELECT 1 FROM leases l"
        f" WHERE l.run_id = runs.run_id AND l.expires_at > {p}) AND {defined}"
        " ORDER BY wake_at LIMIT 1) AS t"
        f" UNION ALL SELECT (SELECT MIN({later} ELSE l.expires_at END) FROM leases l"
        f" CROSS JOIN runs WHERE runs.run_id = l.run_id AND l.expires_at > {p} AND {WAKEABLE}"
        f" AND {defined}) AS t) AS w"
    )


def park_wake(p: str) -> str:
    """The UPDATE giving a run that parks (status `waiting` or `waiting_approval`) its wake
    time, with two parameters: now, run_id (see `Store.parked`). Now when a cancel was
    requested (a request that came while it was still running: its driver never saw it, so a
    worker must), when a kept unconsumed signal has the name a pending `signal` row waits for,
    or when a pending callback row has its outcome (they came before it parked); else the
    earliest due time of its pending parked rows and gates (NULL: none). On PostgreSQL it
    runs after the status UPDATE of the same transaction, which locks the run's row: a signal
    or callback, which locks that row first, is either seen here or sees the run parked."""
    return (
        f"UPDATE runs SET wake_at = CASE WHEN cancel_requested_at IS NOT NULL"
        " OR EXISTS (SELECT 1 FROM parked c WHERE c.run_id = runs.run_id"
        " AND c.state = 'pending' AND c.outcome IS NOT NULL)"
        " OR EXISTS (SELECT 1 FROM signals s JOIN parked w ON w.run_id = s.run_id"
        " AND w.signal = s.name WHERE s.run_id = runs.run_id AND s.consumed_seq IS NULL"
        f" AND w.kind = 'signal' AND w.state = 'pending') THEN {p}"
        " ELSE (SELECT MIN(t) FROM (SELECT a.deadline_epoch AS t FROM approvals a"
        " WHERE a.run_id = runs.run_id AND a.status = 'pending'"
        " UNION ALL SELECT d.due_epoch FROM parked d WHERE d.run_id = runs.run_id"
        f" AND d.state = 'pending') AS due) END WHERE run_id = {p}"
    )


def wake_parked(p: str) -> str:
    """The UPDATE making a parked run's wake time now (two parameters: now, run_id); it
    changes nothing when the run is not parked. RETURNING the run id when it did."""
    return (
        f"UPDATE runs SET wake_at = {p} WHERE run_id = {p} AND status IN {PARKED} RETURNING run_id"
    )


def wake_parent(p: str) -> str:
    """The UPDATE making the parent of a finished child run wake now when it is parked (two
    parameters: now, the child's run_id). RETURNING the parent's run id when it did."""
    return (
        f"UPDATE runs SET wake_at = {p} WHERE run_id = (SELECT c.parent_run_id FROM runs c"
        f" WHERE c.run_id = {p}) AND status IN {PARKED} RETURNING run_id"
    )


# -- parked rows and signals (issue 13) ---------------------------------------------------

PARKED_SELECT = ", ".join(PARKED_COLUMNS)


def parked_from(r: Sequence[Any]) -> Parked:
    """A parked row from a row of `PARKED_SELECT`."""
    out = dict(zip(PARKED_COLUMNS, r, strict=True))
    out["outcome"] = loads(out["outcome"])
    return out


def open_parked(p: str) -> str:
    """The INSERT of the pending row an opening event opens (`open_parked_values`); a row of
    the same run, step and attempt is replaced (a new opening replaces the old)."""
    names = PARKED_COLUMNS[:9]  # up to opened_seq: no outcome yet
    again = ", ".join(f"{name} = excluded.{name}" for name in names[3:])
    return (
        f"INSERT INTO parked ({', '.join(names)}) VALUES ({', '.join([p] * len(names))})"
        f" ON CONFLICT (run_id, step, attempt) DO UPDATE SET {again},"
        " outcome = NULL, outcome_at = NULL, outcome_by = NULL"
    )


def open_parked_values(run_id: str, e: Event) -> tuple[Any, ...]:
    """`open_parked`'s parameters."""
    row = parked_row(run_id, e)
    return tuple(row[name] for name in PARKED_COLUMNS[:9])


def close_parked(p: str) -> str:
    """The UPDATE a `wait_ended` event makes (run_id, step, attempt): its row is done."""
    return f"UPDATE parked SET state = 'done' WHERE run_id = {p} AND step = {p} AND attempt = {p}"


def consume_signal(p: str) -> str:
    """The UPDATE marking the signal a `wait_ended` names consumed (step, seq, run_id,
    signal_id)."""
    return (
        f"UPDATE signals SET consumed_step = {p}, consumed_seq = {p}"
        f" WHERE run_id = {p} AND signal_id = {p}"
    )


def wait_ended_statements(p: str, run_id: str, e: Event) -> list[tuple[str, tuple[Any, ...]]]:
    """What a `wait_ended` event changes: its parked row, and the signal it consumed."""
    out: list[tuple[str, tuple[Any, ...]]] = [
        (close_parked(p), (run_id, e["step"], e.get("attempt") or 0))
    ]
    if e.get("signal_id") is not None:
        out.append((consume_signal(p), (e["step"], e["seq"], run_id, e["signal_id"])))
    return out


SIGNAL_COLUMNS = (
    "signal_id",
    "run_id",
    "name",
    "data",
    "sent_at",
    "sent_by",
    "consumed_step",
    "consumed_seq",
)
SIGNAL_SELECT = ", ".join(SIGNAL_COLUMNS)


def signal_from(r: Sequence[Any]) -> Signal:
    """A signal from a row of `SIGNAL_SELECT`."""
    out = dict(zip(SIGNAL_COLUMNS, r, strict=True))
    out["data"] = loads(out["data"])
    return out


def insert_signal(p: str) -> str:
    """The INSERT of a signal (run_id, name, data, sent_at, sent_by), RETURNING its row."""
    return (
        "INSERT INTO signals (run_id, name, data, sent_at, sent_by)"
        f" VALUES ({p}, {p}, {p}, {p}, {p}) RETURNING {SIGNAL_SELECT}"
    )


def signal_values(run_id: str, name: str, data: Any, by: str | None) -> tuple[Any, ...]:
    """`insert_signal`'s parameters."""
    return (run_id, name, dumps(data), rfc3339(time.time()), by)


def waited_for(p: str) -> str:
    """Whether a pending `signal` row of a run (run_id, name) waits for that name."""
    return (
        f"SELECT 1 FROM parked WHERE run_id = {p} AND kind = 'signal' AND signal = {p}"
        " AND state = 'pending' LIMIT 1"
    )


def record_outcome(p: str) -> str:
    """The UPDATE recording a callback's outcome (outcome, outcome_at, outcome_by, token),
    only where there is none yet: the compare-and-set of `Store.complete_callback`."""
    return (
        f"UPDATE parked SET outcome = {p}, outcome_at = {p}, outcome_by = {p}"
        f" WHERE token_sha256 = {p} AND outcome IS NULL RETURNING {PARKED_SELECT}"
    )


def outcome_values(outcome: dict[str, Any], by: str | None, token: str) -> tuple[Any, ...]:
    """`record_outcome`'s parameters."""
    return (dumps(outcome), rfc3339(time.time()), by, token)


# The statuses of a run that is neither parked nor finished: moved by whoever holds its lease,
# or by a worker once no lease covers it.
UNPARKED = ("queued", "running", "interrupted")


def unpark_wake(p: str) -> str:
    """The UPDATE keeping the wake time of a run whose status became one of `UNPARKED` (it was
    resumed), with three parameters: now, run_id, now. Its wake time becomes now at the
    latest: a run parked with no deadline (NULL) or a later one must stay claimable should
    its new driver die, and keeps its place in claim order otherwise."""
    return (
        f"UPDATE runs SET wake_at = {p} WHERE run_id = {p} AND (wake_at IS NULL OR wake_at > {p})"
    )


def upsert_worker(p: str) -> str:
    """The INSERT or UPDATE of a worker's row (worker_id, host, pid, concurrency, state, now
    as RFC 3339 twice, now as epoch seconds), `started_at` kept."""
    return (
        "INSERT INTO workers (worker_id, host, pid, concurrency, state, started_at,"
        f" heartbeat_at, heartbeat_epoch) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
        " ON CONFLICT (worker_id) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
        " concurrency = excluded.concurrency, state = excluded.state,"
        " heartbeat_at = excluded.heartbeat_at, heartbeat_epoch = excluded.heartbeat_epoch"
    )


def worker_values(w: WorkerInfo, now: float) -> tuple[Any, ...]:
    """`upsert_worker`'s parameters."""
    at = rfc3339(now)
    return (w.worker_id, w.host, w.pid, w.concurrency, w.state, at, at, now)


def worker_row(r: Sequence[Any], held: Sequence[str]) -> WorkerInfo:
    """A `WorkerInfo` from a row of `WORKER_COLUMNS` and the runs it holds."""
    return WorkerInfo(
        worker_id=r[0],
        host=r[1],
        pid=r[2],
        concurrency=r[3],
        started_at=r[4],
        heartbeat_at=r[5],
        state=r[6],
        held=tuple(sorted(held)),
    )


# An API token's row (`api_tokens`): never the token, only its sha256.
API_TOKEN_COLUMNS = (
    "token_id, sha256, username, token_groups, token_scopes, created_at, created_by,"
    " revoked_at, revoked_by"
)


def insert_api_token(p: str) -> str:
    """The INSERT of a new token's row, with `api_token_values`'s parameters."""
    return f"INSERT INTO api_tokens ({API_TOKEN_COLUMNS}) VALUES ({', '.join([p] * 9)})"


def api_token_values(t: ApiToken) -> tuple[Any, ...]:
    """`insert_api_token`'s parameters (not revoked)."""
    groups, scopes = dumps(list(t.groups)), dumps(list(t.scopes))
    return (t.token_id, t.sha256, t.user, groups, scopes, t.created_at, t.created_by, None, None)


def api_token_row(r: Sequence[Any]) -> ApiToken:
    """An `ApiToken` from a row of `API_TOKEN_COLUMNS`."""
    return ApiToken(
        token_id=r[0],
        sha256=r[1],
        user=r[2],
        groups=tuple(loads(r[3]) or ()),
        scopes=tuple(loads(r[4]) or ()),
        created_at=r[5],
        created_by=r[6],
        revoked_at=r[7],
        revoked_by=r[8],
    )


def revoke_api_token_sql(p: str) -> str:
    """The UPDATE revoking a token (revoked_at, revoked_by, token_id); no row when it was."""
    return (
        f"UPDATE api_tokens SET revoked_at = {p}, revoked_by = {p}"
        f" WHERE token_id = {p} AND revoked_at IS NULL"
    )
