"""The end of a run: its last event, its report, and the report stored with the run's status.

`finish(ctx, status, output)` is called once per `Executor.run`, whatever the outcome: it
builds the report's JSON from the run's plain state (`report_data`, already in the report's
shape: validated once into the returned `RunReport`, never dumped back), then journals
`saga_completed`, `saga_failed` or `saga_waiting` carrying the report, which the store keeps in
the same write (a durable store ends the run's lease there too: the driver writes nothing after
it). Everything journaled or stored goes through the run's redaction; approval tokens are added
to the returned report only, after it is stored: this module must never store or journal a
clear token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .clock import rfc3339
from .report import WAITING, ErrorInfo, Failure, RunReport, WaitingGate, shaped

if TYPE_CHECKING:
    from .context import RunContext


async def finish(ctx: RunContext, status: str, output: Any) -> RunReport:
    ctx.ending = True
    stored = report_data(ctx, status, output)
    report = RunReport.model_validate(stored)
    needs, duration = stored["needs_attention"], stored["duration_ms"]
    shown_output = stored["output"]  # redacted once, by report_data
    if status in WAITING:
        fields: dict[str, Any] = {
            "status": status,
            "waiting": sorted(ctx.waiting),
            "active_ms": ctx.active_ms(),
        }
        dues = [due for _, due, _ in ctx.parked.values() if due is not None]
        if dues:
            fields["wake_at"] = rfc3339(min(dues))
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


def report_data(ctx: RunContext, status: str, output: Any, finished: bool = True) -> dict[str, Any]:
    """The run's report as it stands (redacted), as JSON: what `RunReport.to_json_dict` gives
    (`waiting` only while the run waits), built from the run's plain state in the report's
    shape, so that it need not be dumped from the model. With `finished` False, what
    `on_failure` nodes see as `report` (no `finished_at` yet)."""
    failure = ctx.failure
    needs = []
    for c in ctx.comp_log:
        if c["status"] != "ok" and c["step"] not in needs:
            needs.append(c["step"])
    redact = ctx.redact
    data: dict[str, Any] = {
        "run_id": ctx.run_id,
        "saga": ctx.plan.saga,
        "version": ctx.plan.version,
        "status": status,
        "failure": shaped(Failure, redact(failure)) if failure else None,
        "errors": [shaped(ErrorInfo, redact(e)) for e in ctx.errors],
        "compensations": [
            {
                "step": c["step"],
                "item_index": c.get("item_index"),
                "status": c["status"],
                "attempts": c["attempts"],
                "error": shaped(ErrorInfo, redact(c["error"])) if c.get("error") else None,
            }
            for c in ctx.comp_log
        ],
        "needs_attention": needs,
        "output": redact(output),
        "duration_ms": ctx.ms(ctx.t0),
        "started_at": rfc3339(ctx.started_wall),
        "finished_at": rfc3339(ctx.clock.now()) if finished and status not in WAITING else None,
        "definition_hash": ctx.plan.hash,
    }
    if status == "waiting_approval":
        data["waiting"] = [
            shaped(WaitingGate, _waiting(ctx.gate_requests[g]))
            for g in sorted(ctx.waiting)
            if g in ctx.gate_requests
        ]
    parked = [
        {"id": nid, "kind": kind, "due": rfc3339(due) if due is not None else None, "signal": sig}
        for nid, (kind, due, sig) in sorted(ctx.parked.items())
        if kind != "approval"
    ]
    if status in WAITING and parked:
        data["parked"] = parked
    return data


def _waiting(request: dict[str, Any]) -> dict[str, Any]:
    """A waiting gate of the report, from its (redacted) `approval_requested` fields."""
    return {
        "id": request["step"],
        "key": request.get("key"),
        "message": request.get("message"),
        "approvers": request.get("approvers") or [],
        "deadline": request.get("deadline"),
    }
