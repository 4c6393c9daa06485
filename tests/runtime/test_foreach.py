"""foreach: batches, concurrency, per-item compensation in LIFO order, on_error modes."""

from __future__ import annotations

import asyncio

import pytest
from sagac.runtime.api import aresume
from sagac.runtime.clock import FakeClock
from sagac.runtime.store.memory import MemoryStore

from .fixtures_sagas import SagaFactory, run, run_until

ACTIONS = """
IN_FLIGHT = [0, 0]

async def item(n, context=None):
    IN_FLIGHT[0] += 1
    IN_FLIGHT[1] = max(IN_FLIGHT[1], IN_FLIGHT[0])
    record("call", n=n, key=context.idempotency_key, index=context.item_index)
    try:
        await asyncio.sleep(0.002 * (n % 3))
        if n in (13, 17):
            raise StepError("LOCKED", f"item {n} is locked")
        if n == 99:
            await asyncio.sleep(5)
    except asyncio.CancelledError:
        record("cancelled", n=n)
        raise
    finally:
        IN_FLIGHT[0] -= 1
    return {"n": n, "noise": "x"}

async def unitem(n):
    record("undo", n=n)
    return {}
"""


def saga(items: str, on_error: str = "stop", batch: str = "{size: 4, concurrency: 2}") -> str:
    return f"""
saga: f
actions:
  item: {{python: "MOD:item"}}
  unitem: {{python: "MOD:unitem"}}
steps:
  - foreach:
      id: each
      items: "{items}"
      as: it
      action: item
      with: {{n: "{{{{ it }}}}"}}
      idempotency_key: "item-{{{{ it }}}}"
      errors: [LOCKED]
      keep: [n]
      batch: {batch}
      on_error: {on_error}
      compensate: {{action: unitem, with: {{n: "{{{{ result.n }}}}"}}}}
"""


@pytest.fixture
def factory(tmp_path):
    return SagaFactory(tmp_path)


def log(mod, kind):
    return [f["n"] for name, f in mod.LOG if name == kind]


def test_all_items_in_batches_with_bounded_concurrency(factory):
    plan, mod = factory.plan(
        saga("{{ range(10) | list }}", batch="{size: 4, concurrency: 2, delay: 30ms}"), ACTIONS
    )
    clock = FakeClock()
    report, rec = run(plan, clock=clock)
    assert report.status == "succeeded"
    assert sorted(log(mod, "call")) == list(range(10))
    assert mod.IN_FLIGHT[1] == 2
    assert clock.sleeps == pytest.approx([0.03, 0.03])
    progress = rec.of("batch_progress")
    assert [(p["batch"], p["processed"], p["total_batches"]) for p in progress] == [
        (1, 4, 3),
        (2, 8, 3),
        (3, 10, 3),
    ]
    assert progress[-1]["percent"] == 100.0 and progress[-1]["failed"] == 0
    assert rec.of("step_completed")[-1]["result"] == {"total": 10, "succeeded": 10, "failed": 0}
    keys = {f["key"] for name, f in mod.LOG if name == "call"}
    assert keys == {f"item-{i}" for i in range(10)}
    # Completions are journaled per batch (batch_progress), never one step_started per item.
    assert not [e for e in rec.of("step_started") if "item_index" in e]
    assert sum(len(p["completed"]) for p in progress) == 10


def test_stop_cancels_in_flight_items_and_undoes_completed_ones_lifo(factory):
    plan, mod = factory.plan(
        saga("{{ [1, 2, 3, 4, 5, 13, 99, 8] }}", batch="{size: 4, concurrency: 3}"), ACTIONS
    )
    report, rec = run(plan)
    assert report.status == "compensated"
    f = report.failure
    assert (f.step, f.code, f.item_index) == ("each", "BATCH_ITEM_FAILED", 5)
    assert f.detail["batch_number"] == 2 and f.detail["cause"]["code"] == "LOCKED"
    assert 99 in log(mod, "cancelled") and 8 not in log(mod, "call")
    completed = [i for e in rec.of("batch_progress") for i in e.get("completed", ())]
    undone_items = [c.item_index for c in report.compensations]
    assert undone_items == list(reversed(completed))
    assert [(e.step, e.item_index, e.code) for e in report.errors] == [("each", 5, "LOCKED")]


def test_continue_collects_every_item_error(factory):
    plan, mod = factory.plan(saga("{{ range(20) | list }}", on_error="continue"), ACTIONS)
    report, rec = run(plan)
    assert sorted(log(mod, "call")) == list(range(20))
    assert sorted((e.item_index, e.code) for e in report.errors) == [(13, "LOCKED"), (17, "LOCKED")]
    assert report.failure.code == "BATCH_ITEM_FAILED" and report.failure.detail["failed"] == 2
    assert len(report.compensations) == 18
    assert rec.of("batch_progress")[-1]["failed"] == 2


def test_items_must_be_a_list(factory):
    plan, _ = factory.plan(saga("{{ 5 }}"), ACTIONS)
    report, _ = run(plan)
    assert report.failure.code == "TEMPLATE_ERROR"


def test_resume_skips_completed_items(factory):
    plan, mod = factory.plan(
        saga("{{ range(12) | list }}", batch="{size: 4, concurrency: 2}"), ACTIONS
    )
    store = MemoryStore()
    run_id, _ = asyncio.run(
        run_until(plan, {}, store, lambda e: e["type"] == "batch_progress" and e["batch"] == 1)
    )
    first = log(mod, "call")
    assert set(first) >= {0, 1, 2, 3}
    report = asyncio.run(aresume(plan, run_id, store))
    assert report.status == "succeeded"
    calls = log(mod, "call")
    assert set(calls) == set(range(12))
    assert all(calls.count(n) == 1 for n in range(4))  # completed items are never called again
    # Items interrupted by the crash ran again with the same key.
    assert all(f["key"] == f"item-{f['n']}" for name, f in mod.LOG if name == "call")
