"""`call` in PostgreSQL (the session's throw-away server): a child run's output as the call's
result, and a parent failing after its child undoing the child in its LIFO place."""

from __future__ import annotations

from pathlib import Path

from throwaway_pg import PgServer

from .support import checkout, ledger_lines


def test_a_call_succeeds_in_postgres_with_both_runs_linked(
    pg_server: PgServer, ledger: Path
) -> None:
    runs = checkout(pg_server.database(), {"order_id": "o"})
    assert runs.report.status == "succeeded"
    assert runs.report.output == {"reservation": {"held": "hold-o-hold", "picked": "pick-o-pick"}}
    assert runs.child is not None
    assert (runs.child.status, runs.child.parent_run_id, runs.child.parent_step) == (
        "succeeded",
        runs.parent.run_id,
        "reserve_stock",
    )


def test_a_parent_failing_in_postgres_undoes_its_child_across_the_boundary(
    pg_server: PgServer, ledger: Path
) -> None:
    runs = checkout(pg_server.database(), {"order_id": "o", "fail_ship": True})
    assert runs.report.status == "compensated"
    assert runs.child is not None and runs.child.status == "compensated"
    undone = [e["type"] for e in runs.child_events if e["type"].startswith("compensation_")]
    assert undone == ["compensation_started", "compensation_completed"] * 2
    assert [a for a, _ in ledger_lines(ledger)] == [
        "charge", "hold", "pick", "unpick", "unhold", "refund",
    ]  # fmt: skip
