"""`call` at run time: the child run, its result, its failure, undoing it across the boundary,
parking with it, in the memory and SQLite stores (docs/language.md, `call`)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from sagac.runtime import approvals
from sagac.runtime import resume as durable
from sagac.runtime.store.base import Store

from .support import SAGAS, Runs, checkout, ledger_lines, types

COMPENSATION = ("compensation_started", "compensation_completed", "compensation_failed")
DONE = [("charge", "o-charge"), ("hold", "o-hold"), ("pick", "o-pick")]


def test_the_childs_output_is_the_calls_result_and_both_runs_are_linked(
    store_url: str, ledger: Path
) -> None:
    runs = checkout(store_url, {"order_id": "o"})
    assert runs.report.status == "succeeded"
    assert runs.report.output == {"reservation": {"held": "hold-o-hold", "picked": "pick-o-pick"}}
    child = runs.child
    assert child is not None and [c.run_id for c in runs.children] == [child.run_id]
    assert (child.saga, child.status, child.parent_run_id, child.parent_step) == (
        "reserve",
        "succeeded",
        runs.parent.run_id,
        "reserve_stock",
    )
    started = [e for e in runs.parent_events if e["type"] == "call_started"]
    assert [(e["step"], e["child_run_id"], e["saga"]) for e in started] == [
        ("reserve_stock", child.run_id, "reserve")
    ]
    assert runs.report.children == {"reserve_stock": child.run_id}
    assert ledger_lines(ledger) == [*DONE, ("ship", "o-ship")]


def test_a_failed_child_compensates_itself_once_and_fails_the_call_with_its_path(
    store_url: str, ledger: Path
) -> None:
    runs = checkout(store_url, {"order_id": "o", "fail_pick": True})
    report = runs.report
    assert report.status == "compensated"
    assert report.failure is not None
    assert (report.failure.step, report.failure.code) == ("reserve_stock/pick", "PICK_FAILED")
    assert [(e.step, e.code, e.phase) for e in report.errors] == [
        ("reserve_stock/pick", "PICK_FAILED", "run")
    ]
    assert runs.child is not None and runs.child.status == "compensated"
    assert types(runs.child_events, *COMPENSATION) == [
        ("compensation_started", "hold"),
        ("compensation_completed", "hold"),
    ]
    assert types(runs.parent_events, *COMPENSATION) == [
        ("compensation_started", "charge"),
        ("compensation_completed", "charge"),
    ]
    assert ledger_lines(ledger) == [*DONE[:2], ("unhold", "o-unhold"), ("refund", "o-refund")]


def test_a_parent_failing_after_its_child_undoes_the_child_in_its_lifo_place(
    store_url: str, ledger: Path
) -> None:
    runs = checkout(store_url, {"order_id": "o", "fail_ship": True})
    assert runs.report.status == "compensated"
    assert [(c.step, c.status) for c in runs.report.compensations] == [
        ("reserve_stock", "ok"),
        ("charge", "ok"),
    ]
    assert runs.child is not None and runs.child.status == "compensated"
    (undoing,) = [e for e in runs.child_events if e["type"] == "saga_compensating"]
    assert undoing["failure"]["code"] == "PARENT_FAILED"
    assert runs.child_events[-1]["type"] == "saga_failed"
    assert runs.child_events[-1]["status"] == "compensated"
    assert ledger_lines(ledger) == [
        *DONE,
        ("unpick", "o-unpick"),
        ("unhold", "o-unhold"),
        ("refund", "o-refund"),
    ]


def global_compensation_order(db: Path, runs: Runs) -> list[tuple[str, str, str]]:
    """Every compensation event of both runs, in the order they were written to the file."""
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT run_id, body FROM events ORDER BY id").fetchall()
    out = []
    for run_id, body in rows:
        e = json.loads(body)
        if e["type"] in COMPENSATION:
            out.append(
                ("parent" if run_id == runs.parent.run_id else "child", e["type"], e["step"])
            )
    return out


def test_the_global_order_of_compensations_across_both_journals(
    tmp_path: Path, ledger: Path
) -> None:
    db = tmp_path / "journal.db"
    runs = checkout(f"sqlite:///{db}", {"order_id": "o", "fail_ship": True})
    assert global_compensation_order(db, runs) == [
        ("parent", "compensation_started", "reserve_stock"),
        ("child", "compensation_started", "pick"),
        ("child", "compensation_completed", "pick"),
        ("child", "compensation_started", "hold"),
        ("child", "compensation_completed", "hold"),
        ("parent", "compensation_completed", "reserve_stock"),
        ("parent", "compensation_started", "charge"),
        ("parent", "compensation_completed", "charge"),
    ]


def test_a_failing_child_undo_makes_the_parent_compensation_failed_naming_its_step(
    store_url: str, ledger: Path
) -> None:
    runs = checkout(store_url, {"order_id": "o", "fail_ship": True, "fail_unpick": True})
    report = runs.report
    assert report.status == "compensation_failed"
    assert report.needs_attention == ["reserve_stock/pick"]
    assert [(c.step, c.status) for c in report.compensations] == [
        ("reserve_stock/pick", "failed"),
        ("charge", "ok"),
    ]
    assert ("reserve_stock/pick", "UNPICK_FAILED", "compensation") in [
        (e.step, e.code, e.phase) for e in report.errors
    ]
    assert runs.child is not None and runs.child.status == "compensation_failed"
    assert ledger_lines(ledger) == [*DONE, ("unhold", "o-unhold"), ("refund", "o-refund")]


def test_a_child_at_an_approval_gate_parks_both_until_a_decision_and_a_resume(
    store_url: str, ledger: Path
) -> None:
    seen: dict[str, Any] = {}

    async def decide(store: Store, runs: Runs) -> Any:
        assert runs.child is not None
        seen["statuses"] = (runs.report.status, runs.parent.status, runs.child.status)
        seen["exit"] = runs.report.exit_code
        seen["waiting"] = [g.id for g in runs.report.waiting]
        token = runs.report.approval_tokens["reserve_stock/manager"]
        again = await durable.resume(runs.parent.run_id, store=store)  # no decision yet
        seen["again"] = again.status
        # The parent's `CALL/GATE` is the child's gate.
        await approvals.decide(
            store, runs.parent.run_id, "reserve_stock/manager", approved=True, by="alice",
            token=token,
        )  # fmt: skip
        return await durable.resume(runs.parent.run_id, store=store)

    runs = checkout(store_url, {"order_id": "o", "gate": True}, decide)
    assert seen == {
        "statuses": ("waiting_approval", "waiting_approval", "waiting_approval"),
        "exit": 3,
        "waiting": ["reserve_stock/manager"],
        "again": "waiting_approval",
    }
    assert runs.report.status == "succeeded"
    assert runs.child is not None and runs.child.status == "succeeded"
    assert ledger_lines(ledger) == [*DONE, ("ship", "o-ship")]


def test_a_saga_timeout_while_the_child_runs_has_the_child_undo_itself(
    store_url: str, ledger: Path
) -> None:
    runs = checkout(store_url, {"order_id": "o"}, saga=SAGAS / "checkout_in_time.yaml")
    report = runs.report
    assert report.status == "compensated"
    assert report.failure is not None and report.failure.code == "SAGA_TIMEOUT"
    assert runs.child is not None and runs.child.status == "compensated"
    (undoing,) = [e for e in runs.child_events if e["type"] == "saga_compensating"]
    assert undoing["failure"]["code"] == "PARENT_FAILED"
    assert [(c.step, c.status) for c in report.compensations] == [("charge", "ok")]
    assert ledger_lines(ledger) == [*DONE[:2], ("unhold", "o-unhold"), ("refund", "o-refund")]


def test_a_with_that_breaks_the_childs_input_schema_fails_the_call_and_makes_no_child(
    store_url: str, ledger: Path
) -> None:
    data = {"order_id": "o", "number": 7}
    runs = checkout(store_url, data, saga=SAGAS / "checkout_by_number.yaml")
    report = runs.report
    assert report.status == "compensated"
    assert report.failure is not None
    assert (report.failure.step, report.failure.code) == ("reserve_stock", "INVALID_INPUT")
    assert "input/order_id: 7 is not of type 'string'" in report.failure.message
    assert runs.children == []
    assert ledger_lines(ledger) == [("charge", "o-charge"), ("refund", "o-refund")]


def test_a_child_parked_on_a_long_sleep_parks_both_until_it_is_due(
    store_url: str, ledger: Path
) -> None:
    seen: dict[str, Any] = {}

    async def later(store: Store, runs: Runs) -> Any:
        assert runs.child is not None
        seen["statuses"] = (runs.report.status, runs.parent.status, runs.child.status)
        seen["parked"] = [(p.id, p.kind) for p in runs.report.parked]
        early = await durable.resume(runs.parent.run_id, store=store, sleep_limit=0)
        seen["early"] = early.status
        seen["ledger"] = len(ledger_lines(ledger))
        await asyncio.sleep(1.1)
        return await durable.resume(runs.parent.run_id, store=store, sleep_limit=0)

    runs = checkout(store_url, {"order_id": "o", "settle": True}, later, sleep_limit=0)
    assert seen == {
        "statuses": ("waiting", "waiting", "waiting"),
        "parked": [("reserve_stock", "call")],
        "early": "waiting",
        "ledger": 2,
    }
    assert runs.report.status == "succeeded"
    assert runs.child is not None and runs.child.status == "succeeded"
    assert ledger_lines(ledger) == [*DONE, ("ship", "o-ship")]


def test_a_parent_cancelled_while_its_child_waits_has_the_child_undo_itself(
    tmp_path: Path, ledger: Path
) -> None:
    async def cancel(store: Store, runs: Runs) -> Any:
        await durable.cancel(store, runs.parent.run_id, by="bob", reason="changed my mind")
        return await durable.resume(runs.parent.run_id, store=store)

    url = f"sqlite:///{tmp_path / 'journal.db'}"
    runs = checkout(url, {"order_id": "o", "gate": True}, cancel)
    assert runs.report.status == "compensated"
    assert runs.report.failure is not None and runs.report.failure.code == "CANCELLED"
    assert [(c.step, c.status) for c in runs.report.compensations] == [
        ("reserve_stock", "ok"),
        ("charge", "ok"),
    ]
    assert runs.child is not None and runs.child.status == "compensated"
    (undoing,) = [e for e in runs.child_events if e["type"] == "saga_compensating"]
    assert undoing["failure"]["code"] == "PARENT_FAILED"
    assert ledger_lines(ledger) == [*DONE[:2], ("unhold", "o-unhold"), ("refund", "o-refund")]


def test_a_simulated_parent_simulates_its_child(store_url: str, ledger: Path) -> None:
    runs = checkout(store_url, {"order_id": "o"}, simulate=True)
    assert runs.report.status == "succeeded"
    assert runs.child is not None and runs.child.status == "succeeded"
    assert runs.child_events[0]["type"] == "saga_started" and runs.child_events[0]["simulate"]
    assert ledger_lines(ledger) == []  # no real action was called, not even in the child
