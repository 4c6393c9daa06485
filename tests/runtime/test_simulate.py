"""`--simulate`: a step's declared `simulate:` result (templates, with `args`) stands in for its
action; a template that fails on a simulated `{}` says how to declare one; and a simulated run
stays simulated when it is resumed (after an approval gate), so no real action is ever called."""

from __future__ import annotations

import asyncio

from sagac.runtime import approvals
from sagac.runtime import resume as durable
from sagac.runtime.store.sqlite import SqliteStore

from .fixtures_sagas import SagaFactory, run

SAGA = """
saga: simulated
actions:
  quote: {python: "MOD:quote"}
  pay: {python: "MOD:pay"}
steps:
  - id: quote
    action: quote
    with: {requested: 1500}
    simulate: {amount: "{{ args.requested }}", currency: EUR}
GATE
  - id: pay
    action: pay
    with: {amount: "{{ steps.quote.result.amount }}"}
output: {amount: "{{ steps.quote.result.amount }}"}
"""
GATED = SAGA.replace(
    "GATE\n",
    """  - approval:
      id: check
      when: "{{ steps.quote.result.amount > 1000 }}"
      approvers: [alice]
""",
)
SAGA = SAGA.replace("GATE\n", "")

ACTIONS = """
def quote(requested):
    record("quote")
    return {"amount": requested, "currency": "EUR"}

def pay(amount):
    record("pay")
    return {"id": "p1"}
"""


def test_a_declared_result_stands_in_for_the_action(tmp_path):
    plan, mod = SagaFactory(tmp_path).plan(SAGA, ACTIONS)
    report, rec = run(plan, simulate=True)
    assert report.status == "succeeded" and report.output == {"amount": 1500}
    assert mod.LOG == []
    assert rec.of("saga_started")[0]["simulate"] is True


def test_a_template_failing_on_a_simulated_result_says_what_to_declare(tmp_path):
    saga = GATED.replace('    simulate: {amount: "{{ args.requested }}", currency: EUR}\n', "")
    plan, mod = SagaFactory(tmp_path).plan(saga, ACTIONS)
    report, _ = run(plan, simulate=True)
    assert report.failure is not None and report.failure.code == "TEMPLATE_ERROR"
    assert "`simulate: {ok: true}`" in report.failure.message
    assert mod.LOG == []


def test_a_simulated_run_is_still_simulated_after_its_gate(tmp_path):
    plan, mod = SagaFactory(tmp_path).plan(GATED, ACTIONS)

    async def go():
        store = SqliteStore(tmp_path / "j.db")
        try:
            first = await durable.start(plan, {}, store=store, simulate=True, fail=["pay=DOWN"])
            assert first.status == "waiting_approval"
            token = first.approval_tokens["check"]
            await approvals.decide(
                store, first.run_id, "check", approved=True, by="alice", token=token
            )
            return await durable.resume(first.run_id, store=store, plan=plan)
        finally:
            await store.close()

    report = asyncio.run(go())
    assert mod.LOG == []  # neither quote before the gate nor pay after it was called
    assert report.failure is not None and report.failure.code == "DOWN"  # --fail kept too
