"""foreach in-process: failures at a known item, `continue`, rate limits, LIFO compensation,
per-item retries and timeouts, keys, cursors that survive a reordered input, and presets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sagac.compiler import ir
from sagac.runtime.api import aresume, arun
from sagac.runtime.clock import FakeClock
from sagac.runtime.store.memory import MemoryStore

import sagac

from .batch_support import calls, completed_in_journal, foreach_saga, make_plan


class Events(list[dict[str, Any]]):
    def __call__(self, event: dict[str, Any]) -> None:
        self.append(event)

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self if e["type"] == type_]


def run(plan: Any, items: list[Any], **kw: Any) -> tuple[sagac.RunReport, Events]:
    events = Events()
    report = sagac.run(plan, {"items": items}, on_event=events, run_id="r1", **kw)
    return report, events


def test_failure_at_a_known_item_of_10000(tmp_path):
    plan, mod = make_plan(tmp_path, foreach_saga())
    mod.FAIL.add(7345)
    report, events = run(plan, list(range(10_000)))
    assert report.status == "compensated"
    f = report.failure
    assert (f.step, f.code, f.item_index) == ("each", "BATCH_ITEM_FAILED", 7345)
    assert f.detail["batch_number"] == 74  # items 7300..7399
    assert f.detail["cursor"] == "n-7345" and f.detail["cause"]["code"] == "LOCKED"
    assert [(e.item_index, e.code) for e in report.errors] == [(7345, "LOCKED")]
    failed = [e for e in events.of("step_failed") if e.get("item_index") == 7345]
    assert failed[0]["cursor"] == "n-7345" and failed[0]["batch"] == 74
    started = calls(mod)
    assert max(started) < 7400  # nothing after the failing batch started
    assert len(started) == len(set(started))  # nobody twice
    # Every completion is journaled, in batches: far fewer events than items.
    done = completed_in_journal(events)
    assert set(range(7300)) <= set(done) and 7345 not in done
    forward = events[: events.index(events.of("saga_compensating")[0])]
    assert len(forward) < 100  # 74 checkpoints for 7,400 items
    # Compensation: every completed item once, in reverse order of completion.
    undone = [c.item_index for c in report.compensations]
    assert undone == list(reversed(done))
    assert sorted(calls(mod, "undo")) == sorted(done)
    # The default per-item key is <run id>:<node id>:<cursor>.
    keys = {entry[1]: entry[3] for entry in mod.LOG if entry[0] == "start"}
    assert keys[0] == "r1:each:n-0" and keys[7345] == "r1:each:n-7345"


def test_stop_cancels_the_batch_in_flight_items_and_undoes_those_that_completed(tmp_path):
    plan, mod = make_plan(tmp_path, foreach_saga(batch="{size: 8, concurrency: 4}"))
    mod.FAIL.add(9)
    mod.SLOW.update({10, 11})  # in flight when item 9 fails: cancelled
    report, events = run(plan, list(range(20)))
    assert report.failure.item_index == 9 and report.failure.detail["batch_number"] == 2
    cancelled = {e["item_index"] for e in events.of("step_failed") if e.get("cancelled")}
    assert cancelled == {10, 11}
    assert not [n for n in calls(mod) if n >= 16]
    done = completed_in_journal(events)
    assert [c.item_index for c in report.compensations] == list(reversed(done))
    assert not cancelled & set(done)


def test_continue_collects_every_failure(tmp_path):
    plan, mod = make_plan(tmp_path, foreach_saga(on_error="continue"))
    bad = set(range(0, 3000, 97))
    mod.FAIL.update(bad)
    report, events = run(plan, list(range(3000)))
    assert sorted(calls(mod)) == list(range(3000))
    assert sorted(e.item_index for e in report.errors) == sorted(bad)
    assert all(e.code == "LOCKED" and e.step == "each" for e in report.errors)
    f = report.failure
    assert f.code == "BATCH_ITEM_FAILED" and f.detail["failed"] == len(bad) == 31
    assert f.detail["item_index"] == 0 and f.detail["total"] == 3000
    last = events.of("batch_progress")[-1]
    assert (last["processed"], last["failed"], last["percent"]) == (3000, 31, 100.0)
    assert len(report.compensations) == 3000 - 31


def test_continue_that_succeeds_reports_the_summary(tmp_path):
    plan, _ = make_plan(tmp_path, foreach_saga(on_error="continue", compensate=None))
    report, events = run(plan, list(range(500)))
    assert report.status == "succeeded"
    done = [e for e in events.of("step_completed") if e["step"] == "each"]
    assert done[-1]["result"] == {"total": 500, "succeeded": 500, "failed": 0}


def test_delay_and_concurrency_are_honoured(tmp_path):
    plan, mod = make_plan(
        tmp_path, foreach_saga(batch="{size: 10, concurrency: 3, delay: 50ms}", compensate=None)
    )
    report, events = run(plan, list(range(40)))
    assert report.status == "succeeded"
    assert mod.IN_FLIGHT[1] == 3
    times: dict[int, dict[str, float]] = {}
    for kind, n, at, *_ in mod.LOG:
        times.setdefault(n, {})[kind] = at
    for b in range(3):
        ended = max(times[n]["end"] for n in range(b * 10, b * 10 + 10))
        started = min(times[n]["start"] for n in range(b * 10 + 10, b * 10 + 20))
        assert started - ended >= 0.049, f"gap after batch {b + 1}: {started - ended:.4f}s"
    assert [e["batch"] for e in events.of("batch_progress")] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("preset", "shape"),
    [("conservative", (20, 3, 0.05)), ("balanced", (50, 5, 0.01)), ("aggressive", (100, 10, 0.0))],
)
def test_presets(tmp_path, preset, shape):
    plan, mod = make_plan(tmp_path, foreach_saga(batch=f"{{preset: {preset}}}", compensate=None))
    node = next(n for n in plan.definition.walk() if isinstance(n, ir.ForeachNode))
    assert (node.batch.size, node.batch.concurrency, node.batch.delay) == shape
    clock = FakeClock()
    report, _ = run(plan, list(range(250)), clock=clock)
    assert report.status == "succeeded"
    assert mod.IN_FLIGHT[1] == shape[1]
    batches = -(-250 // shape[0])
    assert clock.sleeps == ([shape[2]] * (batches - 1) if shape[2] else [])


def test_items_are_retried_and_timed_out_like_steps(tmp_path):
    extra = """
    retry: {max_attempts: 3, initial_delay: 10ms, jitter: none}
    timeout: 200ms
    """
    plan, mod = make_plan(tmp_path, foreach_saga(on_error="continue", extra=extra))
    mod.FLAKY[3] = 2  # fails twice, then succeeds
    mod.SLOW.add(5)
    mod.PAUSE = 5.0  # longer than the timeout, every attempt
    report, events = run(plan, list(range(10)))
    retries = [e for e in events.of("step_retrying") if e.get("item_index") == 3]
    assert [(e["attempt"], e["cursor"], e["error"]["code"]) for e in retries] == [
        (1, "n-3", "UNAVAILABLE"),
        (2, "n-3", "UNAVAILABLE"),
    ]
    attempts3 = [entry for entry in mod.LOG if entry[0] == "start" and entry[1] == 3]
    assert {entry[3] for entry in attempts3} == {"r1:each:n-3"}  # one key for every attempt
    assert [(e.item_index, e.code) for e in report.errors] == [(5, "TIMEOUT")]
    assert 3 in completed_in_journal(events)


def test_compensation_reads_kept_results_from_the_journal(tmp_path):
    comp = "{action: unitem, with: {n: '{{ it }}', row: '{{ result.row }}'}}"
    plan, mod = make_plan(tmp_path, foreach_saga(compensate=comp, extra="keep: [row]"))
    mod.FAIL.add(150)
    _report, events = run(plan, list(range(200)))
    progress = [e for e in events.of("batch_progress") if e.get("completed")]
    assert progress[0]["results"][0] == {"row": f"row-{progress[0]['completed'][0]}"}
    undone = {entry[1]: entry[3] for entry in mod.LOG if entry[0] == "undo"}
    assert undone and all(row == f"row-{n}" for n, row in undone.items())
    # Without `result` in the compensation, no results are journaled (cursors only).
    plan2, _mod2 = make_plan(tmp_path, foreach_saga(extra="keep: [row]"))
    _, events2 = run(plan2, list(range(200)))
    assert not [e for e in events2.of("batch_progress") if "results" in e]


async def crash_after(plan: Any, data: Any, store: MemoryStore, batch: int) -> None:
    """Run until batch `batch` is checkpointed, then cancel the run from outside, as if its
    process died (nothing more is journaled)."""
    task: asyncio.Task[Any] | None = None

    def on_event(event: dict[str, Any]) -> None:
        if task is not None and event["type"] == "batch_progress" and event["batch"] == batch:
            task.cancel()

    task = asyncio.ensure_future(arun(plan, data, store=store, run_id="r1", on_event=on_event))
    with pytest.raises(asyncio.CancelledError):
        await task


def test_resume_skips_checkpointed_items_by_cursor_even_when_the_items_are_reordered(tmp_path):
    plan, mod = make_plan(tmp_path, foreach_saga(batch="{size: 10, concurrency: 2}"))
    store = MemoryStore()
    asyncio.run(crash_after(plan, {"items": list(range(100))}, store, 3))
    first = calls(mod)
    assert set(first) == set(range(30))
    # The same saga reading its items in the opposite order (a changed definition, forced).
    path2 = tmp_path / "reversed.yaml"
    path2.write_text(
        plan_text(plan).replace('"{{ input.items }}"', '"{{ input.items | reverse | list }}"')
    )
    plan2 = sagac.load(path2)
    mod.LOG.clear()
    report = asyncio.run(aresume(plan2, "r1", store, force=True))
    assert report.status == "succeeded"
    assert sorted(calls(mod)) == list(range(30, 100))  # by cursor: nothing done runs again


def plan_text(plan: Any) -> str:
    return Path(plan.file).read_text()


def test_compensation_after_a_resume_covers_items_done_before_it_lifo(tmp_path):
    plan, mod = make_plan(tmp_path, foreach_saga(batch="{size: 10, concurrency: 3}"))
    mod.FAIL.add(55)
    store = MemoryStore()
    asyncio.run(crash_after(plan, {"items": list(range(80))}, store, 2))
    events = Events()
    report = asyncio.run(aresume(plan, "r1", store, on_event=events))
    assert report.status == "compensated" and report.failure.item_index == 55
    journal = asyncio.run(store.load_events("r1"))
    done = completed_in_journal(journal)
    assert set(range(20)) <= set(done)  # completed before the "crash"
    undone = [c.item_index for c in report.compensations]
    assert undone == list(reversed(done))
    assert sorted(calls(mod, "undo")) == sorted(done)  # each exactly once
