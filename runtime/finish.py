"""The end of a run: its last event, its report, and the report stored with the run's status.

`finish(ctx, status, output)` is called once per `Executor.run`, whatever the outcome: it
builds the `RunReport` from the executor's plain state in one validation, then journals
`saga_completed`, `saga_failed` or `saga_waiting` carrying the report, which the store keeps in
the same write (a durable store ends the run's lease there too: the driver writes nothing after
it). Everything journaled or stored goes through the run's redaction; approval tokens are added
to the returned report only, after it is stored: this module must never store or journal a
clear token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .clock import rfc3339
from .report import ErrorInfo, Failure, RunReport

if TYPE_CHECKING:
    from .context import RunContext


async def finish(ctx: RunContext, status: str, output: Any) -> RunReport:
    ctx.ending = True
    report = build_report(ctx, status, output)
    needs, duration = report.needs_attention, report.duration_ms
    waiting = status == "waiting_approval"
    stored = report.to_json_dict()
    shown_output = stored["output"]  # redacted once, by build_report
    if waiting:
        fields: dict[str, Any] = {
            "status": status,
            "waiting": sorted(ctx.waiting),
            "active_ms": ctx.active_ms(),
        }
        await ctx.emit("saga_waiting", fields, stored)
    elif status == "succeeded":
        fields = {"status": status, "output": shown_output, "duration_ms": duration}
        await ctx.emit("saga_completed", fields, stored)
    else:
        fields = {
            "status": status,
            "failure": ctx.redact(ctx.failure),
            "needs_attention": needs,
            "duration_ms": duration,
        }
        await ctx.emit("saga_failed", fields, stored)
    if ctx.approval_tokens:  # never stored: only returned
        report.approval_tokens.update(ctx.approval_tokens)
    return report


def build_report(ctx: RunContext, status: str, output: Any, finished: bool = True) -> RunReport:
    """The run's report as it stands (redacted): the last event's, or, with `finished` False,
    what `on_failure` nodes see as `report` (no `finished_at` yet)."""
    failure = ctx.failure
    needs = []
    for c in ctx.comp_log:
        if c["status"] != "ok" and c["step"] not in needs:
            needs.append(c["step"])
    redact = ctx.redact
    shown_failure = redact(failure)
    # One validation of plain data: cheaper than building the nested models one by one.
    return RunReport.model_validate(
        {
            "run_id": ctx.run_id,
            "saga": ctx.plan.saga,
            "version": ctx.plan.version,
            "status": status,
            "failure": _fields(shown_failure, Failure) if failure else None,
            "errors": [_fields(redact(e), ErrorInfo) for e in ctx.errors],
            "compensations": [
                {
                    "step": c["step"],
                    "item_index": c.get("item_index"),
                    "status": c["status"],
                    "attempts": c["attempts"],
                    "error": _fields(redact(c["error"]), ErrorInfo) if c.get("error") else None,
                }
                for c in ctx.comp_log
            ],
            "needs_attention": needs,
            "output": redact(output),
            "duration_ms": ctx.ms(ctx.t0),
            "started_at": rfc3339(ctx.started_wall),
            "finished_at": rfc3339(ctx.clock.now())
            if finished and status != "waiting_approval"
            else None,
            "definition_hash": ctx.plan.hash,
            "waiting": [_waiting(ctx.gate_requests[g]) for g in sorted(ctx.waiting)]
            if status == "waiting_approval"
            else [],
        }
    )


def _fields(data: dict[str, Any], model: type[Any]) -> dict[str, Any]:
    names = model.model_fields
    return {k: v for k, v in data.items() if k in names}


def _waiting(request: dict[str, Any]) -> dict[str, Any]:
    """A waiting gate of the report, from its (redacted) `approval_requested` fields."""
    return {
        "id": request["step"],
        "key": request.get("key"),
        "message": request.get("message"),
        "approvers": request.get("approvers") or [],
        "deadline": request.get("deadline"),
    }
