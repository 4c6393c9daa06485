"""The store contract: every operation the runtime and the CLI need from where runs live.

A run is a row (`RunRecord`: status, input, definition hash, final report) plus its journal,
an append-only list of events (the run's state is whatever `journal.replay` makes of them).
The executor writes every state change through `append` and never starts an action before the
append that precedes it has returned: `append` is durable when it returns, and it must keep the
order of calls (one writer per run; a store with real I/O serialises its writes per run).

Besides the journal a store keeps what several processes must agree on: run-level idempotency
keys, leases (one driver per run), cancel requests, approval requests and their decisions (a
view of the journal's `approval_*` events), parked nodes (a view of the journal's parking
events), the signals sent to runs, callbacks' outcomes, runs' parents, approver groups, the
HTTP API's bearer tokens (as hashes) and the audit log. Every such
operation is an abstract method below; callers never probe a store for features. What a store
cannot offer is a declared capability (`shared`, `group_commit`), not a missing method. A
foreach's checkpoints are journal events (`batch_progress`), so they need no operation of their
own.

The rules *about* these rows (who may decide a gate, with what token, how an expired gate
resolves, how a lease is renewed) live in the runtime (`approvals.py`, `leases.py`); a store
only applies them atomically: `append_decision` is a compare-and-set on the gate's status.
Workers (`runtime/worker.py`) add a queue: a `queued` run, `claim_runs` (leases handed out
atomically), `next_wake` and `wait_for_work` (when to look again) and a registry of live workers.
Implementations: `memory.py` (in-process), `sqlite.py` (with its `sqlite_*` parts) and
`postgres.py`. The behaviour every store must have is `tests/store/`, run against each of them.
This module never does I/O and never imports a store implementation.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from sagac.runtime.clock import parse_rfc3339

from sagac.errors import CallbackLate, CallbackNotPending, CallbackTokenUsed, UnknownApiToken

Event = dict[str, Any]
# An approval request and its decision, as `Store.approvals` returns it: run_id, gate, key,
# message, approvers, context, deadline, deadline_epoch, on_timeout, token_sha256,
# definition_hash, status (pending, approved, rejected, timed_out), requested_at,
# requested_seq, decided_by, decided_at, comment, value, decision_code.
Approval = dict[str, Any]
# A parked node (`Store.parked`): run_id, step, attempt (0 but for callbacks), kind (sleep,
# signal, callback), signal (the name, kind signal), token_sha256 (kind callback), due_epoch
# (the sleep's due time or the timeout's deadline; None: none), state (pending, done),
# opened_seq, and for a callback whose outcome came: outcome ({"result": X} or {"error":
# {"code", "message"}}), outcome_at (RFC 3339), outcome_by.
Parked = dict[str, Any]
# A signal sent to a run (`Store.send_signal`): signal_id (increasing per store), run_id, name,
# data, sent_at (RFC 3339), sent_by, and once a `wait` consumed it (its `wait_ended` event):
# consumed_step, consumed_seq.
Signal = dict[str, Any]

# Every status a run can have (`RunRecord.status`; the report's `RunStatus`, plus `queued`: a
# run submitted for a worker and not started yet, and `interrupted`: a run a signal stopped;
# no report is written for either).
RUN_STATUSES = (
    "queued",
    "running",
    "interrupted",
    "waiting_approval",
    "waiting",  # parked on a sleep, a wait for a signal, a callback or a child run
    "succeeded",
    "compensated",
    "compensation_failed",
    "failed",
)
# A parked run: nothing moves it until its wake time (`Store.next_wake`) comes.
PARKED_STATUSES = ("waiting_approval", "waiting")
# A run that has finished: it waits for nothing any more.
FINISHED_STATUSES = ("succeeded", "compensated", "compensation_failed", "failed")


@dataclass(slots=True)
class RunRecord:
    run_id: str
    saga: str
    version: int
    definition_hash: str
    input: Any
    status: str = "running"
    file: str | None = None
    created_at: str = ""
    updated_at: str = ""
    report: dict[str, Any] | None = None
    # Also, when set: cancel_requested_at, cancel_by, cancel_reason, idempotency_key, and
    # wake_at (epoch seconds: when a worker may claim the run, see `Store.next_wake`).
    meta: dict[str, Any] = field(default_factory=dict)
    # The sha256 (`approvals.token_hash`) of the run's approval token: a submitted run's gates
    # take it instead of a fresh token each (`submit`, `gates`); None for a run started in
    # the foreground. The clear token is never given to a store.
    approval_token_sha256: str | None = None
    # A child run (a `call` node's run): its parent run and the call node's id.
    parent_run_id: str | None = None
    parent_step: str | None = None

    def summary(self) -> dict[str, Any]:
        """The run as one JSON row of a list (`sagac runs --json`, the HTTP API's run pages)."""
        return {
            "run_id": self.run_id,
            "saga": self.saga,
            "version": self.version,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "definition_hash": self.definition_hash,
            "idempotency_key": self.meta.get("idempotency_key"),
            "cancel_requested": bool(self.meta.get("cancel_requested_at")),
            "parent_run_id": self.parent_run_id,
        }


@dataclass(frozen=True, slots=True)
class Definition:
    """What a run runs, kept in the store with it: a worker runs exactly this, whatever the
    YAML file on its machine says now (or wherever it is)."""

    hash: str  # the plan's definition hash: "sha256:" + the sha256 of `source`
    saga: str
    source: str  # the definition's canonical JSON (`compiler.plan.canonical_json`)
    file: str | None = None  # the path it was compiled from: python actions import beside it


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live `sagac worker` process, as `Store.workers` lists it."""

    worker_id: str  # also the owner of every lease it holds (`leases.owner_id` form)
    host: str
    pid: int
    concurrency: int
    started_at: str = ""  # RFC 3339, set by the store
    heartbeat_at: str = ""  # RFC 3339, set by the store at every `heartbeat`
    state: str = "running"  # or "stopping" (a graceful stop: it claims nothing new)
    held: tuple[str, ...] = ()  # the runs whose lease it holds now (filled by `workers`)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token of the HTTP API (`sagac tokens`), as a store keeps it: never the token
    itself, only its sha256 (`approvals.token_hash` form). `token_id` is public (it is also
    part of the token, `auth.new_api_token`): listings and revocations name it, or a prefix of
    it. A token's `groups` count as approver groups of its `user` (`group:NAME` in a gate's
    approvers matches them, as well as the store's groups)."""

    token_id: str
    sha256: str
    user: str
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ("read",)
    created_at: str = ""  # RFC 3339, set by the store
    created_by: str = ""  # who created it (the OS user of `sagac tokens create`)
    revoked_at: str | None = None  # RFC 3339, set by `Store.revoke_api_token`
    revoked_by: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log. The store stamps it with the time and `os_user()`."""

    action: str
    outcome: str
    run_id: str | None = None
    gate: str | None = None
    actor: str | None = None
    code: str | None = None
    message: str | None = None
    detail: Any = None


class Store(ABC):
    """An async store of runs and journals. Every method may raise `StoreError`."""

    # Whether other processes share what this store holds (a file, a database server). Only
    # then are leases taken (`leases.held`), cancel requests accepted and watched for by a
    # running saga (`resume.cancel`, `phases`): a store of one process has nobody to exclude
    # and nobody to hear a request from. The store still implements every method.
    shared: ClassVar[bool] = True
    # Whether many appends share one commit (SQLite's writer queue): the journal then lets
    # events that no action waits for wait for the next commit (`events.Journal`).
    group_commit: ClassVar[bool] = False

    # -- runs ----------------------------------------------------------------------------

    @abstractmethod
    async def create_run(self, record: RunRecord, definition: Definition | None = None) -> None:
        """Record a new run, and with it its `definition` (kept once per hash: saving a hash
        the store has changes nothing) in the same write; raises StoreError when
        `record.run_id` already exists. A record with status `queued` is work for workers:
        creating one wakes them (`wait_for_work`)."""

    @abstractmethod
    async def get_run(self, run_id: str) -> RunRecord:
        """The run's record; raises RunNotFound."""

    @abstractmethod
    async def update_run(
        self, run_id: str, status: str, report: dict[str, Any] | None = None
    ) -> None:
        """Set the run's status (and its report when it has one); raises RunNotFound."""

    @abstractmethod
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
        """Runs, newest first, optionally filtered by saga and status, created at `since` or
        later and before `until` (RFC 3339 times as the store writes them), and, with
        `before` (a run id: a page's last run), only the runs listed after that run: keyset
        pagination, stable while runs are added. An unknown `before` run lists nothing."""

    @abstractmethod
    async def definition(self, definition_hash: str) -> Definition | None:
        """The definition saved under `definition_hash`, or None."""

    @abstractmethod
    async def claim_key(self, saga: str, key: str, run_id: str, input_hash: str) -> tuple[str, str]:
        """Claim saga `saga`'s run-level idempotency key for `run_id`; returns the (run_id,
        input_hash) the key belongs to: ours when it was free, the first claimant's otherwise.
        Keys are scoped to the saga's name. The run's record shows its key
        (`meta["idempotency_key"]`)."""

    @abstractmethod
    async def rebind_definition(self, run_id: str, definition: Definition, actor: str) -> None:
        """A forced resume under a changed definition: the run and its pending approval
        requests now belong to `definition.hash` (audited as `force_resume`, with the old
        hash), and `definition` is kept (once per hash, as `create_run` keeps one) in the same
        write, so that a worker can run it later."""

    # -- the journal ---------------------------------------------------------------------

    @abstractmethod
    async def append(
        self, run_id: str, events: Sequence[Event], report: dict[str, Any] | None = None
    ) -> None:
        """Append events to the run's journal, in order; durable when it returns. The run's
        final append carries its `report`: the run's status becomes `report["status"]` and the
        report is stored in the same write, so no reader sees the last event without it (a
        lease this store holds on the run ends in that write too). The append that carries a
        `queued` run's `saga_started` makes it `running`, in the same write."""

    def submit_append(
        self, run_id: str, events: Sequence[Event], report: dict[str, Any] | None = None
    ) -> asyncio.Future[None]:
        """Start an append now, in call order; awaiting the result waits for durability."""
        return asyncio.ensure_future(self.append(run_id, events, report))

    @abstractmethod
    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """The run's events with `seq` greater than `after_seq`, in order; RunNotFound."""

    @abstractmethod
    async def steps(self, run_id: str) -> list[dict[str, Any]]:
        """The state of every step (and foreach item) of a run as its journal says, in the
        order they started: step, item_index, status, attempt, idempotency_key, result,
        error, started_seq, ended_seq, compensation, compensation_attempt (none for an
        unknown run)."""

    # -- leases: who may write a run's journal -------------------------------------------

    @abstractmethod
    async def acquire_lease(self, run_id: str, owner: str, ttl: float) -> float:
        """Take (or re-take) the run's lease for `ttl` seconds; returns its expiry (epoch
        seconds). Raises LeaseHeld when another owner that may be alive (`owner_alive`)
        holds an unexpired lease."""

    @abstractmethod
    async def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        """Extend `owner`'s lease by `ttl` from now; False when it is no longer `owner`'s (it
        expired and was taken). True after the run's final append ended it."""

    @abstractmethod
    async def release_lease(self, run_id: str, owner: str) -> None:
        """End `owner`'s lease (nothing when another owner holds it now)."""

    @abstractmethod
    async def get_lease(self, run_id: str, *, expired: bool = False) -> tuple[str, float] | None:
        """(owner, expires_at) of an unexpired lease, else None. With `expired`, also of a
        lease that ran out and is still recorded (its holder died: `runs --status stuck`
        names it); a released lease is gone either way."""

    # -- workers: who moves runs by themselves -------------------------------------------

    @abstractmethod
    async def claim_runs(self, owner: str, ttl: float, limit: int) -> list[str]:
        """Take, in one atomic write, the leases (for `owner`, `ttl` seconds) of up to `limit`
        runs a worker should move now, and return their ids, the longest-waiting first. Two
        claimers never get the same run (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one
        write transaction). Runnable means: the store holds the run's definition, no
        unexpired lease covers it, and either its status is `queued`, `running` or
        `interrupted` (never started, or its driver stopped or died), or it is parked
        (`waiting_approval`, `waiting`) and its wake time has come (see `next_wake`). A
        claimed lease is this store's as one `acquire_lease` took (`leases.held(...,
        claimed=True)` adopts it): renewed, released, and ended by the run's final append
        alike."""

    @abstractmethod
    async def next_wake(self) -> float | None:
        """The earliest future time (epoch seconds) at which a run that is not runnable now
        becomes runnable by the clock alone, or None. A parked run's wake time is set when it
        parks (the append or `update_run` that makes it `waiting_approval` or `waiting`: see
        the parked rows below), the earliest deadline of its pending gates and due time of
        its pending parked rows; a decision (`append_decision`), a cancel request
        (`request_cancel`), a signal or callback it waits for and a finished child run make it
        now. An unexpired lease on an unfinished run wakes at its expiry. A worker sleeps no
        longer than this."""

    @abstractmethod
    async def wait_for_work(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; return True as soon as another process (or task)
        made work: created a `queued` run, decided a gate, requested a cancel, released a
        lease, or woke a parked run (a signal, a callback, a finished child). PostgreSQL:
        LISTEN/NOTIFY; SQLite: a cheap poll of the file's commit counter; memory: an
        in-process event. False when the time ran out. May return True without work (a
        spurious wake is only a wasted claim)."""

    @abstractmethod
    async def heartbeat(self, worker: WorkerInfo) -> None:
        """Record that `worker` is alive now (insert or update its row, `started_at` kept)."""

    @abstractmethod
    async def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped (nothing when unknown)."""

    @abstractmethod
    async def workers(self, alive_within: float) -> list[WorkerInfo]:
        """Workers whose last heartbeat is at most `alive_within` seconds old, oldest first,
        each with the runs whose unexpired lease it holds (`held`, sorted)."""

    # -- cancel requests -----------------------------------------------------------------

    @abstractmethod
    async def request_cancel(self, run_id: str, by: str, reason: str | None) -> bool:
        """Record a cancel request (audited as `cancel`: `accepted`, or `repeated`); False when
        one was already there (the first one is kept). RunNotFound."""

    @abstractmethod
    async def cancel_request(self, run_id: str) -> dict[str, Any] | None:
        """{at, by, reason} when a cancel of the run was requested, else None."""

    # -- approvals (a view of the journal's approval events) and the audit log -------------

    @abstractmethod
    async def approvals(
        self, run_id: str | None = None, status: str | None = None
    ) -> list[Approval]:
        """Approval requests, oldest first, optionally of one run and with one status."""

    @abstractmethod
    async def approval(self, run_id: str, gate: str) -> Approval | None:
        """The approval request of `gate` in run `run_id`, or None."""

    @abstractmethod
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
        """Append the `approval_decided` event of `gate` (`fields`, at the journal's next
        seq) and write `audit` (its `detail`, a dict, gets the event's `seq`), both in one
        atomic write, and only if the gate is still pending: the compare-and-set that makes a
        decision single-use. Raises RunNotFound; LeaseHeld when a live owner other than
        `owner` holds the run (it numbers its own events); DecisionConflict when the gate is
        unknown or not pending, or when `definition_hash` is given and the run or the request
        no longer has it. Returns the event."""

    # -- parked nodes, signals, callbacks, child runs (issue 13) ----------------------------
    # A parked row opens with `sleep_started` (kind sleep, due at its `until`),
    # `wait_started` (kind signal, due at its `deadline`) or `callback_issued` (kind callback,
    # keyed by its `attempt`, due at its `deadline`), and closes (state done) with `wait_ended
    # {step, attempt?, signal_id?}`, whose `signal_id` marks that signal consumed; both are
    # appended by the run's driver, in the journal's write (a new opening of the same step and
    # attempt replaces the row). A run that parks (status `waiting` or `waiting_approval`) gets
    # its wake time in that write: now when a cancel was requested, when a kept unconsumed
    # signal has the name a pending `signal` row waits for, or when a pending callback row has
    # its outcome; else the earliest `due_epoch` of its pending rows and `deadline_epoch` of
    # its pending gates (None: none). An accepted signal or callback of a parked run, and a
    # child run that finishes (its parent parked), make the wake time now and wake workers.
    # As with `append_decision`, a refusal only raises: the caller audits it (it knows why);
    # what is accepted is audited by the store in the same write.

    @abstractmethod
    async def parked(self, run_id: str) -> list[Parked]:
        """The run's parked rows, pending and done, in the order they were opened (none for an
        unknown run)."""

    @abstractmethod
    async def send_signal(
        self, run_id: str, name: str, data: Any, audit: AuditEntry, *, limit: int
    ) -> Signal:
        """Keep signal `name` (`data`, sent by `audit.actor`) for run `run_id` and write
        `audit` (its run set, its `detail`, a dict, given the `signal_id`) in one atomic
        write; no lease needed. Raises RunNotFound; SignalRefused: `RunFinished` when the run
        has finished, `SignalAlreadySent` when `limit` signals of that name were sent already
        (nothing is written then: the caller audits the refusal). When the run is parked and a
        pending `signal` row of it waits for `name`, the run's wake time becomes now and
        workers are woken. Returns the signal."""

    @abstractmethod
    async def signals(self, run_id: str, name: str | None = None) -> list[Signal]:
        """The signals sent to the run (of one name), oldest first, consumed ones included."""

    @abstractmethod
    async def callback(self, token_sha256: str) -> Parked | None:
        """The callback row with that token hash, or None."""

    @abstractmethod
    async def complete_callback(
        self, token_sha256: str, outcome: dict[str, Any], audit: AuditEntry
    ) -> Parked:
        """Record `outcome` (by `audit.actor`) on the callback row with that token hash, with
        `audit` (its run and gate set from the row, its `detail` given the `attempt`) in one
        atomic write: the compare-and-set that makes a token single-use. Raises
        CallbackRefused, writing nothing (the caller audits the refusal):
        `UnknownCallbackToken` (no row), `CallbackTokenUsed` (an outcome is there already),
        `CallbackLate` (past its `due_epoch`), `CallbackNotPending` (the row is done, the run
        finished, or another pending row of the step has its outcome already). Wakes the run
        (wake time now) when it is parked. Returns the row as updated."""

    @abstractmethod
    async def children(self, run_id: str) -> list[RunRecord]:
        """The child runs of `run_id` (`RunRecord.parent_run_id`), oldest first."""

    @abstractmethod
    async def audit(self, entry: AuditEntry) -> None:
        """Write one audit entry."""

    @abstractmethod
    async def audit_log(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Audit entries in the order written (of one run, or all): id, at, run_id, gate,
        actor, os_user, action, outcome, code, message, detail."""

    # -- approver groups -----------------------------------------------------------------

    @abstractmethod
    async def add_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        """Make `users` members of the approver group `group` (`group:NAME` in a gate's
        approvers); returns those who were not members yet. Audited (`group_add`, see
        `group_change`), with the operating-system user of this process."""

    @abstractmethod
    async def remove_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        """Take `users` out of `group`; returns those who were members. Audited like `add`."""

    @abstractmethod
    async def group_members(self, group: str | None = None) -> dict[str, list[str]]:
        """Approver groups (or the one named) and their members, sorted by name."""

    # -- API tokens (issue 14) ------------------------------------------------------------

    @abstractmethod
    async def create_api_token(self, token: ApiToken) -> ApiToken:
        """Keep `token` (its `created_at` stamped by the store; `revoked_at` ignored) and write
        its audit entry (`token_create`, `token_entry`) in one write; returns it as kept.
        Raises StoreError when its `token_id` or `sha256` is there already."""

    @abstractmethod
    async def api_token(self, sha256: str) -> ApiToken | None:
        """The token whose hash is `sha256` (revoked or not), or None."""

    @abstractmethod
    async def api_tokens(self) -> list[ApiToken]:
        """Every token, revoked ones included, in the order they were created."""

    @abstractmethod
    async def revoke_api_token(self, id_or_prefix: str, by: str) -> ApiToken:
        """Revoke the token whose `token_id` is `id_or_prefix` or, failing that, the one token
        whose id begins with it (`pick_token`): its `revoked_at` and `revoked_by` are set,
        with the audit entry (`token_revoke`), in one write. Revoking a revoked token changes
        nothing and is audited as `unchanged`. Raises UnknownApiToken (no such token, or a
        prefix of several). Returns the token as it is now."""

    async def migrate(self) -> tuple[int, int]:
        """Bring the store to this sagac's schema now (`sagac store migrate`); returns (the
        schema version it was at, the version it is at). Raises StoreError when the store's
        schema is newer than this sagac knows. A store without a schema (memory): (0, 0)."""
        return 0, 0

    async def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections (nothing to do for in-process stores)."""


# -- what every store writes the same way -----------------------------------------------


def group_change(action: str, group: str, asked: Sequence[str], changed: list[str]) -> AuditEntry:
    """The audit entry of a `sagac groups` change (`group_add`, `group_remove`): the group,
    who was asked for and who changed (a repeated change is audited too, as `unchanged`). The
    actor is the OS user."""
    return AuditEntry(
        actor=os_user(),
        action=action,
        outcome="accepted" if changed else "unchanged",
        message=f"group:{group} {'+' if action == 'group_add' else '-'} {', '.join(asked)}",
        detail={"group": group, "users": list(asked), "changed": changed},
    )


def token_entry(action: str, token: ApiToken, actor: str, changed: bool = True) -> AuditEntry:
    """The audit entry of a token's creation (`token_create`) or revocation (`token_revoke`):
    its id, user, groups and scopes; never the token, nor its hash."""
    return AuditEntry(
        actor=actor,
        action=action,
        outcome="accepted" if changed else "unchanged",
        message=f"token {token.token_id} of {token.user}",
        detail={
            "token_id": token.token_id,
            "user": token.user,
            "groups": list(token.groups),
            "scopes": list(token.scopes),
        },
    )


def pick_token(tokens: Sequence[ApiToken], id_or_prefix: str) -> ApiToken:
    """The token `Store.revoke_api_token` means among `tokens`: the one with that id, else the
    one whose id begins with it; UnknownApiToken for none, or several."""
    exact = [t for t in tokens if t.token_id == id_or_prefix]
    if exact:
        return exact[0]
    found = [t for t in tokens if id_or_prefix and t.token_id.startswith(id_or_prefix)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UnknownApiToken(
            f"no API token {id_or_prefix!r} in this store", hint="sagac tokens list"
        )
    raise UnknownApiToken(
        f"{id_or_prefix!r} begins the ids of {len(found)} tokens: "
        + ", ".join(t.token_id for t in found),
        hint="give more of the id",
    )


def cancel_entry(run_id: str, by: str, reason: str | None, first: bool) -> AuditEntry:
    """The audit entry of a cancel request (`repeated` when one was already there)."""
    return AuditEntry(
        run_id=run_id,
        actor=by,
        action="cancel",
        outcome="accepted" if first else "repeated",
        message=reason,
    )


def rebind_entry(run_id: str, actor: str, old: str, new: str) -> AuditEntry:
    """The audit entry of a forced resume under a changed definition."""
    return AuditEntry(
        run_id=run_id,
        actor=actor,
        action="force_resume",
        outcome="accepted",
        message="resumed under a changed definition",
        detail={"from": old, "to": new},
    )


def with_seq(entry: AuditEntry, seq: int) -> AuditEntry:
    """`entry` with the seq of the event it audits first in its detail (`append_decision`)."""
    return replace(entry, detail={"seq": seq, **(entry.detail or {})})


# The events that open a parked row, and the kind of row each opens.
PARKED_KINDS = {"sleep_started": "sleep", "wait_started": "signal", "callback_issued": "callback"}
# A parked row's columns as every store keeps them (the SQL stores' `parked` table).
PARKED_COLUMNS = (
    "run_id",
    "step",
    "attempt",
    "kind",
    "signal",
    "token_sha256",
    "due_epoch",
    "state",
    "opened_seq",
    "outcome",
    "outcome_at",
    "outcome_by",
)


def parked_row(run_id: str, e: Event) -> Parked:
    """The pending row an opening event (one of `PARKED_KINDS`) opens: a sleep is due at its
    `until`, a wait or a callback at its `deadline` (None: none)."""
    kind = PARKED_KINDS[e["type"]]
    due = e.get("until") if kind == "sleep" else e.get("deadline")
    return {
        "run_id": run_id,
        "step": e["step"],
        "attempt": e.get("attempt") or 0 if kind == "callback" else 0,
        "kind": kind,
        "signal": e.get("signal") if kind == "signal" else None,
        "token_sha256": e.get("token_sha256") if kind == "callback" else None,
        "due_epoch": parse_rfc3339(due) if due else None,
        "state": "pending",
        "opened_seq": e["seq"],
        "outcome": None,
        "outcome_at": None,
        "outcome_by": None,
    }


def callback_refusal(row: Parked, run_status: str, siblings: Sequence[Parked], now: float) -> None:
    """Raise the refusal a callback on `row` deserves (`Store.complete_callback`), if any:
    its run's status, the step's other callback rows (`siblings`) and the time are given."""
    if row["outcome"] is not None:
        raise CallbackTokenUsed(f"this token was used already ({row['outcome_at']})")
    if row["due_epoch"] is not None and now > row["due_epoch"]:
        raise CallbackLate(f"step {row['step']!r} stopped waiting for this callback")
    if row["state"] != "pending" or run_status in FINISHED_STATUSES:
        raise CallbackNotPending(f"step {row['step']!r} of run {row['run_id']} no longer waits")
    if any(s["state"] == "pending" and s["outcome"] is not None for s in siblings):
        raise CallbackNotPending(
            f"step {row['step']!r} of run {row['run_id']} has another attempt's callback"
        )


def callback_audit(entry: AuditEntry, row: Parked) -> AuditEntry:
    """An accepted callback's audit entry: its run and gate (the step) from the row, and the
    attempt in its detail."""
    detail = {"attempt": row["attempt"], **(entry.detail or {})}
    return replace(entry, run_id=row["run_id"], gate=row["step"], detail=detail)


def signal_audit(entry: AuditEntry, signal: Signal) -> AuditEntry:
    """An accepted signal's audit entry: its run, and its `signal_id` in its detail."""
    detail = {**(entry.detail or {}), "signal_id": signal["signal_id"]}
    return replace(entry, run_id=signal["run_id"], detail=detail)


def os_user() -> str:
    """The operating-system user this process runs as (its effective uid): what the audit can
    vouch for, unlike `--as` or `$USER`, which the caller chooses."""
    return _user_name(os.geteuid())


@functools.cache
def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid with no passwd entry (containers)
        return f"uid:{uid}"


def owner_alive(owner: str) -> bool:
    """Whether a lease's owner (`user@host:pid/nonce`, see `leases.owner_id`) may still be
    alive: False only for a process of this host that no longer exists, so a crashed run can
    be resumed at once instead of after its lease expires. A reused pid errs on the safe side
    (the lease is honoured until it expires). Never signals a process (`os.kill(pid, 0)` only
    asks whether it exists)."""
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
