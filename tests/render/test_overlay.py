"""Run overlays: spec events fold into NodeRuns, and every renderer colours nodes by them."""

from __future__ import annotations

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
