"""Run overlays: spec events fold into NodeRuns, and every renderer colours nodes by them."""

from __future__ import annotations

import re
from typing import Any

from sagac.compiler.render import (
    NodeRun,
    overlay_from_events,
    overlay_with_report,
    render_dot,
    render_mermaid,
)

from . import run_fixture
from .conftest import HERE, plan_of

PLAN = HERE / "sagas" / "all_kinds.yaml"


def test_events_fold_into_node_runs() -> None:
    overlay = overlay_from_events(run_fixture.events())
    assert overlay["reserve"] == NodeRun(
        status="compensated",
        attempts=2,
        duration_ms=80,
        error="TIMEOUT",
        compensation_status="ok",
        compensation_attempts=2,
    )
    assert overlay["race_y"].status == "cancelled"
    assert overlay["sign_off"].status == "completed"
    assert overlay["race"].status == "completed"
    batch = overlay["per_item"]
    assert (batch.items_processed, batch.items_total, batch.items_failed) == (40, 60, 1)
    assert batch.status == "compensated" and batch.error == "BATCH_ITEM_FAILED"
    assert "stop_here" not in overlay and "saga_started" not in overlay


def test_unknown_events_and_fields_are_ignored() -> None:
    events = [
        {"type": "something_new", "run_id": "r", "seq": 1, "at": "x", "step": "a"},
        {"type": "step_started", "seq": 2, "step": "a", "colour": "blue"},
        {"type": "step_completed", "seq": 3, "step": "a", "duration_ms": "fast"},
        {"type": "step_started", "seq": 4},  # no step
        "not an event",
    ]
    assert overlay_from_events(events) == {"a": NodeRun(status="completed", attempts=1)}  # type: ignore[arg-type]


def test_events_apply_in_seq_order() -> None:
    events = [
        {"type": "step_completed", "seq": 2, "step": "a", "attempt": 1},
        {"type": "step_started", "seq": 1, "step": "a", "attempt": 1},
    ]
    assert overlay_from_events(events)["a"].status == "completed"


def test_rejected_approval_and_failed_compensation() -> None:
    overlay = overlay_from_events(
        [
            {"type": "approval_requested", "seq": 1, "step": "gate"},
            {"type": "approval_decided", "seq": 2, "step": "gate", "decision": "rejected"},
            {"type": "step_completed", "seq": 3, "step": "pay"},
            {"type": "compensation_started", "seq": 4, "step": "pay", "attempt": 1},
            {"type": "compensation_failed", "seq": 5, "step": "pay", "attempt": 10},
        ]
    )
    assert overlay["gate"].status == "failed" and overlay["gate"].error == "APPROVAL_REJECTED"
    assert overlay["pay"].status == "compensation_failed"
    assert overlay["pay"].compensation_attempts == 10


def test_report_completes_the_overlay() -> None:
    report = {
        "failure": {"step": "a", "code": "BOOM", "attempts": 3},
        "compensations": [{"step": "b", "status": "failed", "attempts": 10}],
    }
    overlay = overlay_with_report({}, report)
    assert overlay["a"] == NodeRun(status="failed", attempts=3, error="BOOM")
    assert overlay["b"].status == "compensation_failed"
    assert overlay["b"].compensation_status == "failed"


def test_overlay_colours_and_labels_in_every_format() -> None:
    plan = plan_of(PLAN)
    overlay = overlay_from_events(run_fixture.events())
    mermaid = render_mermaid(plan, overlay)
    assert "class s_race_x" not in render_mermaid(plan)  # plain diagrams carry no status
    for status in ("completed", "compensated", "cancelled", "pending"):
        assert f"classDef st_{status} " in mermaid
    assert "compensated · 2 attempts · 80 ms" in mermaid
    assert "40/60 items, 1 failed" in mermaid
    assert "undone · 2 attempts" in mermaid
    dot = render_dot(plan, overlay)
    assert "compensated · 2 attempts · 80 ms" in dot
    assert 'fillcolor="#ede9fe"' in dot  # compensated
    assert "not run" in dot  # the legend names the pending colour


WAITS = HERE / "sagas" / "waits_and_calls.yaml"


def _waits_run() -> list[dict[str, Any]]:
    """A run of waits_and_calls.yaml parked at its wait, its switch resolved earlier... in
    journal order: the call, the sleep, the callback, then the wait for a signal."""
    script: list[tuple[str, dict[str, Any]]] = [
        ("call_started", {"step": "reserve_stock", "child_run_id": "child_42", "saga": "x"}),
        ("step_completed", {"step": "reserve_stock", "attempt": 1, "duration_ms": 30}),
        ("sleep_started", {"step": "hold_room", "until": "2025-03-01T10:15:00Z"}),
        ("wait_ended", {"step": "hold_room", "reason": "due"}),
        ("step_completed", {"step": "hold_room", "attempt": 1, "duration_ms": 0}),
        ("step_started", {"step": "charge_card", "attempt": 1}),
        ("callback_issued", {"step": "charge_card", "attempt": 1, "token_sha256": "ab"}),
        ("wait_started", {"step": "payment_confirmed", "signal": "payment_confirmed"}),
    ]
    at = ["2025-03-01T10:00:00Z"] * 2 + ["2025-03-01T10:00:00Z", "2025-03-01T10:15:00Z"]
    at += ["2025-03-01T10:15:00Z"] * 4
    return [
        {"type": t, "seq": i + 1, "at": at[i], **fields} for i, (t, fields) in enumerate(script)
    ]


def test_parking_events_show_what_a_node_waits_for() -> None:
    overlay = overlay_from_events(_waits_run())
    assert overlay["hold_room"].status == "completed"
    assert overlay["hold_room"].waited_ms == 15 * 60 * 1000
    assert overlay["charge_card"].status == "waiting"
    assert overlay["charge_card"].waiting_for == "for its callback"
    wait = overlay["payment_confirmed"]
    assert (wait.status, wait.waiting_for) == ("waiting", "for signal payment_confirmed")
    assert overlay["reserve_stock"].child_run_id == "child_42"
    mermaid = render_mermaid(plan_of(WAITS), overlay)
    assert "waiting · for signal payment_confirmed" in mermaid
    assert "completed · waited 15m" in mermaid
    assert "child run child_42" in mermaid
    dot = render_dot(plan_of(WAITS), overlay)
    assert 'href="sagac-report-child_42.html"' in dot  # the call links to its child's report
    assert 'href="called/reserve.yaml"' not in dot


def test_a_switch_shows_the_case_taken_and_dims_the_others() -> None:
    events = [
        {"type": "case_chosen", "seq": 1, "step": "route", "case": 1},
        {"type": "step_started", "seq": 2, "step": "book_freight", "attempt": 1},
        {"type": "step_completed", "seq": 3, "step": "book_freight", "attempt": 1},
        {"type": "case_chosen", "seq": 4, "step": "notify", "case": None},
        {"type": "step_completed", "seq": 5, "step": "notify", "attempt": 1},
    ]
    overlay = overlay_from_events(events)
    assert overlay["route"].case_chosen and overlay["route"].case == 1
    assert overlay["route"].status == "running"
    mermaid = render_mermaid(plan_of(WAITS), overlay)
    assert "running · took case 1" in mermaid
    assert "completed · nothing ran" in mermaid
    skipped = re.search(r"^  class (\S+) st_skipped$", mermaid, re.M)
    assert skipped is not None
    # The cases not taken are drawn skipped; the taken case's next step is still to run.
    assert set(skipped.group(1).split(",")) == {
        "s_book_courier",
        "c_book_courier",
        "s_book_post",
        "s_text_customer",
        "legend_st_skipped",
    }
    assert "s_label_freight" in re.search(r"^  class (\S+) st_pending$", mermaid, re.M).group(1)  # type: ignore[union-attr]
    plain = overlay_from_events([{"type": "case_chosen", "seq": 1, "step": "route", "case": "x"}])
    assert not plain["route"].case_chosen  # not a case: ignored
