"""`switch` at run time: which case runs, what the node's result and `case` are, what is
compensated, a gate inside a case, and a resume after a crash that takes the journaled case."""
# ruff: noqa: E501  (YAML sagas inline: long lines read better than split flow mappings)

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from durable.durable_support import SAGAS, Driver
from sagac.runtime import resume as runs
from sagac.runtime.store.sqlite import SqliteStore

from .fixtures_sagas import SagaFactory, run

ACTIONS = """
def work(name, fail=None):
    record("do", step=name)
    if fail:
        raise StepError(fail, f"{name} failed")
    return {"name": name}

def undo(name):
    record("undo", step=name)
    return {}
"""

SAGA = """
saga: sw
input: {type: object}
actions:
  work: {python: "MOD:work"}
  undo: {python: "MOD:undo"}
steps:
  - id: first
    action: work
    with: {name: first}
    compensate: {action: undo, with: {name: first}}
  - switch:
      id: route
      cases:
        - when: "{{ input.express }}"
          steps:
            - {id: courier, action: work, with: {name: courier}, compensate: {action: undo, with: {name: courier}}}
            - {id: courier_label, action: work, with: {name: courier_label}, compensate: {action: undo, with: {name: courier_label}}}
        - when: "{{ input.weight > 30 }}"
          steps: [{id: freight, action: work, with: {name: freight}, compensate: {action: undo, with: {name: freight}}}]
      DEFAULT
  - id: last
    action: work
    with: {name: last, fail: "{{ input.fail | default(None) }}"}
output:
  case: "{{ steps.route.case }}"
  result: "{{ steps.route.result }}"
"""
DEFAULT = "default: [{id: post, action: work, with: {name: post}, compensate: {action: undo, with: {name: post}}}]"


def _saga(default: bool = True) -> str:
    return SAGA.replace("DEFAULT", DEFAULT if default else "")


@pytest.fixture
def factory(tmp_path: Path) -> SagaFactory:
    return SagaFactory(tmp_path)


def _done(log: list[Any]) -> list[str]:
    return [f["step"] for name, f in log if name == "do"]


@pytest.mark.parametrize(
    ("data", "case", "taken", "result"),
    [
        (
            {"express": True, "weight": 50},
            0,
            ["courier", "courier_label"],
            {"name": "courier_label"},
        ),
        ({"express": False, "weight": 50}, 1, ["freight"], {"name": "freight"}),
        ({"express": False, "weight": 1}, "default", ["post"], {"name": "post"}),
    ],
)
def test_the_first_case_that_holds_runs_and_the_node_reports_it(
    factory: SagaFactory, data: dict[str, Any], case: Any, taken: list[str], result: Any
) -> None:
    plan, mod = factory.plan(_saga(), ACTIONS)
    report, rec = run(plan, data)
    assert report.status == "succeeded", report.errors
    assert _done(mod.LOG) == ["first", *taken, "last"]
    assert report.output == {"case": case, "result": result}
    assert [e["case"] for e in rec.of("case_chosen")] == [case]
    chosen = rec.of("case_chosen")[0]
    completed = [e for e in rec.of("step_completed") if e["step"] == "route"]
    assert chosen["seq"] < rec.of("step_completed")[1]["seq"]  # chosen before the case ran
    assert [e["result"] for e in completed] == [result]


def test_without_default_and_no_case_holding_nothing_runs(factory: SagaFactory) -> None:
    plan, mod = factory.plan(_saga(default=False), ACTIONS)
    report, rec = run(plan, {"express": False, "weight": 1})
    assert report.status == "succeeded", report.errors
    assert _done(mod.LOG) == ["first", "last"]
    assert report.output == {"case": None, "result": None}
    assert [e["case"] for e in rec.of("case_chosen")] == [None]


def test_a_when_that_cannot_render_fails_the_node(factory: SagaFactory) -> None:
    plan, mod = factory.plan(_saga(), ACTIONS)
    report, rec = run(plan, {"express": False, "weight": "heavy"})  # str > int: a TypeError
    assert report.status == "compensated"
    assert report.failure is not None
    assert (report.failure.step, report.failure.code) == ("route", "TEMPLATE_ERROR")
    assert _done(mod.LOG) == ["first"]
    assert rec.of("case_chosen") == []
    assert [f["step"] for name, f in mod.LOG if name == "undo"] == ["first"]


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_only_the_steps_that_ran_are_compensated_in_lifo_order(
    factory: SagaFactory, mode: str
) -> None:
    plan, mod = factory.plan(
        _saga().replace("saga: sw\n", f"saga: sw\ncompensation: {mode}\n"), ACTIONS
    )
    report, _ = run(plan, {"express": True, "weight": 50, "fail": "BOOM"})
    assert report.status == "compensated"
    assert report.failure is not None and report.failure.step == "last"
    undone = [f["step"] for name, f in mod.LOG if name == "undo"]
    assert undone == ["courier_label", "courier", "first"]


def test_a_failure_inside_the_case_fails_the_switch_and_compensates(factory: SagaFactory) -> None:
    text = _saga().replace(
        "{id: freight, action: work, with: {name: freight}",
        "{id: freight, action: work, with: {name: freight, fail: NOPE}",
    )
    plan, mod = factory.plan(text, ACTIONS)
    report, rec = run(plan, {"express": False, "weight": 50})
    assert report.status == "compensated"
    assert report.failure is not None and report.failure.step == "freight"
    failed = [e for e in rec.of("step_failed") if e["step"] == "route"]
    assert failed and failed[0]["propagated"] and failed[0]["error"]["cause_step"] == "freight"
    assert [f["step"] for name, f in mod.LOG if name == "undo"] == ["first"]


GATED = """
saga: swg
input: {type: object}
actions:
  work: {python: "MOD:work"}
  undo: {python: "MOD:undo"}
steps:
  - switch:
      id: route
      cases:
        - when: "{{ input.big }}"
          steps:
            - {id: hold, action: work, with: {name: hold}, compensate: {action: undo, with: {name: hold}}}
            - approval: {id: sign_off, approvers: [alice]}
            - {id: ship, action: work, with: {name: ship}}
      default: [{id: post, action: work, with: {name: post}}]
output: {case: "{{ steps.route.case }}", last: "{{ steps.route.result }}"}
"""


def test_a_gate_inside_a_case_parks_the_run_and_the_resume_finishes_the_case(
    factory: SagaFactory, tmp_path: Path
) -> None:
    plan, mod = factory.plan(GATED, ACTIONS)

    async def go() -> tuple[Any, Any, list[str]]:
        store = SqliteStore(tmp_path / "gate.db")
        try:
            first = await runs.start(plan, {"big": True}, store=store, run_id="g")
            from sagac.runtime import approvals

            token = first.approval_tokens["sign_off"]
            await approvals.decide(store, "g", "sign_off", approved=True, by="alice", token=token)
            second = await runs.resume("g", store=store)
            types = [e["type"] for e in await store.load_events("g")]
            return first, second, types
        finally:
            await store.close()

    first, second, types = asyncio.run(go())
    assert first.status == "waiting_approval"
    assert second.status == "succeeded", second.errors
    assert second.output == {"case": 0, "last": {"name": "ship"}}
    assert _done(mod.LOG) == ["hold", "ship"]
    assert types.count("case_chosen") == 1


CRASH = """
saga: swc
input: {type: object}
env: [ROUTE]
actions:
  charge: {python: "ledger_shop:charge"}
  reserve: {python: "ledger_shop:reserve"}
  ship: {python: "ledger_shop:ship"}
steps:
  - switch:
      id: route
      cases:
        - when: "{{ env.ROUTE == 'a' }}"
          steps:
            - {id: a1, action: charge, with: {order_id: o}, idempotency_key: a1}
            - {id: a2, action: reserve, with: {order_id: o}, idempotency_key: a2}
      default: [{id: b1, action: ship, with: {order_id: o}, idempotency_key: b1}]
output: {case: "{{ steps.route.case }}"}
"""


def test_a_resume_after_a_crash_takes_the_journaled_case(tmp_path: Path, monkeypatch: Any) -> None:
    """Killed (SIGKILL, at a journal write) after the case was chosen: the resume runs the
    same case even though its `when` would now choose another."""
    import shutil

    shutil.copy(SAGAS / "ledger_shop.py", tmp_path / "ledger_shop.py")
    saga = tmp_path / "swc.yaml"
    saga.write_text(CRASH)
    driver = Driver()
    try:
        for kill_at in range(2, 8):  # from case_chosen to the switch's step_completed
            db, ledger = tmp_path / f"{kill_at}.db", tmp_path / f"{kill_at}.ledger"
            answer = driver.run(
                db=str(db), saga=str(saga), input={}, run_id="r", kill_at=kill_at,
                env={"ROUTE": "a", "SAGAC_TEST_LEDGER": str(ledger)},
            )  # fmt: skip
            assert answer["signal"] == signal.SIGKILL, answer
            monkeypatch.setenv("ROUTE", "b")
            monkeypatch.setenv("SAGAC_TEST_LEDGER", str(ledger))

            async def go(db: Path = db) -> tuple[Any, list[dict[str, Any]]]:
                store = SqliteStore(db)
                try:
                    report = await runs.resume("r", store=store)
                    return report, await store.load_events("r")
                finally:
                    await store.close()

            report, events = asyncio.run(go())
            assert report.status == "succeeded", (kill_at, report.errors)
            assert report.output == {"case": 0}, kill_at
            lines = [json.loads(x) for x in ledger.read_text().splitlines()]
            assert [x["action"] for x in lines if x["effective"]] == ["charge", "reserve"]
            assert [e["case"] for e in events if e["type"] == "case_chosen"] == [0]
    finally:
        driver.close()
