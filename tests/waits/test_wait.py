"""`wait` for a signal: a signal sent early is kept and consumed once, a second one refused,
an invalid or unknown one refused and audited while the run keeps waiting, timeouts fail or
continue, and a resume never consumes a signal twice nor repeats a step."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sagac.runtime.api import arun
from sagac.runtime.resume import resume
from sagac.runtime.signals import send
from sagac.runtime.store import Store

from sagac.errors import InvalidSignalData, SignalAlreadySent, UnknownSignal

from .support import of_type, open_kind, plan_of

PAY = """
saga: pay
steps:
  - id: reserve
    action: {mock: {result: {id: r1}}}
    compensate: {action: {mock: {result: {}}}}
  - sleep: {id: hold, for: 200ms}
  - wait:
      id: paid
      signal: payment_confirmed
      schema: {type: object, required: [payment_id], properties: {payment_id: {type: string}}}
      timeout: 1h
  - {id: ship, action: {mock: {result: {}}}, with: {p: "{{ steps.paid.result.payment_id }}"}}
output: {payment: "{{ steps.paid.result.payment_id }}"}
"""


def _run(kind: str, folder: Path, body: Any) -> None:
    store = open_kind(kind, folder)

    async def go() -> None:
        try:
            await body(store)
        finally:
            if store.shared:
                await store.close()

    asyncio.run(go())


def test_a_signal_sent_before_the_wait_is_kept_and_consumed_once(kind: str, tmp_path: Path) -> None:
    plan = plan_of(PAY, tmp_path)

    async def body(store: Store) -> None:
        report = await arun(plan, {}, store=store, sleep_limit=0)  # parked on the sleep
        run_id = report.run_id
        assert [p.id for p in report.parked] == ["hold"]
        sent = await send(store, run_id, "payment_confirmed", {"payment_id": "P-1"}, by="psp")
        with pytest.raises(SignalAlreadySent):  # one wait on that name: one signal
            await send(store, run_id, "payment_confirmed", {"payment_id": "P-2"}, by="psp")
        await asyncio.sleep(0.25)
        done = await resume(run_id, store=store, sleep_limit=0)
        assert done.status == "succeeded", done.failure
        assert done.output == {"payment": "P-1"}
        events = await store.load_events(run_id)
        ended = of_type(events, "wait_ended")
        assert [(e["step"], e["reason"], e.get("signal_id")) for e in ended] == [
            ("hold", "due", None),
            ("paid", "signal", sent["signal_id"]),
        ]
        [kept] = await store.signals(run_id, "payment_confirmed")
        assert kept["consumed_step"] == "paid"
        again = await resume(run_id, store=store)  # finished: nothing moves
        assert again.status == "succeeded"
        assert len(of_type(await store.load_events(run_id), "wait_ended")) == 2
        audit = [a for a in await store.audit_log(run_id) if a["action"] == "signal"]
        assert [(a["outcome"], a["code"]) for a in audit] == [
            ("accepted", None),
            ("refused", "SIGNAL_ALREADY_SENT"),
        ]

    _run(kind, tmp_path, body)


def test_invalid_and_unknown_signals_are_refused_audited_and_the_run_keeps_waiting(
    kind: str, tmp_path: Path
) -> None:
    plan = plan_of(PAY.replace("for: 200ms", "for: 0s"), tmp_path)

    async def body(store: Store) -> None:
        report = await arun(plan, {}, store=store)
        run_id = report.run_id
        assert report.status == "waiting"
        [parked] = report.parked
        assert (parked.id, parked.kind, parked.signal) == ("paid", "wait", "payment_confirmed")
        before = await store.load_events(run_id)
        with pytest.raises(InvalidSignalData) as bad:
            await send(store, run_id, "payment_confirmed", {"payment_id": 7}, by="psp")
        assert "/payment_id" in bad.value.message and "is not of type" in bad.value.message
        with pytest.raises(UnknownSignal):
            await send(store, run_id, "refund", {}, by="psp")
        assert await store.signals(run_id) == []
        assert await store.load_events(run_id) == before
        assert (await store.get_run(run_id)).status == "waiting"
        audit = [a for a in await store.audit_log(run_id) if a["action"] == "signal"]
        assert [(a["outcome"], a["code"], a["actor"]) for a in audit] == [
            ("refused", "INVALID_SIGNAL_DATA", "psp"),
            ("refused", "UNKNOWN_SIGNAL", "psp"),
        ]
        # The run still takes a valid one.
        await send(store, run_id, "payment_confirmed", {"payment_id": "P-9"}, by="psp")
        done = await resume(run_id, store=store)
        assert done.output == {"payment": "P-9"}

    _run(kind, tmp_path, body)


TIMEOUT = """
saga: late
steps:
  - id: reserve
    action: {mock: {result: {}}}
    compensate: {action: {mock: {result: {}}}}
  - wait: {id: paid, signal: paid, timeout: 300ms, on_timeout: ON}
  - {id: ship, action: {mock: {result: {}}}}
output: {paid: "{{ steps.paid.result }}"}
"""


@pytest.mark.parametrize("on_timeout", ["fail", "continue"])
def test_a_wait_past_its_deadline_fails_or_continues(
    kind: str, tmp_path: Path, on_timeout: str
) -> None:
    plan = plan_of(TIMEOUT.replace("ON", on_timeout), tmp_path)

    async def body(store: Store) -> None:
        report = await arun(plan, {}, store=store)
        assert report.status == "waiting"
        await asyncio.sleep(0.35)
        done = await resume(report.run_id, store=store)
        events = await store.load_events(report.run_id)
        assert [e["reason"] for e in of_type(events, "wait_ended")] == ["timeout"]
        if on_timeout == "fail":
            assert done.status == "compensated"
            assert done.failure is not None
            assert (done.failure.step, done.failure.code) == ("paid", "WAIT_TIMEOUT")
        else:
            assert done.status == "succeeded"
            assert done.output == {"paid": None}

    _run(kind, tmp_path, body)


class Crash(Exception):
    pass


def test_a_crash_after_the_signal_was_consumed_resumes_with_the_same_signal(
    kind: str, tmp_path: Path
) -> None:
    plan = plan_of(PAY.replace("for: 200ms", "for: 0s"), tmp_path)

    async def body(store: Store) -> None:
        report = await arun(plan, {}, store=store)
        run_id = report.run_id
        await send(store, run_id, "payment_confirmed", {"payment_id": "P-1"}, by="psp")

        def crash_after_consuming(event: dict[str, Any]) -> None:
            if event["type"] == "wait_ended" and event["step"] == "paid":
                raise Crash

        with pytest.raises(Crash):
            await resume(run_id, store=store, on_event=crash_after_consuming)
        if store.shared:  # the crashed driver's lease: taken over as a dead process's would be
            lease = await store.get_lease(run_id)
            if lease is not None:
                await store.release_lease(run_id, lease[0])
        done = await resume(run_id, store=store)
        assert done.status == "succeeded"
        assert done.output == {"payment": "P-1"}
        events = await store.load_events(run_id)
        assert len([e for e in of_type(events, "wait_ended") if e["step"] == "paid"]) == 1
        assert len(of_type(events, "step_started")) == 2  # reserve and ship, once each

    _run(kind, tmp_path, body)


TWO = """
saga: two
steps:
  - parallel:
      id: both
      branches:
        - [{wait: {id: first, signal: item}}]
        - [{wait: {id: second, signal: item}}]
output: {got: "{{ steps.both.result }}"}
"""


def test_two_waits_on_one_name_take_one_signal_each(kind: str, tmp_path: Path) -> None:
    plan = plan_of(TWO, tmp_path)

    async def body(store: Store) -> None:
        report = await arun(plan, {}, store=store)
        run_id = report.run_id
        assert report.status == "waiting"
        await send(store, run_id, "item", 1, by="a")
        await send(store, run_id, "item", 2, by="b")
        with pytest.raises(SignalAlreadySent):
            await send(store, run_id, "item", 3, by="c")
        done = await resume(run_id, store=store)
        assert done.status == "succeeded"
        assert sorted(done.output["got"]) == [1, 2]
        ids = [e["signal_id"] for e in of_type(await store.load_events(run_id), "wait_ended")]
        assert len(set(ids)) == 2

    _run(kind, tmp_path, body)
