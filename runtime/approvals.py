"""Approval decisions: who may decide a waiting gate, with what proof, and the audit of it all.

A gate's request (journaled as `approval_requested`; every store shows it as an approval row)
carries the sha256 of a random token: a fresh one per gate, handed once to whoever started the
run in the foreground, or the run's approval token, handed once to whoever submitted it
(`submit`), which so decides each of its gates once. A decision is accepted only when the gate
is pending, its deadline (a stored timestamp, so restarts do not reset the clock) has not
passed, the token matches, the user is a listed approver (a name, or `group:NAME` whose members
are kept in the store and changed only by `sagac groups`, audited), and the definition is still
the one the request was made under. This module decides that; the store applies an accepted
decision with `Store.append_decision`, a compare-and-set on the gate still being pending (and
under the same definition) that writes the `approval_decided` event and its audit entry
together. When the gate changed in between, the decision is checked again and refused as it now
deserves. A refusal writes only its audit entry and raises `ApprovalRefused` (exit 77). Every
audit entry records the operating-system user of the process next to the claimed `--as USER`.

`--as USER` is a claim, for local administration, not authentication: the token is the
credential. The HTTP API (`sagac serve`) decides in its authenticated mode instead: the caller
was authenticated by its bearer token (`runtime/auth.py`), so `by` is that token's user, no
gate token is asked for (`token=None`), the token's `groups` count as well as the store's, and
every audit entry says `via: api`. Group membership never comes from the deciding process's
environment (the old `SAGAC_GROUPS` variable is ignored, and a refusal says so). This module
never stores or logs a clear token, and never touches a store's tables: it only calls the
`Store` contract.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sagac.runtime.clock import rfc3339

from sagac.errors import (
    ApprovalExpired,
    ApprovalRefused,
    BadToken,
    DecisionConflict,
    DefinitionMismatch,
    GateNotPending,
    NotAnApprover,
    TokenUsed,
    UsageError,
)

from .store.base import Approval, AuditEntry, Event, Store

# No longer read: named in a refusal, so that a user who still sets it learns where groups
# live now (`sagac groups`).
GROUPS_ENV = "SAGAC_GROUPS"
TOKEN_BYTES = 24


def new_token() -> tuple[str, str]:
    """(token, its sha256): the token goes to a person once, the hash to the journal. Never
    begins with `-`: `--token -x...`, as printed, would read as a missing value (1 token in 64
    did)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    while token.startswith("-"):
        token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def check_group_name(name: str) -> str:
    """A group's name as `sagac groups` takes it (`finance`, or `group:finance` as written in a
    gate's approvers); a usage error when it could not be written in an approvers list."""
    bare = name.removeprefix("group:")
    if not bare or not all(ch.isalnum() or ch in "_.-" for ch in bare):
        raise UsageError(
            f"{name!r} is not a group name",
            hint="use letters, digits, `_`, `.` and `-` (written `group:NAME` in approvers)",
        )
    return bare


def check_user_names(users: Sequence[str]) -> list[str]:
    """The users as given; a usage error for an empty name or one with spaces."""
    for user in users:
        if not user or user != user.strip() or any(ch.isspace() for ch in user):
            raise UsageError(f"{user!r} is not a user name", hint="user names have no spaces")
    return list(users)


async def approver_members(store: Store, approvers: list[str]) -> dict[str, list[str]]:
    """The members of the groups among `approvers`, as the store has them now."""
    out: dict[str, list[str]] = {}
    for a in approvers:
        if a.startswith("group:"):
            out.update(await store.group_members(a[len("group:") :]))
    return out


def may_decide(
    user: str,
    approvers: list[str],
    members: Mapping[str, list[str]],
    groups: Sequence[str] = (),
) -> bool:
    """Whether `user` is among `approvers`: by name, or by `group:NAME` when `members` (the
    store's groups) lists the user in NAME or NAME is among `groups` (an API token's own)."""
    for a in approvers:
        if a.startswith("group:"):
            name = a[len("group:") :]
            if name in groups or user in members.get(name, ()):
                return True
        elif a == user:
            return True
    return False


# How often a decision is checked again when the gate changed while it was being checked: the
# change is a decision or a forced resume, after which the next check refuses.
_RECHECKS = 3


async def decide(
    store: Store,
    run_id: str,
    gate: str,
    *,
    approved: bool,
    by: str,
    token: str | None,
    comment: str | None = None,
    value: Any = None,
    definition_hash: str | None = None,
    owner: str | None = None,
    groups: Sequence[str] = (),
    via: str | None = None,
) -> Event:
    """Record an approval (or rejection) of `gate`; returns its `approval_decided` event.
    Raises ApprovalRefused (audited) when the decision is not permitted, RunBusy (exit 75) when
    a live process holds the run, RunNotFound for an unknown run. `definition_hash`: the hash of
    the definition the decider is looking at (refused when it is not the one the request was
    made under). `gate` may be `CALL/GATE`: a gate of the child run of call CALL
    (`child_gate`). `via="api"`: the authenticated mode (`by` is the bearer token's user, who
    is also in `groups`); `token` is then None, and only then."""
    if (token is None) != (via == "api"):
        raise UsageError("a decision needs the gate's token, unless it comes authenticated")
    action = "approve" if approved else "reject"
    target, gate = await child_gate(store, run_id, gate)
    if target != run_id:  # a child's gate: the parent's definition, unchanged, binds the child's
        if definition_hash == (await store.get_run(run_id)).definition_hash:
            definition_hash = None
        run_id = target
    for _ in range(_RECHECKS):
        record = await store.get_run(run_id)  # RunNotFound
        row = await store.approval(run_id, gate)
        try:
            current = record.definition_hash
            await _verify(store, row, run_id, gate, by, token, definition_hash, current, groups)
        except ApprovalRefused as refusal:
            await _refused(store, refusal, run_id, gate, by, action, via)
            raise
        assert row is not None
        audit = AuditEntry(
            run_id=run_id,
            gate=gate,
            actor=by,
            action=action,
            outcome="accepted",
            message=comment,
            detail={"definition_hash": row["definition_hash"], **_via(via)},
        )
        fields = _decision(gate, approved, by, comment, value, key=row["key"])
        try:
            return await store.append_decision(
                run_id, gate, fields, audit, owner=owner, definition_hash=row["definition_hash"]
            )
        except DecisionConflict:
            continue  # decided or rebound meanwhile: check again, and refuse as it now is
    changing = GateNotPending(f"gate {gate!r} of run {run_id} kept changing while it was decided")
    await _refused(store, changing, run_id, gate, by, action, via)
    raise changing


def _via(via: str | None) -> dict[str, str]:
    """An audit entry's `via` (`api`), when the decision did not come from the CLI."""
    return {} if via is None else {"via": via}


async def child_gate(store: Store, run_id: str, gate: str) -> tuple[str, str]:
    """`CALL/GATE` names gate GATE of the child run of run `run_id`'s call CALL (at any
    depth: `CALL/CALL/GATE`): that run and gate. Anything else is returned as it is."""
    while "/" in gate:
        call, _, rest = gate.partition("/")
        children = await store.children(run_id)
        child = next((c for c in children if c.parent_step == call), None)
        if child is None:
            break
        run_id, gate = child.run_id, rest
    return run_id, gate


async def _refused(
    store: Store,
    refusal: ApprovalRefused,
    run_id: str,
    gate: str,
    by: str,
    action: str,
    via: str | None = None,
) -> None:
    """Audit a refused decision."""
    await store.audit(
        AuditEntry(
            run_id=run_id,
            gate=gate,
            actor=by,
            action=action,
            outcome="refused",
            code=refusal.code,
            message=refusal.message,
            detail=_via(via) or None,
        )
    )


def _decision(
    gate: str, approved: bool, by: str, comment: str | None, value: Any, **extra: Any
) -> dict[str, Any]:
    """The fields of an `approval_decided` event by a person (or a test), now."""
    fields: dict[str, Any] = {
        "step": gate,
        "approved": approved,
        "by": by,
        "decided_at": rfc3339(time.time()),
        "comment": comment,
        "value": value if approved else None,
        **extra,
    }
    if not approved:
        fields["code"] = "APPROVAL_REJECTED"
    return fields


async def _verify(
    store: Store,
    row: Approval | None,
    run_id: str,
    gate: str,
    by: str,
    token: str | None,
    definition_hash: str | None,
    current: str,
    groups: Sequence[str] = (),
) -> None:
    """Raise the refusal a decision by `by` with `token` deserves, if any (None: the caller
    was authenticated, no gate token is checked). `current`: the run's definition hash now;
    `groups`: groups `by` belongs to besides the store's (an API token's)."""
    if row is None:
        raise GateNotPending(f"run {run_id} has no approval request for gate {gate!r}")
    matches = token is None or (
        row["token_sha256"] is not None
        and hmac.compare_digest(token_hash(token), row["token_sha256"])
    )
    if row["status"] != "pending":
        if matches and token is not None:
            raise TokenUsed(
                f"this token was already used: gate {gate!r} of run {run_id} is "
                f"{row['status']} (by {row['decided_by']} at {row['decided_at']})"
            )
        raise GateNotPending(
            f"gate {gate!r} of run {run_id} is not waiting for a decision: it is {row['status']}"
        )
    deadline = row["deadline_epoch"]
    if deadline is not None and time.time() >= deadline:
        raise ApprovalExpired(
            f"the deadline of gate {gate!r} passed at {row['deadline']}; the next resume "
            f"applies its on_timeout ({row['on_timeout'] or 'fail'})"
        )
    if not matches:
        raise BadToken(f"the token is not the one issued for gate {gate!r} of run {run_id}")
    members = await approver_members(store, row["approvers"])
    if not may_decide(by, row["approvers"], members, groups):
        named = [a for a in row["approvers"] if a.startswith("group:")]
        hint = None
        if named:
            group = named[0].removeprefix("group:")
            hint = f"group members are kept in the journal: sagac groups add {group} USER"
            if os.environ.get(GROUPS_ENV):
                hint = f"{GROUPS_ENV} is no longer read; {hint}"
        raise NotAnApprover(
            f"{by} may not decide gate {gate!r}: approvers are {', '.join(row['approvers'])}",
            hint=hint,
        )
    for h in (definition_hash, current):
        if h is not None and h != row["definition_hash"]:
            raise DefinitionMismatch(
                f"gate {gate!r} was requested under definition {row['definition_hash']}, "
                f"not {h}: the decision cannot apply to a changed definition"
            )


async def expire_overdue(store: Store, run_id: str, owner: str | None = None) -> list[Event]:
    """Resolve every pending gate of `run_id` whose deadline has passed by its `on_timeout`
    (`reject`: APPROVAL_REJECTED, `fail`: APPROVAL_TIMEOUT); journaled and audited. A gate
    decided meanwhile is left as decided."""
    now = time.time()
    out = []
    for row in await store.approvals(run_id, status="pending"):
        if row["deadline_epoch"] is None or row["deadline_epoch"] > now:
            continue
        gate = row["gate"]
        code = "APPROVAL_REJECTED" if row["on_timeout"] == "reject" else "APPROVAL_TIMEOUT"
        fields = {
            "step": gate,
            "approved": False,
            "by": "sagac",
            "decided_at": rfc3339(now),
            "comment": f"no decision before the deadline ({row['deadline']})",
            "value": None,
            "key": row["key"],
            "code": code,
            "timed_out": True,
        }
        audit = AuditEntry(
            run_id=run_id,
            gate=gate,
            actor="sagac",
            action="timeout",
            outcome="accepted",
            code=code,
            message=f"deadline {row['deadline']} passed",
        )
        try:
            out.append(await store.append_decision(run_id, gate, fields, audit, owner=owner))
        except DecisionConflict:
            continue
    return out


async def inject_decision(
    store: Store,
    run_id: str,
    gate: str,
    *,
    approved: bool = True,
    by: str = "test",
    comment: str | None = None,
    value: Any = None,
) -> Event:
    """For tests: decide a pending gate without a person, a token or an approver list (the
    audit log says it was injected). Works on any store."""
    fields = _decision(gate, approved, by, comment, value)
    audit = AuditEntry(run_id=run_id, gate=gate, actor=by, action="inject", outcome="accepted")
    try:
        return await store.append_decision(run_id, gate, fields, audit)
    except DecisionConflict:
        raise GateNotPending(f"gate {gate!r} of run {run_id} is not pending") from None


async def pending(store: Store, run_id: str | None = None) -> list[Approval]:
    """Pending approval requests (never with a token: the store has only its hash)."""
    return await store.approvals(run_id, status="pending")


async def pending_for(store: Store, user: str, groups: Sequence[str] = ()) -> list[Approval]:
    """The pending approval requests that `user` (also in `groups`, an API token's) may
    decide: those listing the user, or a group the store or `groups` puts the user in."""
    rows = await store.approvals(None, status="pending")
    if not rows:
        return []
    members = await store.group_members()
    return [row for row in rows if may_decide(user, row["approvers"], members, groups)]


def message_context(template: str | None, scope: Mapping[str, Any]) -> dict[str, Any]:
    """The values a gate's message template reads (`input.refund_id`: "R-1", ...), so that a
    decider sees what the message was made from. The caller redacts the result."""
    if not template:
        return {}
    from sagac.compiler.templates import analyze

    out: dict[str, Any] = {}
    for read in analyze(template).reads:
        value: Any = scope.get(read.root)
        name = read.root
        for key in read.chain:
            name += f".{key}" if isinstance(key, str) else f"[{key}]"
            if isinstance(value, Mapping):
                value = value.get(key)
            elif (
                isinstance(value, list | tuple)
                and isinstance(key, int)
                and -len(value) <= key < len(value)
            ):
                value = value[key]
            else:
                value = None
        if read.root in ("secrets", "env"):
            continue  # never shown: secrets are secret, env is the machine's business
        out[name] = value
    return out
