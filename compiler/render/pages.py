"""The HTML pages: a saga's diagram page, and the report of one run.

Both are one self-contained file: inline CSS, the diagram as inline SVG (laid out by Graphviz
`dot`), the timeline as inline SVG generated here; no script, no external resource, and a
Content-Security-Policy that forbids fetching anything. Run data comes in as plain dicts shaped
as the spec's report and events (section 7); this module never imports the runtime and reads
those dicts tolerantly (missing keys are shown as absent; the errors table shows unknown keys
as extra columns, the approvals and audit tables only what a person reads).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC
from typing import Any

from ..durations import format_duration
from ..ir import CallNode, WaitNode, effectful
from ..plan import Plan
from . import styles
from .diagrams import inline_svg, render_svg
from .model import action_label, run_line
from .overlay import NodeRun, error_code, overlay_from_events, parse_time
from .templating import render
from .timeline import build_timeline, format_ms, layout

Overlay = Mapping[str, NodeRun]

# A run's status (spec section 6) drawn with the colour of the matching node status.
RUN_STATUS_STYLE = {
    "succeeded": "completed",
    "compensated": "compensated",
    "compensation_failed": "compensation_failed",
    "failed": "failed",
    "running": "running",
    "waiting_approval": "waiting",
    "cancelled": "cancelled",
}
# How a decision reads, from the store's `status` or an event-like `decision`/`approved`.
DECISION_WORDS = {
    "approved": ("approved", "completed"),
    "rejected": ("rejected", "failed"),
    "timed_out": ("timed out", "failed"),
    "pending": ("waiting", "waiting"),
}


def cell(value: Any) -> str:
    """A value as table text: scalars as they are, the rest as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def table(records: Iterable[Any], preferred: Sequence[str] = ()) -> dict[str, Any]:
    """Columns (preferred ones first, then any other key in order of appearance) and rows."""
    rows = [r for r in records if isinstance(r, Mapping)]
    seen: list[str] = []
    for r in rows:
        seen.extend(str(k) for k in r if str(k) not in seen)
    columns = [c for c in preferred if c in seen] + [c for c in seen if c not in preferred]
    return {"columns": columns, "rows": [[cell(r.get(c)) for c in columns] for r in rows]}


def when(value: Any) -> str:
    """An RFC 3339 time as a person reads it (`2026-12-03 10:21:15 UTC`); else as given."""
    at = parse_time(value)
    if at is None:
        return cell(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _decision(row: Mapping[str, Any]) -> str:
    status = row.get("status") or row.get("decision")
    if isinstance(status, str) and status in DECISION_WORDS:
        return status
    approved = row.get("approved")
    if isinstance(approved, bool):
        return "approved" if approved else "rejected"
    if isinstance(status, str):
        return "approved" if status.lower() in ("approve", "accepted") else status.lower()
    return "decided" if row.get("decided_at") else "pending"


def approval_rows(approvals: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per gate: what was asked (and of whom), the decision, who took it and when,
    how long the gate waited, and the comment (with the approver's value). Rows are the
    store's approval requests or event-like dicts (`decision`, `by`)."""
    out = []
    for row in approvals:
        if not isinstance(row, Mapping):
            continue
        decision = _decision(row)
        word, style = DECISION_WORDS.get(decision, (decision.replace("_", " "), "pending"))
        asked, decided = row.get("requested_at"), row.get("decided_at")
        start, end = parse_time(asked), parse_time(decided)
        waited = (end - start).total_seconds() * 1000 if start and end else None
        approvers = row.get("approvers")
        value = row.get("value")
        code = row.get("decision_code")
        out.append(
            {
                "gate": cell(row.get("gate") or row.get("step")) or "?",
                "key": cell(row.get("key")),
                "message": cell(row.get("message")),
                "approvers": ", ".join(map(cell, approvers))
                if isinstance(approvers, list)
                else cell(approvers),
                "decision": word,
                "style": style,
                "code": cell(code) if code and code != "APPROVAL_REJECTED" else "",
                "by": cell(row.get("decided_by") or row.get("by")),
                "asked": when(asked),
                "decided": when(decided),
                "deadline": when(row.get("deadline")) if decision == "pending" else "",
                "waited": format_ms(max(waited, 0.0)) if waited is not None else "",
                "comment": cell(row.get("comment") or row.get("reason")),
                "value": cell(value) if value is not None else "",
            }
        )
    return out


def audit_rows(entries: Iterable[Any]) -> list[dict[str, str]]:
    """One row per audit entry: when, who claimed to act and the OS user who ran it, what
    (action, outcome, code, gate), and the message; ids and JSON details are left out."""
    out = []
    for a in entries:
        if not isinstance(a, Mapping):
            continue
        actor = cell(a.get("actor") or a.get("by")) or "-"
        os_user = cell(a.get("os_user"))
        out.append(
            {
                "at": when(a.get("at")),
                "actor": actor,
                "os_user": os_user if os_user and os_user != actor else "",
                "action": cell(a.get("action") or a.get("event") or a.get("type")).replace(
                    "_", " "
                ),
                "outcome": cell(a.get("outcome")),
                "code": cell(a.get("code")),
                "gate": cell(a.get("gate") or a.get("step")),
                "message": cell(a.get("message") or a.get("reason")),
            }
        )
    return out


def node_rows(plan: Plan, overlay: Overlay | None = None) -> list[dict[str, str]]:
    """One row per node of the saga, in declaration order, for the pages' tables."""
    out = []
    for n in plan.definition.walk():
        meta = plan.nodes[n.id]
        action = retry = timeout = undo = ""
        step = effectful(n)
        if step is not None:
            action = action_label(step.action)
            retry = str(max((p.max_attempts for p in step.retry), default=1))
            timeout = format_duration(step.timeout) if step.timeout else ""
            undo = action_label(step.compensate.action) if step.compensate else ""
        elif isinstance(n, CallNode):
            action = f"call {n.saga}"
        elif isinstance(n, WaitNode) and n.timeout:
            timeout = format_duration(n.timeout)
        kind = "irreversible" if meta.irreversible else meta.kind
        run = overlay.get(n.id) if overlay is not None else None
        out.append(
            {
                "id": n.id,
                "name": n.name or "",
                "kind": kind,
                "scope": meta.scope,
                "after": ", ".join(meta.depends_on),
                "action": action,
                "retry": retry,
                "timeout": timeout,
                "compensation": undo,
                "status": run.status if run else "",
                "run": run_line(run) if run else "",
            }
        )
    return out


def _page(plan: Plan) -> dict[str, Any]:
    return {
        "saga": plan.definition,
        "plan": plan,
        "status_styles": styles.STATUS_STYLES,
        "kind_styles": styles.KIND_STYLES,
    }


def render_html(plan: Plan, overlay: Overlay | None = None, expand: bool = False) -> str:
    """A self-contained page of the saga: the diagram (needs `dot`) and a table of its nodes."""
    return render(
        "html",
        "diagram.html.j2",
        svg=inline_svg(render_svg(plan, overlay, expand)),
        rows=node_rows(plan, overlay),
        **_page(plan),
    )


def overlay_with_report(overlay: Overlay, report: Mapping[str, Any]) -> dict[str, NodeRun]:
    """`overlay` completed by the report (its failure and compensations), which is final."""
    out = dict(overlay)
    failure = report.get("failure")
    if isinstance(failure, Mapping) and isinstance(failure.get("step"), str):
        step = failure["step"]
        run = out.get(step, NodeRun())
        attempts = failure.get("attempts")
        out[step] = replace(
            run,
            status="failed" if run.status in ("pending", "running", "waiting") else run.status,
            attempts=max(run.attempts, attempts if isinstance(attempts, int) else 0),
            error=error_code(failure) or run.error,
        )
    for comp in report.get("compensations") or ():
        if not isinstance(comp, Mapping) or not isinstance(comp.get("step"), str):
            continue
        run = out.get(comp["step"], NodeRun(status="completed"))
        ok = comp.get("status") in ("ok", "completed", "compensated")
        attempts = comp.get("attempts")
        out[comp["step"]] = replace(
            run,
            status="compensated" if ok else "compensation_failed",
            compensation_status="ok" if ok else "failed",
            compensation_attempts=attempts if isinstance(attempts, int) else 1,
        )
    return out


def _summary(report: Mapping[str, Any], overlay: Overlay) -> list[tuple[str, str]]:
    ran = [r for r in overlay.values() if r.status not in ("pending", "skipped")]
    retries = sum(max(r.attempts - 1, 0) for r in overlay.values())
    comps = [c for c in report.get("compensations") or () if isinstance(c, Mapping)]
    undone = sum(c.get("status") in ("ok", "completed", "compensated") for c in comps)
    duration = report.get("duration_ms")
    return [
        ("Saga", f"{report.get('saga', '')} v{report.get('version', '')}".strip()),
        ("Duration", format_ms(float(duration)) if isinstance(duration, int | float) else "-"),
        ("Steps run", str(len(ran))),
        ("Retries", str(retries)),
        ("Compensations ok", f"{undone} of {len(comps)}"),
        ("Needs attention", str(len(report.get("needs_attention") or ()))),
    ]


def render_report_html(
    plan: Plan,
    report: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    approvals: Sequence[Mapping[str, Any]] = (),
    audit: Sequence[Mapping[str, Any]] = (),
) -> str:
    """One self-contained HTML file for a run: the coloured diagram, a timeline of every
    attempt, retry and compensation, the error report, approvals and audit entries."""
    overlay = overlay_with_report(overlay_from_events(events), report)
    timeline = build_timeline(events)
    status = str(report.get("status") or "unknown")
    errors = [e for e in report.get("errors") or () if isinstance(e, Mapping)]
    compensations = [c for c in report.get("compensations") or () if isinstance(c, Mapping)]
    output = report.get("output")
    failure = report.get("failure")
    failure = failure if isinstance(failure, Mapping) else None
    attempts = failure.get("attempts") if failure else None
    return render(
        "html",
        "report.html.j2",
        run_id=cell(report.get("run_id")) or "?",
        saga_name=cell(report.get("saga")) or plan.saga,
        status=status,
        status_style=styles.STATUS_STYLES.get(
            RUN_STATUS_STYLE.get(status, "pending"), styles.STATUS_STYLES["pending"]
        ),
        started=timeline.origin.isoformat() if timeline.origin else "",
        cards=_summary(report, overlay),
        failure={
            "step": cell(failure.get("step")) or "?",
            "code": cell(failure.get("code")),
            "message": cell(failure.get("message")),
            "attempts": attempts if isinstance(attempts, int) else None,
        }
        if failure
        else None,
        errors=table(errors, ("step", "branch", "item_index", "code", "message")),
        compensations=[
            {
                "order": i + 1,
                "step": cell(c.get("step")),
                "status": cell(c.get("status")),
                "ok": c.get("status") in ("ok", "completed", "compensated"),
                "attempts": cell(c.get("attempts")),
                "error": cell(error_code(c.get("error")) or ""),
                "detail": cell(c.get("error")) if isinstance(c.get("error"), Mapping) else "",
            }
            for i, c in enumerate(compensations)
        ],
        needs_attention=[cell(s) for s in report.get("needs_attention") or ()],
        approvals=approval_rows(approvals),
        audit=audit_rows(audit),
        output=json.dumps(output, indent=2, sort_keys=True, default=str)[:8000]
        if output is not None
        else "",
        svg=inline_svg(render_svg(plan, overlay)),
        timeline=layout(timeline) if timeline.rows else None,
        rows=node_rows(plan, overlay),
        **_page(plan),
    )
