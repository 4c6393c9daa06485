"""Replay: the state of a run reconstructed from its journal (the event log).

The journal is the source of truth; `replay(events)` folds it into a `RunState` that says, for
every node (and every foreach item), whether it completed (with its recorded result), failed for
good, was skipped, or was started and never finished (with the attempt and idempotency key it
used), and which compensations started, succeeded or failed. The executor continues a run from
that state: completed nodes are not called again, unfinished ones are re-run with the same key,
and an interrupted compensation carries on without undoing any step twice.

A step cancelled by the run itself is journaled as `step_failed` with `cancelled: true`; replay
treats it as unfinished (re-run on resume) unless the run had entered compensation
(`saga_compensating`), where it is final. A crash writes nothing, so an interrupted attempt is
simply a `step_started` without an end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .checkpoints import ItemsDone, fold
from .clock import parse_rfc3339
from .store.base import Event

StepKey = tuple[str, int | None]  # (node id, foreach item index or None)


@dataclass(slots=True)
class StepRecord:
    status: str  # started | completed | failed | cancelled | skipped
    attempt: int = 0
    idempotency_key: str | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    seq: int = 0  # seq of the event that ended it (its place in completion order)
    branch: str | None = None
    # A step with `callback:` (`callbacks.py`): the codes its retries were for (a resume goes
    # on counting them), whether this attempt's action returned (`callback_waiting`), and the
    # `wait_ended` (reason, attempt) journaled since this attempt started.
    retried: list[str] = field(default_factory=list)
    returned: bool = False
    settled: tuple[str, int] | None = None


@dataclass(slots=True)
class CompensationRecord:
    status: str  # started | ok | failed
    attempt: int = 0
    idempotency_key: str | None = None
    error: dict[str, Any] | None = None
    seq: int = 0


@dataclass(slots=True)
class RunState:
    """What the journal says about a run."""

    run_id: str = ""
    saga: str = ""
    version: int = 1
    definition_hash: str = ""
    input: Any = None
    started_at: str | None = None
    last_seq: int = 0
    steps: dict[StepKey, StepRecord] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {result, winner}
    compensations: dict[StepKey, CompensationRecord] = field(default_factory=dict)
    compensation_log: list[dict[str, Any]] = field(default_factory=list)  # ended, in order
    errors: list[dict[str, Any]] = field(default_factory=list)
    approvals_requested: dict[str, Event] = field(default_factory=dict)
    approvals_decided: dict[str, Event] = field(default_factory=dict)
    cases: dict[str, int | str | None] = field(default_factory=dict)  # switch id -> case_chosen
    calls: dict[str, Event] = field(default_factory=dict)  # call node id -> its `call_started`
    # Parking nodes by id: their opening event (`sleep_started`, `wait_started`) and their
    # `wait_ended`; the ids of the signals a `wait` consumed (never consumed again).
    parks_started: dict[str, Event] = field(default_factory=dict)
    parks_ended: dict[str, Event] = field(default_factory=dict)
    signals_consumed: set[int] = field(default_factory=set)
    batches: dict[str, int] = field(default_factory=dict)  # foreach id -> last batch done
    items_done: dict[str, ItemsDone] = field(default_factory=dict)  # foreach id -> checkpoints
    failure: dict[str, Any] | None = None  # set once the run entered compensation
    # Command attempts whose process group started and that never ended (process_started
    # without a later end of the same attempt): what a resume ends if they are still alive.
    processes: dict[tuple[str, int | None, int, bool], Event] = field(default_factory=dict)
    status: str = "running"  # last known: running | interrupted | waiting(_approval) | final
    final_event: Event | None = None
    simulate: bool = False  # started with `--simulate`: a resume simulates too
    fail: dict[str, str] = field(default_factory=dict)  # started with `--fail STEP=CODE`
    # Active time (what the saga `timeout` counts): `active_base` seconds journaled by the last
    # `saga_waiting` or `saga_resumed`, then the open stretch of a process that ran the run,
    # from `active_since` to the last event it wrote (`active_until`; a crash writes no end).
    active_base: float = 0.0
    active_since: str | None = None
    active_until: str | None = None

    @property
    def active_seconds(self) -> float:
        """Active time the run used before now: time parked at an approval gate (between its
        `saga_waiting` and the next `saga_resumed`) and time no process ran it do not count."""
        if self.active_since is None or self.active_until is None:
            return self.active_base
        return self.active_base + max(
            parse_rfc3339(self.active_until) - parse_rfc3339(self.active_since), 0.0
        )

    @property
    def finished(self) -> bool:
        return self.final_event is not None

    def completed(self) -> dict[StepKey, StepRecord]:
        return {k: r for k, r in self.steps.items() if r.status == "completed"}

    def unfinished(self) -> dict[StepKey, StepRecord]:
        """Started (or cancelled) and never ended: re-run these with the same key."""
        return {k: r for k, r in self.steps.items() if r.status in ("started", "cancelled")}


def _key(e: Event) -> StepKey:
    return (e["step"], e.get("item_index"))


def replay(events: Iterable[Event]) -> RunState:
    """Fold a run's events (in `seq` order) into its state."""
    s = RunState()
    for e in events:
        t = e["type"]
        s.last_seq = e["seq"]
        if s.processes and t in _ATTEMPT_ENDS:
            _attempt_ended(s.processes, e, t)
        if t in _CALLBACK_EVENTS:
            _callback_event(s, e, t)
        s.run_id = e["run_id"]
        if t != "approval_decided":  # written by whoever decided, not by a run's process
            s.active_until = e["at"]
        if t == "saga_started":
            s.saga, s.version = e["saga"], e["version"]
            s.definition_hash, s.input = e["definition_hash"], e.get("input")
            s.started_at = s.active_since = e["at"]
            s.simulate, s.fail = bool(e.get("simulate")), dict(e.get("fail") or {})
        elif t == "saga_resumed":
            if "active_ms" in e:
                s.active_base = e["active_ms"] / 1000
            elif s.started_at is not None:  # journaled before active time was: wall time
                s.active_base = parse_rfc3339(e["at"]) - parse_rfc3339(s.started_at)
            s.active_since = e["at"]
        elif t == "step_started":
            key = _key(e)
            prev = s.steps.get(key)
            s.steps[key] = StepRecord(
                "started",
                e.get("attempt", 0),
                e.get("idempotency_key", prev.idempotency_key if prev else None),
                branch=e.get("branch"),
                retried=prev.retried if prev else [],
            )
        elif t == "step_completed":
            rec = s.steps.setdefault(_key(e), StepRecord("started"))
            rec.status, rec.result, rec.seq = "completed", e.get("result"), e["seq"]
            rec.attempt = e.get("attempt", rec.attempt)
        elif t == "step_failed":
            rec = s.steps.setdefault(_key(e), StepRecord("started", branch=e.get("branch")))
            error = e.get("error") or {}
            rec.error, rec.seq = error, e["seq"]
            rec.attempt = e.get("attempt", rec.attempt)
            cancelled = bool(e.get("cancelled"))
            rec.status = "cancelled" if cancelled and s.failure is None else "failed"
            if not cancelled and not e.get("propagated"):
                # A failed `call` carries its child's errors, their steps path-prefixed.
                s.errors.extend(_child_errors(e) or [_error_of(e)])
        elif t == "step_skipped":
            s.steps[_key(e)] = StepRecord("skipped", seq=e["seq"], branch=e.get("branch"))
        elif t == "group_completed":
            s.groups[e["step"]] = {"result": e.get("result"), "winner": e.get("winner")}
            s.steps[(e["step"], None)] = StepRecord(
                "completed", result=e.get("result"), seq=e["seq"]
            )
        elif t == "approval_requested":
            s.approvals_requested[e["step"]] = e
            s.status = "waiting_approval"
        elif t == "approval_decided":
            s.approvals_decided[e["step"]] = e
            s.status = "running"
        elif t == "case_chosen":
            s.cases[e["step"]] = e.get("case")
        elif t == "batch_progress":
            s.batches[e["step"]] = e["batch"]
            fold(s.items_done, e)
        elif t == "call_started":
            s.calls[e["step"]] = e
        elif t == "saga_compensating":
            s.failure = e.get("failure")
            s.final_event, s.status = None, "running"  # a child its parent undoes (`calls`)
            for rec in s.steps.values():
                if rec.status == "cancelled":
                    rec.status = "failed"
        elif t == "compensation_started":
            key = _key(e)
            s.compensations[key] = CompensationRecord(
                "started", e["attempt"], e.get("idempotency_key")
            )
        elif t == "compensation_completed":
            rec_c = s.compensations.setdefault(_key(e), CompensationRecord("started"))
            rec_c.status, rec_c.attempt, rec_c.seq = "ok", e["attempt"], e["seq"]
            s.compensation_log.append(
                {
                    "step": e["step"],
                    "item_index": e.get("item_index"),
                    "status": "ok",
                    "attempts": e["attempt"],
                    "error": None,
                }
            )
        elif t == "compensation_failed" and e.get("final"):
            rec_c = s.compensations.setdefault(_key(e), CompensationRecord("started"))
            rec_c.status, rec_c.attempt, rec_c.seq = "failed", e["attempt"], e["seq"]
            rec_c.error = e.get("error")
            # A call's: its child's undos that failed, their steps path-prefixed.
            for err in _child_errors(e) or [_error_of(e, "compensation")]:
                s.errors.append(err)
                s.compensation_log.append(
                    {
                        "step": err["step"],
                        "item_index": err.get("item_index"),
                        "status": "failed",
                        "attempts": e["attempt"],
                        "error": err,
                    }
                )
        elif t == "process_started":
            s.processes[_attempt(e, bool(e.get("compensation")))] = e
        elif t == "saga_interrupted":
            s.status = "interrupted"
        elif t in ("sleep_started", "wait_started"):
            s.parks_started[e["step"]] = e
        elif t == "wait_ended":
            s.parks_ended[e["step"]] = e
            if e.get("signal_id") is not None:
                s.signals_consumed.add(e["signal_id"])
        elif t == "saga_waiting":
            s.status = e.get("status", "waiting_approval")
            if "active_ms" in e:
                s.active_base, s.active_since = e["active_ms"] / 1000, None
        elif t in ("saga_completed", "saga_failed"):
            s.status = e["status"]
            s.final_event = e
    return s


_ATTEMPT_ENDS = frozenset(
    {
        "step_completed",
        "step_failed",
        "step_retrying",
        "compensation_completed",
        "compensation_failed",
        "batch_progress",
    }
)


_CALLBACK_EVENTS = frozenset({"step_retrying", "callback_waiting", "wait_ended"})


def _callback_event(s: RunState, e: Event, t: str) -> None:
    """What a callback step's resume needs (`StepRecord.retried`, `returned`, `settled`)."""
    rec = s.steps.get(_key(e))
    if rec is None or "attempt" not in e:
        return
    if t == "step_retrying":
        rec.retried.append((e.get("error") or {}).get("code", "UNEXPECTED"))
    elif t == "callback_waiting":
        rec.returned = rec.returned or e["attempt"] == rec.attempt
    elif e.get("reason") == "callback" or (
        e.get("reason") == "timeout" and e["attempt"] == rec.attempt
    ):
        rec.settled = (e["reason"], e["attempt"])


def _attempt(e: Event, compensation: bool) -> tuple[str, int | None, int, bool]:
    return (e["step"], e.get("item_index"), e.get("attempt", 0), compensation)


def _attempt_ended(
    processes: dict[tuple[str, int | None, int, bool], Event], e: Event, t: str
) -> None:
    """Forget the process groups of attempts that `e` says ended (a foreach item's completion
    is in its batch_progress, by index)."""
    if t == "batch_progress":
        done = set(e.get("completed") or ())
        for key in [k for k in processes if k[0] == e["step"] and k[1] in done and not k[3]]:
            del processes[key]
    else:
        processes.pop(_attempt(e, t.startswith("compensation")), None)


def _child_errors(e: Event) -> list[dict[str, Any]]:
    """The errors a failed `call` node's event carries from its child run (`calls`)."""
    detail = (e.get("error") or {}).get("detail")
    return list(detail.get("child_errors") or ()) if isinstance(detail, dict) else []


def _error_of(e: Event, phase: str | None = None) -> dict[str, Any]:
    error = e.get("error") or {}
    return {
        "step": e.get("step"),
        "branch": e.get("branch"),
        "item_index": e.get("item_index"),
        "code": error.get("code", "UNEXPECTED"),
        "message": error.get("message", ""),
        "detail": error.get("detail"),
        "phase": phase or e.get("phase", "run"),
    }
