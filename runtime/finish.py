"""The end of a run: its last event, its report, and the report stored with the run's status.

`finish(ex, status, output)` is called once per `Executor.run`, whatever the outcome: it
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
    from .executor import Executor


async def finish(ex: Executor, status: str, output: Any) -> RunReport:
    ex.ending = True
    failure = ex.failure
    needs = []
    for c in ex.comp_log:
        if c["status"] != "ok" and c["step"] not in needs:
            needs.append(c["step"])
    waiting = status == "waiting_approval"
    duration = ex.ms(ex.t0)
    redact = ex.redact
    shown_failure, shown_output = redact(failure), redact(output)
    # One validation of plain data: cheaper than building the nested models one by one.
    report = RunReport.model_validate(
        {
            "run_id": ex.run_id,
            "saga": ex.plan.saga,
            "version": ex.plan.version,
            "status": status,
            "failure": _fields(shown_failure, Failure) if failure else None,
            "errors": [_fields(redact(e), ErrorInfo) for e in ex.errors],
            "compensations": [
                {
                    "step": c["step"],
                    "item_index": c.get("item_index"),
                    "status": c["status"],
                    "attempts": c["attempts"],
                    "error": _fields(redact(c["error"]), ErrorInfo) if c.get("error") else None,
                }
                for c in ex.comp_log
            ],
            "needs_attention": needs,
            "output": shown_output,
            "duration_ms": duration,
            "started_at": rfc3339(ex.started_wall),
            "finished_at": None if waiting else rfc3339(ex.clock.now()),
            "definition_hash": ex.plan.hash,
        }
    )
    stored = report.to_json_dict()
    if waiting:
        await ex.emit("saga_waiting", {"status": status, "waiting": sorted(ex.waiting)}, stored)
    elif status == "succeeded":
        fields = {"status": status, "output": shown_output, "duration_ms": duration}
        await ex.emit("saga_completed", fields, stored)
    else:
        fields = {
            "status": status,
            "failure": shown_failure,
            "needs_attention": needs,
            "duration_ms": duration,
        }
        await ex.emit("saga_failed", fields, stored)
    if ex.approval_tokens:  # never stored: only returned
        report.approval_tokens.update(ex.approval_tokens)
    return report


def _fields(data: dict[str, Any], model: type[Any]) -> dict[str, Any]:
    names = model.model_fields
    return {k: v for k, v in data.items() if k in names}
