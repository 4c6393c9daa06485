"""`call` nodes: another saga run as a child run of the calling one (docs/language.md, `call`).

`run_call` starts the node's child run once, ever: its id comes from the run-level idempotency
key `call:<parent run id>:<node id>` (`Store.claim_key`), and its record (linked by
`parent_run_id`/`parent_step`, with its own stored definition) exists before `call_started
{step, child_run_id, saga}` is journaled, so a crash anywhere makes no second child. The child
is driven in this process under its own lease, with the parent's store, clock and secrets. Its
`output` is the node's result; when it failed (it compensated itself) the node fails with its
failure, the code unchanged and the step path-prefixed (`reserve_stock/charge`), the child's
errors and compensations in the parent's report likewise; when it parks, or another process
holds it, the parent parks too (HALTED) and drives it again once resumed. A parent that cancels
the node (a cancel, a saga timeout, a failed sibling) has the child undo itself.

`undo_call` is the call's compensation: the child's completed steps are undone in the child's
own order, journaled in the child's journal (`saga_compensating` with failure `PARENT_FAILED`,
its compensation events, its end), and the parent journals the call's compensation as ok or
failed (naming the child's steps, prefixed, in `needs_attention`). What the child's journal
shows as undone is never undone again.

This module must never write a child's journal without holding the child's lease, nor run a
child's step itself (the child's own executor does, through `RunContext.driver`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir
from sagac.compiler.plan import Plan

from sagac.errors import InputError, LeaseHeld, RunNotFound, StepError, StoreError

from . import approvals
from .clock import new_run_id
from .events import Journal
from .inputs import input_hash, validate_input
from .journal import RunState, replay
from .leases import held
from .outcomes import NodeFailed, Undo
from .store.base import Definition, RunRecord

if TYPE_CHECKING:
    from .context import RunContext
    from .report import RunReport

# The code of a call whose `with` does not match the called saga's `input` schema (the run-time
# twin of E029; the child run is not created).
CALL_INPUT_CODE = "INVALID_INPUT"
PARENT_FAILED = "PARENT_FAILED"
_FAILED = frozenset({"compensated", "compensation_failed", "failed"})


def child_plan(ctx: RunContext, node: ir.CallNode) -> Plan:
    """The called saga's plan, compiled with the caller (`Plan.calls`)."""
    return ctx.plan.calls[node.id]


async def run_call(
    ctx: RunContext,
    node: ir.CallNode,
    scope: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
) -> Any:
    nid = node.id
    t0 = ctx.clock.monotonic()
    plan = child_plan(ctx, node)
    child_id = ctx.calls.get(nid)
    if child_id is None:
        try:
            child_input = ctx.render_args(node.with_, scope)
            if not ctx.simulate:  # a simulated run checks flow, not data
                _validate(plan, child_input)
        except StepError as e:
            await ctx.fail_node(nid, e, 0, t0)
        child_id = await _create_child(ctx, nid, plan, child_input)
        await ctx.emit(
            "call_started", {**ctx.where(nid), "child_run_id": child_id, "saga": plan.saga}
        )
        ctx.calls[nid] = child_id
    try:
        state, report = await _drive_child(ctx, plan, child_id)
    except asyncio.CancelledError:
        if ctx.cancelled_by_run():  # a cancel, a saga timeout, a failed sibling: undo the child
            _forget_undo(ctx, nid)
            await _stop_child(ctx, nid, plan, child_id, t0)
        raise
    final = state.final_event if state is not None else None
    if final is None:  # parked, or another process drives it: the parent parks with it
        if report is not None:  # its gates are the parent's, as `CALL/GATE` (`child_gate`)
            for waiting in report.waiting:
                gate = f"{nid}/{waiting.id}"
                ctx.gate_requests[gate] = {**waiting.model_dump(exclude={"token"}), "step": gate}
                ctx.waiting.add(gate)
            for gid, token in report.approval_tokens.items():
                ctx.approval_tokens[f"{nid}/{gid}"] = token
        return ctx.park(nid, "call")
    assert state is not None
    _forget_undo(ctx, nid)  # what `restore` gave a call whose child had not ended
    if final["status"] in _FAILED:
        await _child_failed(ctx, nid, child_id, state, t0)
    output = final.get("output")
    ev = await ctx.emit(
        "step_completed",
        {**ctx.where(nid), "attempt": 1, "duration_ms": ctx.ms(t0), "result": ctx.redact(output)},
    )
    if ctx.prep.phase[nid] == "steps":
        ctx.undo.append(Undo(nid, None, ev["seq"], output, None, ctx.prep.chain[nid]))
    return output


def _forget_undo(ctx: RunContext, nid: str) -> None:
    ctx.undo[:] = [u for u in ctx.undo if u.step != nid]


def _validate(plan: Plan, data: Any) -> None:
    try:
        validate_input(plan, data)
    except InputError as e:
        raise StepError(
            CALL_INPUT_CODE,
            f"`with` does not match the input schema of {plan.saga!r}: " + "; ".join(e.problems),
            {"problems": e.problems},
        ) from None


async def _create_child(ctx: RunContext, nid: str, plan: Plan, data: Any) -> str:
    """The call's child run: claimed under the parent's run-level key (a crash before its
    record exists makes the same id again), its record created when missing."""
    store = ctx.store
    child_id, _ = await store.claim_key(
        plan.saga, f"call:{ctx.run_id}:{nid}", new_run_id(), input_hash(data)
    )
    try:
        await store.get_run(child_id)
    except RunNotFound:
        # A submitted parent's approval token decides its children's gates too.
        token = (await store.get_run(ctx.run_id)).approval_token_sha256
        record = RunRecord(
            child_id,
            plan.saga,
            plan.version,
            plan.hash,
            data,
            file=plan.file,
            parent_run_id=ctx.run_id,
            parent_step=nid,
            approval_token_sha256=token,
        )
        kept = Definition(plan.hash, plan.saga, plan.source, plan.file) if plan.source else None
        try:
            await store.create_run(record, kept)
        except StoreError:  # created meanwhile by another driver of this parent (lost lease)
            await store.get_run(child_id)
    return child_id


async def _drive_child(
    ctx: RunContext, plan: Plan, child_id: str, failure: dict[str, Any] | None = None
) -> tuple[RunState | None, RunReport | None]:
    """Drive the child under its lease until it ends or parks, and return what its journal
    then says, and its report when it was driven; (None, None) when another process holds
    it. With `failure`, a child that is not compensating yet (it
    succeeded, parked, or was stopped) is undone: `saga_compensating` with that failure, then
    its compensation."""
    store = ctx.store
    try:
        async with held(store, child_id) as lease:
            state = replay(await store.load_events(child_id))
            if failure is not None and state.failure is None:  # not undoing yet
                journal = Journal(store, child_id, ctx.clock, None, state.last_seq)
                await journal.emit("saga_compensating", {"failure": failure})
                state = replay(await store.load_events(child_id))
            if state.finished:
                return state, None
            if state.last_seq and await approvals.expire_overdue(store, child_id, lease.owner):
                state = replay(await store.load_events(child_id))
            if not state.last_seq and ctx.simulate:
                state.simulate = True  # a simulated parent never calls a child's real action
            record = await store.get_run(child_id)
            if ctx.driver is None:
                raise RuntimeError("a `call` runs only in a run started by sagac.runtime.api")
            report = await ctx.driver(
                plan,
                record,
                state,
                store,
                clock=ctx.clock,
                secrets=ctx.engine.secrets,
                sleep_limit=ctx.sleep_limit,
            )
            return replay(await store.load_events(child_id)), report
    except LeaseHeld:
        return None, None


def _prefixed(nid: str, step: str | None) -> str:
    return f"{nid}/{step}" if step else nid


def _child_errors(nid: str, state: RunState, phase: str | None = None) -> list[dict[str, Any]]:
    return [
        {**e, "step": _prefixed(nid, e.get("step"))}
        for e in state.errors
        if phase is None or e.get("phase") == phase
    ]


def _child_needs(nid: str, state: RunState) -> list[dict[str, Any]]:
    """The parent's compensation entries for the child's undos that failed or never ran."""
    final = state.final_event or {}
    return [
        {
            "step": _prefixed(nid, s),
            "item_index": None,
            "status": "failed",
            "attempts": 0,
            "error": next(
                (e for e in _child_errors(nid, state, "compensation") if e["step"] == f"{nid}/{s}"),
                None,
            ),
        }
        for s in final.get("needs_attention") or ()
    ]


async def _child_failed(
    ctx: RunContext, nid: str, child_id: str, state: RunState, t0: float
) -> None:
    """The child failed (and compensated itself): fail the node with its failure."""
    failure = dict((state.final_event or {}).get("failure") or {})
    step = _prefixed(nid, failure.get("step"))
    errors = _child_errors(nid, state)
    error = {
        "code": failure.get("code", "UNEXPECTED"),
        "message": failure.get("message", ""),
        "detail": {
            "child_run_id": child_id,
            "step": step,
            "child_detail": failure.get("detail"),
            "child_errors": errors,
        },
    }
    await ctx.emit(
        "step_failed",
        {**ctx.where(nid), "attempt": 1, "duration_ms": ctx.ms(t0), "error": error, "final": True},
    )
    ctx.errors.extend(errors)
    needs = _child_needs(nid, state)
    if needs:  # the child's own undo failed: someone must look at it
        ctx.comp_failed = True
        ctx.comp_log.extend(needs)
    where = ctx.error_at(nid, error, 1)
    where.update(step=step, detail=failure.get("detail"))
    raise NodeFailed(where)


def _parent_failure(ctx: RunContext, why: str) -> dict[str, Any]:
    return {
        "step": None,
        "branch": None,
        "item_index": None,
        "code": PARENT_FAILED,
        "message": f"its parent run {ctx.run_id} {why}",
        "attempts": 0,
    }


async def _stop_child(ctx: RunContext, nid: str, plan: Plan, child_id: str, t0: float) -> None:
    """The parent stopped the call while its child ran: the child undoes what it did (as
    after a crash, its step in flight is not), and the node is journaled as cancelled."""
    await _drive_child(ctx, plan, child_id, _parent_failure(ctx, "stopped the call"))
    await ctx.emit(
        "step_failed",
        {
            **ctx.where(nid),
            "attempt": 1,
            "duration_ms": ctx.ms(t0),
            "error": {"code": "CANCELLED", "message": "cancelled: the run is stopping"},
            "final": True,
            "cancelled": True,
        },
    )


async def undo_call(ctx: RunContext, u: Undo) -> bool:
    """The compensation of a call whose child succeeded: the child undoes itself."""
    nid = u.step
    node = ctx.prep.nodes[nid]
    assert isinstance(node, ir.CallNode)
    rec = ctx.state.compensations.get((nid, None)) if ctx.state is not None else None
    attempt = (rec.attempt if rec is not None else 0) + 1
    where = {"step": nid}
    t0 = ctx.clock.monotonic()
    await ctx.emit("compensation_started", {**where, "attempt": attempt, "idempotency_key": None})
    code = (ctx.failure or {}).get("code", "UNEXPECTED")
    state, _ = await _drive_child(
        ctx, child_plan(ctx, node), ctx.calls[nid], _parent_failure(ctx, f"failed ({code})")
    )
    final = state.final_event if state is not None else None
    if state is not None and final is not None and final["status"] != "compensation_failed":
        await ctx.emit(
            "compensation_completed", {**where, "attempt": attempt, "duration_ms": ctx.ms(t0)}
        )
        ctx.comp_log.append(
            {"step": nid, "item_index": None, "status": "ok", "attempts": attempt, "error": None}
        )
        return True
    if state is None or final is None:  # held by another process, or it parked
        errors = [
            {
                "step": nid,
                "branch": None,
                "item_index": None,
                "code": "RUN_BUSY",
                "message": f"child run {ctx.calls[nid]} could not be undone now",
                "detail": None,
                "phase": "compensation",
            }
        ]
        needs = [
            {"step": nid, "item_index": None, "status": "failed", "attempts": attempt,
             "error": errors[0]}
        ]  # fmt: skip
    else:
        errors = _child_errors(nid, state, "compensation")
        needs = _child_needs(nid, state)
    first = errors[0] if errors else {"code": "COMPENSATION_FAILED", "message": ""}
    error = {
        "code": first["code"],
        "message": first["message"],
        "detail": {"child_run_id": ctx.calls[nid], "child_errors": errors},
    }
    await ctx.emit(
        "compensation_failed",
        {
            **where,
            "attempt": attempt,
            "duration_ms": ctx.ms(t0),
            "error": ctx.redact(error),
            "final": True,
        },
    )
    ctx.comp_failed = True
    ctx.errors.extend(errors)
    ctx.comp_log.extend(needs)
    return False
