"""The end of a run: its last event, its report, and the report stored with the run's status.

`finish(ex, status, output)` is called once per `Executor.run`, whatever the outcome: it
journals `saga_completed`, `saga_failed` or `saga_waiting`, builds the `RunReport` from the
executor's plain state in one validation, and stores it. Everything journaled or stored goes
through the run's redaction; approval tokens are added to the returned report only, after it
is stored: this module must never store or journal a clear token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .clock import rfc3339
from .report import ErrorInfo, Failure, RunReport

if TYPE_CHECKING:
    from .executor import Executor


async def finish(ex: Executor, status: str, output: Any) -> RunReport:
    failure = ex.failure
    needs = []
    for c in ex.comp_log:
        if c["status"] != "ok" and c["step"] not in needs:
            needs.append(c["step"])
    waiting = status == "waiting_approval"
    duration = ex.ms(ex.t0)
    if waiting:
        await ex.emit("saga_waiting", {"status": status, "waiting": sorted(ex.waiting)})
    elif status == "succeeded":
        await ex.emit(
            "saga_completed",
            {"status": status, "output": ex.redact(output), "duration_ms": duration},
        )
    else:
        await ex.emit(
            "saga_failed",
            {
                "status": status,
                "failure": ex.redact(failure),
                "needs_attention": needs,
                "duration_ms": duration,
            },
        )
    redact = ex.redact
    # One validation of plain data: cheaper than building the nested models one by one.
    report = RunReport.model_validate(
        {
            "run_id": ex.run_id,
            "saga": ex.plan.saga,
            "version": ex.plan.version,
            "status": status,
            "failure": _fields(redact(failure), Failure) if failure else None,
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
            "output": redact(output),
            "duration_ms": duration,
            "started_at": rfc3339(ex.started_wall),
            "finished_at": None if waiting else rfc3339(ex.clock.now()),
            "definition_hash": ex.plan.hash,
        }
    )
    await ex.store.update_run(ex.run_id, status, report.to_json_dict())
    if ex.approval_tokens:  # never stored: only returned
        report.approval_tokens.update(ex.approval_tokens)
    return report


def _fields(data: dict[str, Any], model: type[Any]) -> dict[str, Any]:
    names = model.model_fields
    return {k: v for k, v in data.items() if k in names}
