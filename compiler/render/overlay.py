"""Run overlays: what happened to each node of a run, as plain data for the renderers.

An overlay maps a node id to a `NodeRun`. `overlay_from_events` folds the event stream of the
spec (section 7) into one; the journal or a test can also build an overlay directly. This module
must never import the runtime: it reads events as plain dicts and is tolerant of what it does
not know (unknown event types and fields are ignored, missing fields take defaults), so a newer
runtime never breaks an older renderer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, get_args

Status = Literal[
    "pending",
    "running",
    "waiting",
    "completed",
    "failed",
    "skipped",
    "compensated",
    "compensation_failed",
    "cancelled",
]
CompensationStatus = Literal["running", "ok", "failed"]
STATUSES: tuple[str, ...] = get_args(Status)


@dataclass(frozen=True, slots=True)
class NodeRun:
    """What one node did in a run. `attempts` counts the node's own attempts (not its undo's)."""

    status: Status = "pending"
    attempts: int = 0
    duration_ms: float | None = None
    error: str | None = None  # the last error code
    compensation_status: CompensationStatus | None = None
    compensation_attempts: int = 0
    items_total: int | None = None  # foreach only
    items_processed: int | None = None
    items_failed: int | None = None
    asked_at: datetime | None = None  # a gate, sleep, wait or callback: when it parked
    waited_ms: float | None = None  # and how long it waited (for the decision, time, signal...)
    waiting_for: str | None = None  # what a parked node waits for: `signal X`, `until T`, ...
    case_chosen: bool = False  # a switch whose `case_chosen` was seen
    case: int | str | None = None  # the case it took: an index, "default", or None (none)
    child_run_id: str | None = None  # a call: its child run


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time with its zone (`...Z`), else None."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else None


def error_code(error: Any) -> str | None:
    """The code of an event's or report's `error`, whatever its shape (dict, string, None)."""
    if error is None:
        return None
    if isinstance(error, Mapping):
        code = error.get("code")
        return str(code) if code is not None else None
    return str(error)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _approved(event: Mapping[str, Any]) -> bool | None:
    for key in ("approved", "decision", "outcome", "result"):
        value = event.get(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return value.lower() in ("approve", "approved", "yes", "accept", "accepted")
        if isinstance(value, Mapping) and isinstance(value.get("approved"), bool):
            return bool(value["approved"])
    return None


def _fold(run: NodeRun, event: Mapping[str, Any]) -> NodeRun:
    kind = event.get("type")
    attempt = _int(event.get("attempt"))
    duration = _float(event.get("duration_ms"))
    code = error_code(event.get("error"))
    if kind in ("step_started", "group_started"):
        return replace(run, status="running", attempts=max(run.attempts + 1, attempt or 0))
    if kind == "step_retrying":
        return replace(run, status="running", attempts=max(run.attempts, attempt or 0), error=code)
    if kind in ("step_completed", "group_completed"):
        status: Status = "completed"
        if kind == "group_completed" and event.get("status") in STATUSES:
            status = event["status"]
        if run.waited_ms is not None:  # a decided gate: its time is the wait, not this 0 ms
            duration = None
        return replace(
            run,
            status=status,
            attempts=max(run.attempts, attempt or 0, 1),
            duration_ms=duration if duration is not None else run.duration_ms,
        )
    if kind in ("step_failed", "group_failed"):
        return replace(
            run,
            status="cancelled" if code == "CANCELLED" else "failed",
            attempts=max(run.attempts, attempt or 0),
            duration_ms=duration if duration is not None else run.duration_ms,
            error=code or run.error,
        )
    if kind == "step_skipped":
        return replace(run, status="skipped")
    if kind == "approval_requested":
        return replace(run, status="waiting", asked_at=parse_time(event.get("at")))
    if kind == "approval_decided":
        approved = _approved(event)
        if approved is None:
            return run
        decided = parse_time(event.get("decided_at")) or parse_time(event.get("at"))
        waited = None
        if run.asked_at is not None and decided is not None:
            waited = max((decided - run.asked_at).total_seconds() * 1000, 0.0)
        return replace(
            run,
            status="completed" if approved else "failed",
            error=None if approved else (code or "APPROVAL_REJECTED"),
            waited_ms=waited,
        )
    if kind in _PARKING:
        return replace(
            run,
            status="waiting",
            asked_at=parse_time(event.get("at")),
            waiting_for=_PARKING[kind](event),
        )
    if kind == "wait_ended":
        reason = event.get("reason")
        if reason == "timeout":  # the node's step_failed (or step_completed) says what follows
            return replace(run, waiting_for="timed out")
        ended = parse_time(event.get("at"))
        waited = run.waited_ms
        if run.asked_at is not None and ended is not None:
            waited = max((ended - run.asked_at).total_seconds() * 1000, 0.0)
        now: Status = "cancelled" if reason == "cancelled" else "running"
        return replace(run, status=now, waiting_for=None, waited_ms=waited)
    if kind == "case_chosen":
        case = event.get("case")
        if not (case is None or case == "default" or _int(case) is not None):
            return run
        return replace(run, status="running", case_chosen=True, case=case)
    if kind == "call_started":
        child = event.get("child_run_id")
        return replace(
            run, status="running", child_run_id=child if isinstance(child, str) else None
        )
    if kind == "compensation_started":
        return replace(
            run,
            compensation_status="running",
            compensation_attempts=max(run.compensation_attempts + 1, attempt or 0),
        )
    if kind == "compensation_completed":
        return replace(
            run,
            status="compensated",
            compensation_status="ok",
            compensation_attempts=max(run.compensation_attempts, attempt or 0, 1),
        )
    if kind == "compensation_failed":
        return replace(
            run,
            status="compensation_failed",
            compensation_status="failed",
            compensation_attempts=max(run.compensation_attempts, attempt or 0, 1),
        )
    if kind == "batch_progress":
        total, processed, failed = (_int(event.get(k)) for k in ("total", "processed", "failed"))
        return replace(
            run,
            items_total=run.items_total if total is None else total,
            items_processed=run.items_processed if processed is None else processed,
            items_failed=run.items_failed if failed is None else failed,
        )
    return run


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "?"


# The events that park a node, and what it then waits for.
_PARKING: dict[str, Any] = {
    "sleep_started": lambda e: f"until {_text(e.get('until'))}",
    "wait_started": lambda e: f"for signal {_text(e.get('signal'))}",
    "callback_issued": lambda e: "for its callback",
}


def overlay_from_events(events: Iterable[Mapping[str, Any]]) -> dict[str, NodeRun]:
    """Fold spec events (in `seq` order) into one `NodeRun` per node they name."""
    ordered = sorted(
        (e for e in events if isinstance(e, Mapping)),
        key=lambda e: (_int(e.get("seq")) is None, _int(e.get("seq")) or 0),
    )
    overlay: dict[str, NodeRun] = {}
    for event in ordered:
        step = event.get("step") or event.get("group")
        if not isinstance(step, str):
            continue
        overlay[step] = _fold(overlay.get(step, NodeRun()), event)
    return overlay
