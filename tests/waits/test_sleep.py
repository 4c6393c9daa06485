"""`sleep`: a durable timer, waited in the run up to the sleep limit, parked beyond it, resumed
with only the time left, and never counted toward the saga's timeout while parked."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sagac.runtime.api import arun
from sagac.runtime.clock import FakeClock, parse_rfc3339, rfc3339
from sagac.runtime.resume import resume
from sagac.runtime.store import Store

from .support import of_type, open_kind, plan_of, types

NAP = """
saga: nap
steps:
  - {id: a, action: {mock: {result: {n: 1}}}}
  - sleep: {id: rest, for: 30s}
  - {id: b, action: {mock: {result: {n: 2}}}}
output: {slept: "{{ steps.rest.result.slept_until }}"}
"""


def test_a_sleep_within_the_limit_is_waited_in_the_run() -> None:
    clock = FakeClock()
    report = asyncio.run(arun(plan_of(NAP), {}, clock=clock))
    assert report.status == "succeeded"
    assert clock.sleeps == [30.0]  # the whole sleep, through the run's clock
    assert report.output == {"slept": rfc3339(clock.start + 30)}


def test_a_longer_sleep_parks_the_run_and_resume_before_due_changes_nothing(
    kind: str, tmp_path: Path
) -> None:
    plan = plan_of(NAP)

    async def go(store: Store) -> None:
        report = await arun(plan, {}, store=store, sleep_limit=10)
        assert (report.status, report.exit_code) == ("waiting", 3)
        assert report.finished_at is None
        [parked] = report.parked
        assert (parked.id, parked.kind) == ("rest", "sleep")
        assert parked.due is not None
        assert abs(parse_rfc3339(parked.due) - (time.time() + 30)) < 5
        events = await store.load_events(report.run_id)
        assert types(events)[-2:] == ["sleep_started", "saga_waiting"]
        assert events[-1]["status"] == "waiting"
        assert events[-1]["wake_at"] == parked.due
        record = await store.get_run(report.run_id)
        assert record.status == "waiting"
        # Not due within the limit: the stored report, nothing written, no lease taken.
        again = await resume(report.run_id, store=store, sleep_limit=10)
        assert again.to_json_dict() == report.to_json_dict()
        assert await store.load_events(report.run_id) == events
        # Due within the limit: waited in the run, with only the time left.
        clock = FakeClock(time.time())
        done = await resume(report.run_id, store=store, sleep_limit=60, clock=clock)
        assert done.status == "succeeded", done
        [left] = clock.sleeps
        assert 20 < left <= 30
        after = await store.load_events(report.run_id)
        assert len(of_type(after, "sleep_started")) == 1  # the due time journaled once
        assert [e["reason"] for e in of_type(after, "wait_ended")] == ["due"]
        assert len(of_type(after, "step_started")) == 2  # a once, b once

    store = open_kind(kind, tmp_path)
    asyncio.run(_closing(store, go(store)))


def test_resume_after_the_due_time_completes_the_sleep_at_once(kind: str, tmp_path: Path) -> None:
    plan = plan_of(NAP.replace("for: 30s", "for: 300ms"))

    async def go(store: Store) -> None:
        report = await arun(plan, {}, store=store, sleep_limit=0)
        assert report.status == "waiting"
        await asyncio.sleep(0.4)
        done = await resume(report.run_id, store=store, sleep_limit=0)
        assert done.status == "succeeded"
        events = await store.load_events(report.run_id)
        rest = [e for e in events if e.get("step") == "rest"]
        assert types(rest) == ["sleep_started", "wait_ended", "step_completed"]
        assert rest[-1]["result"] == {"slept_until": rest[0]["until"]}

    store = open_kind(kind, tmp_path)
    asyncio.run(_closing(store, go(store)))


UNTIL = """
saga: until
input: {type: object}
steps:
  - sleep: {id: ship_day, until: "{{ input.at }}"}
"""


def test_until_in_the_past_does_not_wait_and_without_a_zone_is_a_template_error() -> None:
    plan = plan_of(UNTIL)
    clock = FakeClock()
    report = asyncio.run(arun(plan, {"at": "2001-01-01T00:00:00+01:00"}, clock=clock))
    assert report.status == "succeeded"
    assert clock.sleeps == []
    bad = asyncio.run(arun(plan, {"at": "2030-01-01T00:00:00"}))
    assert bad.status == "failed"
    assert bad.failure is not None
    assert (bad.failure.step, bad.failure.code) == ("ship_day", "TEMPLATE_ERROR")
    assert "with a zone" in bad.failure.message


TIMED = """
saga: timed
timeout: 1s
steps:
  - {id: a, action: {mock: {result: {}}}, compensate: {action: {mock: {result: {}}}}}
  - sleep: {id: rest, for: 1500ms}
  - {id: b, action: {mock: {result: {}}}}
"""


def test_a_saga_timeout_cuts_an_in_process_sleep_short() -> None:
    events: list[dict[str, Any]] = []
    t0 = time.monotonic()
    report = asyncio.run(arun(plan_of(TIMED), {}, on_event=events.append))
    assert report.status == "compensated"
    assert report.failure is not None and report.failure.code == "SAGA_TIMEOUT"
    assert time.monotonic() - t0 < 1.4  # not the whole 1.5 s sleep
    assert [e["reason"] for e in of_type(events, "wait_ended")] == ["cancelled"]


def test_time_parked_does_not_count_toward_the_saga_timeout(kind: str, tmp_path: Path) -> None:
    plan = plan_of(TIMED)

    async def go(store: Store) -> None:
        report = await arun(plan, {}, store=store, sleep_limit=0)
        assert report.status == "waiting"
        await asyncio.sleep(1.6)  # past the saga's 1 s, parked
        done = await resume(report.run_id, store=store, sleep_limit=0)
        assert done.status == "succeeded", done.failure

    store = open_kind(kind, tmp_path)
    asyncio.run(_closing(store, go(store)))


async def _closing(store: Store, coro: Any) -> None:
    try:
        await coro
    finally:
        if store.shared:
            await store.close()
