"""An in-process store: runs, journals and everything else in dicts, gone when the process ends.

Used by `sagac run --store memory` (the default store is a SQLite journal) and by tests,
including resume tests: two executions that share one `MemoryStore` see the same journal, as
two processes would share a database file. It implements the whole contract (leases, cancel
requests, approvals, audit, idempotency keys, definitions, claims and wake times, the worker
registry, parked rows, signals, callbacks and child runs; `wait_for_work` waits on an
`asyncio.Event`), so that the contract tests hold it to the same behaviour as SQLite; but it
is not `shared`: no other process can see it, so the runtime takes no leases on it and
accepts no cancel requests for it.

Appends only extend a list (the journal's hot path): what SQLite materialises as it appends
(approval requests, parked rows, signals' consumption, the steps view) is folded from the
journal when it is read; only what no event says (the signals, callbacks' outcomes) is kept
beside it. This module never does I/O.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from sagac.runtime.clock import parse_rfc3339, rfc3339

from sagac.errors import (
    DecisionConflict,
    LeaseHeld,
    RunFinished,
    RunNotFound,
    SignalAlreadySent,
    StoreError,
    UnknownCallbackToken,
)

from .base import (
    FINISHED_STATUSES,
    PARKED_KINDS,
    PARKED_STATUSES,
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
    parked_row,
    pick_token,
    rebind_entry,
    signal_audit,
    token_entry,
    with_seq,
)

_UNPARKED = frozenset(("queued", "running", "interrupted"))
_UNFINISHED = _UNPARKED | set(PARKED_STATUSES)


class MemoryStore(Store):
    shared = False

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._events: dict[str, list[Event]] = {}
        self._groups: dict[str, set[str]] = {}
        self._keys: dict[tuple[str, str], tuple[str, str]] = {}  # (saga, key) -> (run, hash)
        self._key_of: dict[str, str] = {}  # run id -> its key
        self._leases: dict[str, tuple[str, float]] = {}  # run id -> (owner, expires_at)
        self._ended: set[tuple[str, str]] = set()  # (run id, owner): ended by a final append
        # (run id, gate, requested_seq) -> the definition hash a forced resume moved it to
        self._rebound: dict[tuple[str, str, int], str] = {}
        # run id -> (last seq, hash before) of each forced resume: the run's hash at any seq
        self._rebinds: dict[str, list[tuple[int, str]]] = {}
        self._audit: list[dict[str, Any]] = []
        self._definitions: dict[str, Definition] = {}
        self._wake: dict[str, float | None] = {}  # run id -> its wake time (`next_wake`)
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}  # id -> (row, last beat)
        self._signals: list[Signal] = []  # consumption folded from the journals when read
        # token_sha256 -> a callback's outcome, outcome_at, outcome_by (the rest of its row is
        # folded from the journal)
        self._outcomes: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, ApiToken] = {}  # token id -> token, in creation order
        self._work = asyncio.Event()  # set by whatever makes work (`wait_for_work`)
        self._work_loop: asyncio.AbstractEventLoop | None = None

    # -- runs and the journal --------------------------------------------------------------

    async def create_run(self, record: RunRecord, definition: Definition | None = None) -> None:
        if record.run_id in self._runs:
            raise StoreError(f"run {record.run_id!r} already exists")
        now = time.time()
        created = parse_rfc3339(record.created_at) if record.created_at else now
        self._wake[record.run_id] = min(created, now)
        record.created_at = record.created_at or rfc3339(now)
        record.updated_at = rfc3339(now)
        self._runs[record.run_id] = record
        self._events[record.run_id] = []
        key = self._key_of.get(record.run_id)
        if key is not None:
            record.meta["idempotency_key"] = key
        if definition is not None:
            self._definitions.setdefault(definition.hash, definition)
        if record.status == "queued":
            self._work.set()

    async def get_run(self, run_id: str) -> RunRecord:
        try:
            return self._shown(self._runs[run_id])
        except KeyError:
            raise RunNotFound(f"no run {run_id!r} in this store") from None

    def _shown(self, record: RunRecord) -> RunRecord:
        """`record` with its wake time in `meta`, as the SQL stores read it."""
        wake = self._wake.get(record.run_id)
        if wake is None:
            record.meta.pop("wake_at", None)
        else:
            record.meta["wake_at"] = wake
        return record

    async def update_run(
        self, run_id: str, status: str, report: dict[str, Any] | None = None
    ) -> None:
        record = await self.get_run(run_id)
        record.status = status
        record.updated_at = rfc3339(time.time())
        if report is not None:
            record.report = report
        if status in PARKED_STATUSES:
            self._park(record)
        elif status in _UNPARKED:  # now at the latest, as `rows.unpark_wake` says
            now, wake = time.time(), self._wake.get(run_id)
            if wake is None or wake > now:
                self._wake[run_id] = now
        elif status in FINISHED_STATUSES and record.parent_run_id is not None:
            self._wake_parked(record.parent_run_id)  # the parent's call can go on

    def _park(self, record: RunRecord) -> None:
        """A parked run's wake time, as `rows.park_wake` says: now when a cancel was
        requested, a kept signal is waited for or a callback's outcome is there; else the
        earliest due time of its pending parked rows and gates (None: none)."""
        run_id = record.run_id
        pending = [row for row in self._parked_rows(run_id) if row["state"] == "pending"]
        waited = {row["signal"] for row in pending if row["kind"] == "signal"}
        if (
            record.meta.get("cancel_requested_at")
            or any(row.get("outcome") is not None for row in pending)
            or any(
                sig["name"] in waited and sig["consumed_step"] is None
                for sig in self._signal_rows(run_id)
            )
        ):
            self._wake[run_id] = time.time()
            return
        deadlines = [
            row["deadline_epoch"]
            for row in self._approval_rows(run_id).values()
            if row["status"] == "pending" and row["deadline_epoch"] is not None
        ]
        deadlines += [row["due_epoch"] for row in pending if row["due_epoch"] is not None]
        self._wake[run_id] = min(deadlines, default=None)

    def _wake_parked(self, run_id: str) -> None:
        """Make a parked run's wake time now and wake workers (nothing when it is not parked)."""
        record = self._runs.get(run_id)
        if record is not None and record.status in PARKED_STATUSES:
            self._wake[run_id] = time.time()
            self._work.set()

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
        ordered = list(reversed(self._runs.values()))
        if before is not None:
            at = next((i for i, r in enumerate(ordered) if r.run_id == before), len(ordered))
            ordered = ordered[at + 1 :]
        runs = [
            self._shown(r)
            for r in ordered
            if (saga is None or r.saga == saga)
            and (status is None or r.status == status)
            and (since is None or r.created_at >= since)
            and (until is None or r.created_at < until)
        ]
        return runs[:limit]

    async def definition(self, definition_hash: str) -> Definition | None:
        return self._definitions.get(definition_hash)

    async def claim_key(self, saga: str, key: str, run_id: str, input_hash: str) -> tuple[str, str]:
        owner = self._keys.setdefault((saga, key), (run_id, input_hash))
        self._key_of.setdefault(owner[0], key)
        if owner[0] in self._runs:
            self._runs[owner[0]].meta["idempotency_key"] = key
        return owner

    async def rebind_definition(self, run_id: str, definition: Definition, actor: str) -> None:
        record = await self.get_run(run_id)
        new_hash = definition.hash
        self._definitions.setdefault(new_hash, definition)
        for row in self._approval_rows(run_id).values():
            if row["status"] == "pending":
                self._rebound[run_id, row["gate"], row["requested_seq"]] = new_hash
        journal = self._events[run_id]
        self._rebinds.setdefault(run_id, []).append(
            (journal[-1]["seq"] if journal else 0, record.definition_hash)
        )
        old, record.definition_hash = record.definition_hash, new_hash
        self._write_audit(rebind_entry(run_id, actor, old, new_hash))

    async def append(
        self, run_id: str, events: Sequence[Event], report: dict[str, Any] | None = None
    ) -> None:
        try:
            journal = self._events[run_id]
        except KeyError:
            raise RunNotFound(f"no run {run_id!r} in this store") from None
        journal.extend(events)
        if events and events[0]["type"] == "saga_started":  # a queued run starts running
            record = self._runs[run_id]
            if record.status == "queued":
                record.status, record.updated_at = "running", events[0]["at"]
        if report is not None:
            await self.update_run(run_id, report["status"], report)  # parks it, when it waits
            lease = self._leases.pop(run_id, None)  # the run's end ends its lease
            if lease is not None:
                self._ended.add((run_id, lease[0]))

    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        try:
            journal = self._events[run_id]
        except KeyError:
            raise RunNotFound(f"no run {run_id!r} in this store") from None
        return [copy.deepcopy(e) for e in journal if e["seq"] > after_seq]

    async def steps(self, run_id: str) -> list[dict[str, Any]]:
        return steps_of(self._events.get(run_id, ()))

    # -- leases ----------------------------------------------------------------------------

    def _check_lease(self, run_id: str, owner: str | None, now: float) -> None:
        held = self._leases.get(run_id)
        if held is not None and held[0] != owner and held[1] > now and owner_alive(held[0]):
            raise LeaseHeld(run_id, *held)

    async def acquire_lease(self, run_id: str, owner: str, ttl: float) -> float:
        now = time.time()
        self._check_lease(run_id, owner, now)
        self._leases[run_id] = (owner, now + ttl)
        return now + ttl

    async def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        if (run_id, owner) in self._ended:
            return True
        held = self._leases.get(run_id)
        if held is None or held[0] != owner:
            return False
        self._leases[run_id] = (owner, time.time() + ttl)
        return True

    async def release_lease(self, run_id: str, owner: str) -> None:
        self._ended.discard((run_id, owner))
        held = self._leases.get(run_id)
        if held is not None and held[0] == owner:
            del self._leases[run_id]
            self._work.set()

    async def get_lease(self, run_id: str, *, expired: bool = False) -> tuple[str, float] | None:
        held = self._leases.get(run_id)
        return held if held is not None and (expired or held[1] > time.time()) else None

    # -- workers ---------------------------------------------------------------------------

    def _runnable_at(self, record: RunRecord, now: float) -> float | None:
        """When the run becomes runnable (now or earlier: it is), or None: never by the clock
        alone (finished, no stored definition, or parked with no deadline)."""
        if record.status not in _UNFINISHED or record.definition_hash not in self._definitions:
            return None
        held = self._leases.get(record.run_id)
        free = held[1] if held is not None and held[1] > now else now
        if record.status not in PARKED_STATUSES:
            return free
        wake = self._wake.get(record.run_id)
        return None if wake is None else max(wake, free)

    async def claim_runs(self, owner: str, ttl: float, limit: int) -> list[str]:
        now = time.time()
        ready = []
        for order, record in enumerate(self._runs.values()):
            at = self._runnable_at(record, now)
            if at is not None and at <= now:
                wake = self._wake.get(record.run_id) or 0.0
                ready.append((wake, record.created_at, order, record.run_id))
        ready.sort()
        claimed = [run_id for *_, run_id in ready[: max(limit, 0)]]
        for run_id in claimed:
            self._leases[run_id] = (owner, now + ttl)
            self._ended.discard((run_id, owner))
        return claimed

    async def next_wake(self) -> float | None:
        now = time.time()
        times = [self._runnable_at(r, now) for r in self._runs.values()]
        return min((t for t in times if t is not None and t > now), default=None)

    async def wait_for_work(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        if self._work_loop is not loop:  # an Event waits in the loop of its first wait only
            work, self._work, self._work_loop = self._work, asyncio.Event(), loop
            if work.is_set():
                self._work.set()
        if not self._work.is_set():  # else: work was made since the last wait
            try:
                async with asyncio.timeout(timeout):
                    await self._work.wait()
            except TimeoutError:
                return False
        self._work.clear()
        return True

    async def heartbeat(self, worker: WorkerInfo) -> None:
        now = time.time()
        known = self._workers.get(worker.worker_id)
        started = known[0].started_at if known is not None else rfc3339(now)
        row = replace(worker, started_at=started, heartbeat_at=rfc3339(now), held=())
        self._workers[worker.worker_id] = (row, now)

    async def remove_worker(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def workers(self, alive_within: float) -> list[WorkerInfo]:
        now = time.time()
        held: dict[str, list[str]] = {}
        for run_id, (owner, expires) in self._leases.items():
            if expires > now:
                held.setdefault(owner, []).append(run_id)
        alive = [
            replace(row, held=tuple(sorted(held.get(row.worker_id, ()))))
            for row, beat in self._workers.values()
            if beat >= now - alive_within
        ]
        return sorted(alive, key=lambda w: (w.started_at, w.worker_id))

    # -- cancel requests -------------------------------------------------------------------

    async def request_cancel(self, run_id: str, by: str, reason: str | None) -> bool:
        meta = (await self.get_run(run_id)).meta
        first = not meta.get("cancel_requested_at")
        if first:
            meta["cancel_requested_at"] = rfc3339(time.time())
            meta["cancel_by"] = by
            if reason is not None:
                meta["cancel_reason"] = reason
            self._wake[run_id] = time.time()
            self._work.set()
        self._write_audit(cancel_entry(run_id, by, reason, first))
        return first

    async def cancel_request(self, run_id: str) -> dict[str, Any] | None:
        record = self._runs.get(run_id)
        if record is None or not record.meta.get("cancel_requested_at"):
            return None
        meta = record.meta
        return {
            "at": meta["cancel_requested_at"],
            "by": meta["cancel_by"],
            "reason": meta.get("cancel_reason"),
        }

    # -- approvals and audit ---------------------------------------------------------------

    def _approval_rows(self, run_id: str) -> dict[str, Approval]:
        """The run's approval requests by gate, folded from its journal as SQLite's appends
        materialise them (a new request of a gate replaces the old one)."""
        current = self._runs[run_id].definition_hash
        rebinds = self._rebinds.get(run_id, ())
        rows: dict[str, Approval] = {}
        for e in self._events[run_id]:
            t = e["type"]
            if t == "approval_requested":  # without a hash: the run's when it was requested
                then = next((old for seq, old in rebinds if seq >= e["seq"]), current)
                rows[e["step"]] = _requested(run_id, e, then)
            elif t == "approval_decided" and e["step"] in rows:
                _decided(rows[e["step"]], e)
        for gate, row in rows.items():
            rebound = self._rebound.get((run_id, gate, row["requested_seq"]))
            if rebound is not None:
                row["definition_hash"] = rebound
        return rows

    async def approvals(
        self, run_id: str | None = None, status: str | None = None
    ) -> list[Approval]:
        runs: Iterable[str] = self._runs if run_id is None else [run_id]
        runs = [r for r in runs if r in self._runs]
        rows = [
            row
            for r in runs
            for row in self._approval_rows(r).values()
            if status is None or row["status"] == status
        ]
        rows.sort(key=lambda row: row["requested_at"])
        return copy.deepcopy(rows)

    async def approval(self, run_id: str, gate: str) -> Approval | None:
        if run_id not in self._runs:
            return None
        return copy.deepcopy(self._approval_rows(run_id).get(gate))

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
        record = await self.get_run(run_id)
        row = self._approval_rows(run_id).get(gate)
        if row is None or row["status"] != "pending":
            raise DecisionConflict(f"gate {gate!r} of run {run_id} is not pending")
        if definition_hash is not None and not (
            row["definition_hash"] == record.definition_hash == definition_hash
        ):
            raise DecisionConflict(f"gate {gate!r} of run {run_id} changed definition")
        now = time.time()
        self._check_lease(run_id, owner, now)
        journal = self._events[run_id]
        event: Event = {
            "type": "approval_decided",
            "run_id": run_id,
            "seq": journal[-1]["seq"] + 1 if journal else 1,
            "at": rfc3339(now),
            **fields,
        }
        journal.append(event)
        self._write_audit(with_seq(audit, event["seq"]))
        self._wake[run_id] = now
        self._work.set()
        return copy.deepcopy(event)

    # -- parked nodes, signals, callbacks, child runs --------------------------------------

    def _parked_rows(self, run_id: str) -> list[Parked]:
        """The run's parked rows, folded from its journal as the SQL stores materialise them
        (a new opening of a step and attempt replaces the row), with the callbacks' outcomes."""
        rows: dict[tuple[str, int], Parked] = {}
        for e in self._events.get(run_id, ()):
            t = e["type"]
            if t in PARKED_KINDS:
                row = parked_row(run_id, e)
                rows.pop((row["step"], row["attempt"]), None)  # a reopened row goes last
                rows[row["step"], row["attempt"]] = row
            elif t == "wait_ended":
                ended = rows.get((e["step"], e.get("attempt") or 0))
                if ended is not None:
                    ended["state"] = "done"
        for row in rows.values():
            if row["kind"] == "callback":
                row.update(self._outcomes.get(row["token_sha256"]) or {})
        return list(rows.values())

    def _signal_rows(self, run_id: str) -> list[Signal]:
        """The run's signals, each marked consumed by the `wait_ended` event naming it."""
        consumed = {
            e["signal_id"]: e
            for e in self._events.get(run_id, ())
            if e["type"] == "wait_ended" and e.get("signal_id") is not None
        }
        out = []
        for sig in self._signals:
            if sig["run_id"] == run_id:
                ended = consumed.get(sig["signal_id"])
                step, seq = (ended["step"], ended["seq"]) if ended else (None, None)
                out.append({**sig, "consumed_step": step, "consumed_seq": seq})
        return out

    async def parked(self, run_id: str) -> list[Parked]:
        return copy.deepcopy(self._parked_rows(run_id))

    async def send_signal(
        self, run_id: str, name: str, data: Any, audit: AuditEntry, *, limit: int
    ) -> Signal:
        record = await self.get_run(run_id)
        if record.status in FINISHED_STATUSES:
            raise RunFinished(f"run {run_id} has finished ({record.status})")
        if sum(sig["name"] == name for sig in self._signal_rows(run_id)) >= limit:
            raise SignalAlreadySent(f"run {run_id} was sent {limit} {name!r} signal(s) already")
        signal: Signal = {
            "signal_id": len(self._signals) + 1,
            "run_id": run_id,
            "name": name,
            "data": copy.deepcopy(data),
            "sent_at": rfc3339(time.time()),
            "sent_by": audit.actor,
        }
        self._signals.append(signal)
        self._write_audit(signal_audit(audit, signal))
        waited = any(
            row["kind"] == "signal" and row["state"] == "pending" and row["signal"] == name
            for row in self._parked_rows(run_id)
        )
        if waited:
            self._wake_parked(run_id)
        return {**copy.deepcopy(signal), "consumed_step": None, "consumed_seq": None}

    async def signals(self, run_id: str, name: str | None = None) -> list[Signal]:
        rows = self._signal_rows(run_id)
        return copy.deepcopy([sig for sig in rows if name is None or sig["name"] == name])

    def _callback_row(self, token_sha256: str) -> Parked | None:
        for run_id in self._runs:
            for row in self._parked_rows(run_id):
                if row["kind"] == "callback" and row["token_sha256"] == token_sha256:
                    return row
        return None

    async def callback(self, token_sha256: str) -> Parked | None:
        return copy.deepcopy(self._callback_row(token_sha256))

    async def complete_callback(
        self, token_sha256: str, outcome: dict[str, Any], audit: AuditEntry
    ) -> Parked:
        row = self._callback_row(token_sha256)
        if row is None:
            raise UnknownCallbackToken("no callback was issued with this token")
        run_id, step = row["run_id"], row["step"]
        status = self._runs[run_id].status
        siblings = [
            other
            for other in self._parked_rows(run_id)
            if other["step"] == step and other["attempt"] != row["attempt"]
        ]
        now = time.time()
        callback_refusal(row, status, siblings, now)
        done = {
            "outcome": copy.deepcopy(outcome),
            "outcome_at": rfc3339(now),
            "outcome_by": audit.actor,
        }
        self._outcomes[token_sha256] = done
        self._write_audit(callback_audit(audit, row))
        self._wake_parked(run_id)
        return copy.deepcopy({**row, **done})

    async def children(self, run_id: str) -> list[RunRecord]:
        return [self._shown(r) for r in self._runs.values() if r.parent_run_id == run_id]

    def _write_audit(self, entry: AuditEntry) -> None:
        self._audit.append(
            {
                "id": len(self._audit) + 1,
                "at": rfc3339(time.time()),
                "run_id": entry.run_id,
                "gate": entry.gate,
                "actor": entry.actor,
                "os_user": os_user(),
                "action": entry.action,
                "outcome": entry.outcome,
                "code": entry.code,
                "message": entry.message,
                "detail": copy.deepcopy(entry.detail),
            }
        )

    async def audit(self, entry: AuditEntry) -> None:
        self._write_audit(entry)

    async def audit_log(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return copy.deepcopy([a for a in self._audit if run_id is None or a["run_id"] == run_id])

    # -- approver groups -------------------------------------------------------------------

    async def add_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        members = self._groups.setdefault(group, set())
        added = [u for u in dict.fromkeys(users) if u not in members]
        members.update(added)
        if not members:
            del self._groups[group]
        self._write_audit(group_change("group_add", group, users, added))
        return added

    async def remove_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        members = self._groups.get(group, set())
        removed = [u for u in dict.fromkeys(users) if u in members]
        members.difference_update(removed)
        if not members:
            self._groups.pop(group, None)
        self._write_audit(group_change("group_remove", group, users, removed))
        return removed

    async def group_members(self, group: str | None = None) -> dict[str, list[str]]:
        return {
            name: sorted(members)
            for name, members in sorted(self._groups.items())
            if group is None or name == group
        }

    # -- API tokens ------------------------------------------------------------------------

    async def create_api_token(self, token: ApiToken) -> ApiToken:
        if token.token_id in self._tokens or any(
            t.sha256 == token.sha256 for t in self._tokens.values()
        ):
            raise StoreError(f"API token {token.token_id!r} already exists")
        kept = replace(
            token,
            groups=tuple(token.groups),
            scopes=tuple(token.scopes),
            created_at=rfc3339(time.time()),
            revoked_at=None,
            revoked_by=None,
        )
        self._tokens[kept.token_id] = kept
        self._write_audit(token_entry("token_create", kept, kept.created_by))
        return kept

    async def api_token(self, sha256: str) -> ApiToken | None:
        return next((t for t in self._tokens.values() if t.sha256 == sha256), None)

    async def api_tokens(self) -> list[ApiToken]:
        return list(self._tokens.values())

    async def revoke_api_token(self, id_or_prefix: str, by: str) -> ApiToken:
        token = pick_token(list(self._tokens.values()), id_or_prefix)
        first = token.revoked_at is None
        if first:
            token = replace(token, revoked_at=rfc3339(time.time()), revoked_by=by)
            self._tokens[token.token_id] = token
        self._write_audit(token_entry("token_revoke", token, by, first))
        return token


def _requested(run_id: str, e: Event, fallback_hash: str) -> Approval:
    deadline = e.get("deadline")
    return {
        "run_id": run_id,
        "gate": e["step"],
        "key": e.get("key"),
        "message": e.get("message"),
        "approvers": list(e.get("approvers") or []),
        "context": e.get("context"),
        "deadline": deadline,
        "deadline_epoch": parse_rfc3339(deadline) if deadline else None,
        "on_timeout": e.get("on_timeout"),
        "token_sha256": e.get("token_sha256"),
        "definition_hash": e.get("definition_hash") or fallback_hash,
        "status": "pending",
        "requested_at": e["at"],
        "requested_seq": e["seq"],
        "decided_by": None,
        "decided_at": None,
        "comment": None,
        "value": None,
        "decision_code": None,
    }


def _decided(row: Approval, e: Event) -> None:
    if e.get("approved"):
        row["status"] = "approved"
    elif e.get("timed_out"):
        row["status"] = "timed_out"
    else:
        row["status"] = "rejected"
    row["decided_by"] = e.get("by")
    row["decided_at"] = e.get("decided_at", e["at"])
    row["comment"] = e.get("comment")
    row["value"] = e.get("value")
    row["decision_code"] = e.get("code")


# The steps view (SQLite's migration 5), folded in Python: which events say what of a step.
_STATE = frozenset(
    (
        "step_started",
        "step_completed",
        "step_failed",
        "step_skipped",
        "group_completed",
        "approval_requested",
    )
)
_ENDS = frozenset(("step_completed", "step_failed", "step_skipped", "group_completed"))
_STARTS = frozenset(("step_started", "approval_requested"))
_COMP = frozenset(("compensation_started", "compensation_completed", "compensation_failed"))
_STATUS = {"step_started": "started", "step_skipped": "skipped", "approval_requested": "waiting"}
_COMP_STATUS = {
    "compensation_started": "started",
    "compensation_completed": "ok",
    "compensation_failed": "failed",
}


def steps_of(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Every step's (and foreach item's) state from a journal, as `Store.steps` returns it."""
    seen: dict[tuple[Any, int], list[Event]] = {}
    for e in events:
        if e["type"] in _STATE or e["type"] in _COMP:
            index = e.get("item_index")
            seen.setdefault((e.get("step"), -1 if index is None else index), []).append(e)
    out = []
    for (step, index), group in seen.items():
        state = [e for e in group if e["type"] in _STATE]
        if not state:
            continue  # the view joins on the last state event: none, no row
        first, last = min(state, key=_seq), max(state, key=_seq)
        started = _last(e for e in state if e["type"] == "step_started")
        ended = _last(e for e in state if e["type"] in _ENDS)
        erring = _last(e for e in state if e["type"] != "approval_requested")
        comp = _last(
            e
            for e in group
            if e["type"] in _COMP and (e["type"] != "compensation_failed" or e.get("final"))
        )
        if last["type"] == "step_failed":
            status = "cancelled" if last.get("cancelled") else "failed"
        else:
            status = _STATUS.get(last["type"], "completed")
        error = erring.get("error") if erring is not None else None
        out.append(
            {
                "step": step,
                "item_index": None if index < 0 else index,
                "status": status,
                "attempt": max(e.get("attempt") or 0 for e in state),
                "idempotency_key": started.get("idempotency_key") if started else None,
                "result": ended.get("result") if ended else None,
                "error": error,
                "started_seq": first["seq"] if first["type"] in _STARTS else None,
                "ended_seq": ended["seq"] if ended else None,
                "compensation": _COMP_STATUS[comp["type"]] if comp else None,
                "compensation_attempt": (comp.get("attempt") or 0) if comp else 0,
            }
        )

    def order(s: dict[str, Any]) -> tuple[Any, ...]:
        at = s["started_seq"] if s["started_seq"] is not None else s["ended_seq"]
        index = -1 if s["item_index"] is None else s["item_index"]
        return (at is not None, at or 0, s["step"], index)

    out.sort(key=order)
    return copy.deepcopy(out)


def _seq(e: Event) -> int:
    return int(e["seq"])


def _last(events: Iterable[Event]) -> Event | None:
    return max(events, key=_seq, default=None)
