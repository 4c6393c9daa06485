"""Callback steps through the API, on the memory and SQLite stores: a result completes the
step, an error is retried by the step's policy and compensated (`on: attempted`), a reused or
late token is refused and audited, a callback that comes before the step parked is taken at
once, and the clear token reaches neither the journal nor the report."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sagac.runtime import resume as durable
from sagac.runtime.approvals import token_hash
from sagac.runtime.store.base import Store

import sagac
from sagac.errors import (
    CallbackLate,
    CallbackNotPending,
    CallbackTokenUsed,
    UnknownCallbackToken,
    UsageError,
)

from .support import HERE, calls, open_store, tokens

Body = Callable[[Store], Awaitable[None]]


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(kind: str, folder: Path, body: Body) -> None:
    async def go() -> None:
        store = open_store(kind, folder)
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(go())


async def events(store: Store, run_id: str) -> list[dict[str, Any]]:
    return await store.load_events(run_id)


def test_a_result_completes_the_step(kind: str, cb_dir: Path) -> None:
    plan = sagac.load(HERE / "pay.yaml")

    async def body(store: Store) -> None:
        first = await sagac.arun(plan, {"amount": 5}, store=store)
        assert (first.status, first.exit_code) == ("waiting", 3)
        (token,) = tokens(cb_dir)
        row = await sagac.acallback(
            store, token, result={"payment_id": "p1", "card": "4242"}, by="psp"
        )
        assert (row["run_id"], row["step"], row["attempt"]) == (first.run_id, "charge", 1)
        done = await durable.resume(first.run_id, store=store, plan=plan)
        assert done.status == "succeeded"
        assert done.output == {"payment": "p1"}
        journal = await events(store, first.run_id)
        issued = next(e for e in journal if e["type"] == "callback_issued")
        assert issued["token_sha256"] == token_hash(token) and issued["deadline"]
        completed = [e for e in journal if e["type"] == "step_completed" and e["step"] == "charge"]
        assert completed[0]["result"] == {"payment_id": "p1"}  # `keep` applies
        ended = [e for e in journal if e["type"] == "wait_ended"]
        assert [(e["reason"], e["attempt"]) for e in ended] == [("callback", 1)]
        assert len(calls(cb_dir, "start_payment")) == 1
        # The clear token: handed to the action, never journaled nor reported.
        seen = json.dumps([journal, first.to_json_dict(), done.to_json_dict()])
        assert token not in seen
        assert token not in json.dumps(await store.audit_log(first.run_id))

    run(kind, cb_dir, body)


def test_an_error_is_retried_with_a_new_token_then_compensated(kind: str, cb_dir: Path) -> None:
    plan = sagac.load(HERE / "pay.yaml")

    async def body(store: Store) -> None:
        first = await sagac.arun(plan, {"amount": 5}, store=store)
        (token1,) = tokens(cb_dir)
        await sagac.acallback(store, token1, error="DECLINED", message="no funds", by="psp")
        again = await durable.resume(first.run_id, store=store, plan=plan)
        assert again.status == "waiting"  # a retry: a new attempt, a new token, waiting again
        token1_, token2 = tokens(cb_dir)
        assert token1_ == token1 and token2 != token1
        assert [c["attempt"] for c in calls(cb_dir, "start_payment")] == [1, 2]
        with pytest.raises(CallbackTokenUsed):
            await sagac.acallback(store, token1, result={"payment_id": "late"}, by="psp")
        await sagac.acallback(store, token2, error="DECLINED", message="still none", by="psp")
        end = await durable.resume(first.run_id, store=store, plan=plan)
        assert end.status == "compensated"
        assert end.failure is not None
        assert (end.failure.step, end.failure.code, end.failure.attempts) == (
            "charge",
            "DECLINED",
            2,
        )
        assert end.failure.message == "still none"
        # `on: attempted`: the failed charge is undone too, before the reservation (LIFO).
        undone = [c for c in calls(cb_dir) if c["action"] in ("refund", "release")]
        assert [c["action"] for c in undone] == ["refund", "release"]
        assert undone[0]["payment"] is None and undone[0]["error"]["code"] == "DECLINED"
        journal = await events(store, first.run_id)
        retrying = [e for e in journal if e["type"] == "step_retrying"]
        assert [e["error"]["code"] for e in retrying] == ["DECLINED"]
        issued = [e["token_sha256"] for e in journal if e["type"] == "callback_issued"]
        assert issued == [token_hash(token1), token_hash(token2)]

    run(kind, cb_dir, body)


def test_a_used_or_unknown_token_is_refused_and_audited(kind: str, cb_dir: Path) -> None:
    plan = sagac.load(HERE / "pay.yaml")

    async def body(store: Store) -> None:
        first = await sagac.arun(plan, {"amount": 5}, store=store)
        (token,) = tokens(cb_dir)
        await sagac.acallback(store, token, result={"payment_id": "p1"}, by="psp")
        with pytest.raises(CallbackTokenUsed) as used:
            await sagac.acallback(store, token, error="DECLINED", by="mallory")
        assert used.value.exit_code == 77
        with pytest.raises(UnknownCallbackToken):
            await sagac.acallback(store, "not-a-token", result=1, by="mallory")
        log = [e for e in await store.audit_log() if e["action"] == "callback"]
        assert [(e["outcome"], e["code"], e["actor"]) for e in log] == [
            ("accepted", None, "psp"),
            ("refused", "CALLBACK_TOKEN_USED", "mallory"),
            ("refused", "UNKNOWN_CALLBACK_TOKEN", "mallory"),
        ]
        assert log[1]["run_id"] == first.run_id and log[2]["run_id"] is None
        assert token not in json.dumps(log)
        # The first outcome stands.
        assert (await durable.resume(first.run_id, store=store, plan=plan)).status == "succeeded"

    run(kind, cb_dir, body)


def test_a_late_token_is_refused_and_the_attempt_times_out(kind: str, cb_dir: Path) -> None:
    plan = sagac.load(HERE / "late.yaml")

    async def body(store: Store) -> None:
        first = await sagac.arun(plan, {}, store=store)
        assert first.status == "waiting"
        (token,) = tokens(cb_dir)
        await asyncio.sleep(0.4)
        with pytest.raises(CallbackLate):
            await sagac.acallback(store, token, result={"payment_id": "p1"}, by="psp")
        log = [e for e in await store.audit_log(first.run_id) if e["action"] == "callback"]
        assert [(e["outcome"], e["code"]) for e in log] == [("refused", "CALLBACK_LATE")]
        end = await durable.resume(first.run_id, store=store, plan=plan)
        assert end.status == "compensated"
        assert end.failure is not None and end.failure.code == "CALLBACK_TIMEOUT"
        ended = [e for e in await events(store, first.run_id) if e["type"] == "wait_ended"]
        assert [(e["reason"], e["attempt"]) for e in ended] == [("timeout", 1)]
        assert len(calls(cb_dir, "start_payment")) == 1

    run(kind, cb_dir, body)


def test_a_callback_before_the_step_parked_is_taken_at_once(kind: str, cb_dir: Path) -> None:
    plan = sagac.load(HERE / "fast.yaml")

    async def body(store: Store) -> None:
        if kind == "memory":
            import cb_provider

            cb_provider.FAST = store  # the same store, as the one process it lives in
        report = await sagac.arun(plan, {"amount": 9}, store=store)
        assert report.status == "succeeded" and report.output == {"payment": "p-9"}
        assert len(calls(cb_dir, "start_payment")) == 1
        journal = await events(store, report.run_id)
        assert not [e for e in journal if e["type"] == "saga_waiting"]
        ended = [e for e in journal if e["type"] == "wait_ended"]
        assert [(e["reason"], e["attempt"]) for e in ended] == [("callback", 1)]

    run(kind, cb_dir, body)


def test_an_outcome_needs_a_result_or_an_upper_case_code(cb_dir: Path) -> None:
    async def body(store: Store) -> None:
        for bad in ({}, {"result": 1, "error": "X"}, {"error": "declined"}, {"error": "1X"}):
            with pytest.raises(UsageError):
                await sagac.acallback(store, "t", **bad)

    run("memory", cb_dir, body)


def test_a_step_still_waiting_when_the_run_fails_is_cancelled_and_undone(
    kind: str, cb_dir: Path
) -> None:
    plan = sagac.load(HERE / "abandon.yaml")

    async def body(store: Store) -> None:
        report = await sagac.arun(plan, {}, store=store)
        assert report.status == "compensated"
        assert report.failure is not None and report.failure.step == "boom"
        (token,) = tokens(cb_dir)
        journal = await events(store, report.run_id)
        ended = [(e["reason"], e["attempt"]) for e in journal if e["type"] == "wait_ended"]
        assert ended == [("cancelled", 1)]
        (cancelled,) = [e for e in journal if e["type"] == "step_failed" and e["step"] == "charge"]
        assert cancelled["cancelled"] and cancelled["error"]["code"] == "CANCELLED"
        # `on: attempted`: the payment the action started is undone.
        (refund,) = calls(cb_dir, "refund")
        assert refund["error"]["code"] == "CANCELLED"
        with pytest.raises(CallbackNotPending):
            await sagac.acallback(store, token, result={"payment_id": "p"}, by="psp")

    run(kind, cb_dir, body)


def test_an_action_that_fails_closes_its_token_and_never_shows_it(kind: str, cb_dir: Path) -> None:
    plan = sagac.load(HERE / "flaky.yaml")

    async def body(store: Store) -> None:
        report = await sagac.arun(plan, {}, store=store)
        assert report.status == "failed"
        assert report.failure is not None and report.failure.code == "UNAVAILABLE"
        (token,) = tokens(cb_dir)
        assert report.failure.message == "the provider is down; token ***"
        journal = await events(store, report.run_id)
        ended = [(e["reason"], e["attempt"]) for e in journal if e["type"] == "wait_ended"]
        assert ended == [("cancelled", 1)]
        assert token not in json.dumps([journal, report.to_json_dict()])
        with pytest.raises(CallbackNotPending):
            await sagac.acallback(store, token, result={"payment_id": "p"}, by="psp")

    run(kind, cb_dir, body)
