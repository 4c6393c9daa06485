"""Approval gates as the executor meets them: pass a decided gate, or request a decision and halt.

A gate the journal shows as decided completes (approved) or fails the node (rejected, timed
out). An undecided gate journals `approval_requested` once, with the hash of a token: the run's
approval token when it was submitted (`submit`: its submitter holds the clear token, whoever
reaches the gate), else a fresh single-use one (the clear token goes to the caller, in the
report), and returns HALTED: the scope starts nothing new and the run ends `waiting_approval`
until someone decides (`approvals`) and the run is resumed. This module must never decide a
gate, nor journal or store a clear token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir

from sagac.errors import StepError

from .clock import parse_rfc3339, rfc3339

if TYPE_CHECKING:
    from .context import RunContext


async def run_gate(
    ctx: RunContext,
    gate: ir.ApprovalGate,
    scope: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
) -> Any:
    nid = gate.id
    decided = ctx.state.approvals_decided.get(nid) if ctx.state else None
    if decided is not None:
        if decided.get("approved"):
            result = {
                "approved": True,
                "by": decided.get("by"),
                "at": decided.get("decided_at", decided.get("at")),
                "comment": decided.get("comment"),
                "value": decided.get("value"),
            }
            await ctx.emit(
                "step_completed",
                {
                    **ctx.where(nid),
                    "attempt": 1,
                    "duration_ms": 0,
                    "result": ctx.redact(result),
                },
            )
            return result
        by = decided.get("by")
        why = f": {decided['comment']}" if decided.get("comment") else ""
        await ctx.fail_node(
            nid,
            StepError(
                decided.get("code", "APPROVAL_REJECTED"),
                f"timed out{why}" if decided.get("timed_out") else f"rejected by {by}{why}",
                {"by": by},
            ),
            1,
            0.0,
        )
    if ctx.state is None or nid not in ctx.state.approvals_requested:
        try:
            key = (
                ctx.engine.render_text(gate.key, scope)
                if gate.key is not None
                else f"{ctx.plan.saga}:{ctx.run_id}:{nid}"
            )
            message = ctx.engine.render_text(gate.message, scope) if gate.message else None
        except StepError as e:
            await ctx.fail_node(nid, e, 0, 0.0)
        from . import approvals

        now = ctx.clock.now()
        # A submitted run's gates take the run's approval token (its submitter holds it);
        # another run's gate a fresh single-use token: only its hash is journaled, the clear
        # token goes to the caller once (`RunReport.approval_tokens`).
        token, digest = None, await _run_token(ctx)
        if digest is None:
            token, digest = approvals.new_token()
        request = {
            **ctx.where(nid),
            "key": ctx.redact(key),
            "message": ctx.redact(message),
            "context": ctx.redact(approvals.message_context(gate.message, scope)),
            "approvers": list(gate.approvers),
            "deadline": rfc3339(now + gate.timeout) if gate.timeout else None,
            "on_timeout": gate.on_timeout,
            "definition_hash": ctx.plan.hash,
            "token_sha256": digest,
        }
        await ctx.emit("approval_requested", request)
        if token is not None:
            ctx.approval_tokens[nid] = token
    else:  # requested by an earlier process: its token was handed out then
        request = ctx.state.approvals_requested[nid]
    ctx.gate_requests[nid] = request
    deadline = request.get("deadline")
    return ctx.park(nid, "approval", parse_rfc3339(deadline) if deadline else None)


async def _run_token(ctx: RunContext) -> str | None:
    """The sha256 of the run's approval token (`submit` gave it out), or None: a run started
    in the foreground, or one the store does not hold yet."""
    from sagac.errors import RunNotFound

    try:
        return (await ctx.store.get_run(ctx.run_id)).approval_token_sha256
    except RunNotFound:
        return None
