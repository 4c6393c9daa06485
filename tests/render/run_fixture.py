"""A hand-built run of tests/render/sagas/all_kinds.yaml, shaped as the spec's report and events.

A retried step, a parallel group with a nested `any` race (one branch cancelled), an approved
gate, a batch that fails on an item, then LIFO compensation (one compensation fails once and
succeeds on its retry) and the on_failure nodes. Status: compensated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

RUN_ID = "run_7f3a9c"
T0 = datetime(2025, 3, 1, 10, 0, 0, tzinfo=UTC)


def _at(ms: float) -> str:
    return (T0 + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")


_SCRIPT: list[tuple[float, str, dict[str, Any]]] = [
    (0, "saga_started", {}),
    (0, "step_started", {"step": "reserve", "attempt": 1}),
    (120, "step_retrying", {"step": "reserve", "attempt": 1, "max_attempts": 3,
                            "delay_ms": 200, "error": {"code": "TIMEOUT", "message": "5s"}}),
    (320, "step_started", {"step": "reserve", "attempt": 2}),
    (400, "step_completed", {"step": "reserve", "attempt": 2, "duration_ms": 80}),
    (400, "group_started", {"step": "fan_out"}),
    (405, "step_started", {"step": "left_a", "attempt": 1}),
    (405, "group_started", {"step": "race"}),
    (410, "step_started", {"step": "race_x", "attempt": 1}),
    (410, "step_started", {"step": "race_y", "attempt": 1}),
    (600, "step_completed", {"step": "left_a", "attempt": 1, "duration_ms": 195}),
    (600, "step_started", {"step": "left_b", "attempt": 1}),
    (650, "step_completed", {"step": "race_x", "attempt": 1, "duration_ms": 240}),
    (655, "step_failed", {"step": "race_y", "attempt": 1, "duration_ms": 245,
                          "error": {"code": "CANCELLED", "message": "another branch won"}}),
    (660, "group_completed", {"step": "race", "winner": "race_x"}),
    (700, "step_completed", {"step": "left_b", "attempt": 1, "duration_ms": 100}),
    (710, "group_completed", {"step": "fan_out"}),
    (710, "approval_requested", {"step": "sign_off", "key": "all_kinds:run_7f3a9c:sign_off"}),
    (1500, "approval_decided", {"step": "sign_off", "approved": True, "by": "alice"}),
    (1500, "step_started", {"step": "per_item", "attempt": 1}),
    (1600, "batch_progress", {"step": "per_item", "batch": 1, "total_batches": 3,
                              "processed": 20, "total": 60, "percent": 33.3, "failed": 0}),
    (1750, "batch_progress", {"step": "per_item", "batch": 2, "total_batches": 3,
                              "processed": 40, "total": 60, "percent": 66.7, "failed": 1}),
    (1800, "step_failed", {"step": "per_item", "attempt": 1, "duration_ms": 300,
                           "error": {"code": "BATCH_ITEM_FAILED", "item_index": 27}}),
    (1800, "compensation_started", {"step": "per_item", "attempt": 1}),
    (1900, "compensation_completed", {"step": "per_item", "attempt": 1, "duration_ms": 100}),
    (1900, "compensation_started", {"step": "race_x", "attempt": 1}),
    (1980, "compensation_completed", {"step": "race_x", "attempt": 1, "duration_ms": 80}),
    (1980, "compensation_started", {"step": "left_a", "attempt": 1}),
    (2050, "compensation_completed", {"step": "left_a", "attempt": 1, "duration_ms": 70}),
    (2050, "compensation_started", {"step": "reserve", "attempt": 1}),
    (2150, "compensation_failed", {"step": "reserve", "attempt": 1, "duration_ms": 100,
                                   "error": {"code": "UNAVAILABLE"}}),
    (2400, "compensation_started", {"step": "reserve", "attempt": 2}),
    (2480, "compensation_completed", {"step": "reserve", "attempt": 2, "duration_ms": 80}),
    (2480, "step_started", {"step": "page_someone", "attempt": 1}),
    (2560, "step_completed", {"step": "page_someone", "attempt": 1, "duration_ms": 80}),
    (2560, "step_started", {"step": "write_ticket", "attempt": 1}),
    (2600, "step_completed", {"step": "write_ticket", "attempt": 1, "duration_ms": 40}),
    (2600, "saga_failed", {"code": "BATCH_ITEM_FAILED"}),
]  # fmt: skip


def events() -> list[dict[str, Any]]:
    return [
        {"type": kind, "run_id": RUN_ID, "seq": i + 1, "at": _at(ms), **fields}
        for i, (ms, kind, fields) in enumerate(_SCRIPT)
    ]


def report() -> dict[str, Any]:
    return {
        "run_id": RUN_ID,
        "saga": "all_kinds",
        "version": 2,
        "status": "compensated",
        "failure": {
            "step": "per_item",
            "code": "BATCH_ITEM_FAILED",
            "message": "item 27 (batch 2) failed: OUT_OF_STOCK <sku-9>",
            "attempts": 1,
        },
        "errors": [
            {"step": "per_item", "item_index": 27, "code": "OUT_OF_STOCK",
             "message": "sku-9 is out of stock"},
            {"step": "race_y", "branch": 1, "code": "CANCELLED", "message": "another branch won"},
        ],
        "compensations": [
            {"step": "per_item", "status": "ok", "attempts": 1},
            {"step": "race_x", "status": "ok", "attempts": 1},
            {"step": "left_a", "status": "ok", "attempts": 1},
            {"step": "reserve", "status": "ok", "attempts": 2},
        ],
        "needs_attention": [],
        "output": None,
        "duration_ms": 2600,
    }  # fmt: skip


def approvals() -> list[dict[str, Any]]:
    return [
        {
            "gate": "sign_off",
            "key": "all_kinds:run_7f3a9c:sign_off",
            "approvers": ["alice", "group:ops"],
            "requested_at": _at(710),
            "decided_at": _at(1500),
            "decision": "approved",
            "by": "alice",
            "comment": "Looks fine <b>really</b>",
        }
    ]


def audit() -> list[dict[str, Any]]:
    return [
        {"at": _at(1200), "actor": "mallory", "action": "approve", "step": "sign_off",
         "outcome": "refused", "reason": "not a listed approver"},
        {"at": _at(1500), "actor": "alice", "action": "approve", "step": "sign_off",
         "outcome": "accepted"},
    ]  # fmt: skip
