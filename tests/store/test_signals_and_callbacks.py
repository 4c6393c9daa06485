"""The contract's signals and callbacks (issue 13): what `send_signal` keeps and refuses, and
the compare-and-set that makes a callback token single-use; what each wakes. A refusal only
raises (its caller audits it); what is accepted is audited by the store in the same write."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sagac.runtime.clock import rfc3339
from sagac.runtime.store import Store
from sagac.runtime.store.base import AuditEntry, os_user

from sagac.errors import (
    CallbackLate,
    CallbackNotPending,
    CallbackRefused,
    CallbackTokenUsed,
    RunFinished,
    RunNotFound,
    SignalAlreadySent,
    UnknownCallbackToken,
)

from .conftest import Stores, ev
from .test_parked_rows import FAR, opened, park, signal_audit, started, wake_at

TOKEN = "sha256:" + "ab" * 32


def callback_entry(actor: str = "payments") -> AuditEntry:
    return AuditEntry(action="callback", outcome="accepted", actor=actor, detail={"kind": "result"})


async def issued(
    store: Store,
    run_id: str = "r1",
    *,
    token: str = TOKEN,
    deadline: float | None = FAR,
    attempt: int = 1,
    seq: int = 2,
    new: bool = True,
) -> None:
    """A run whose step `charge` issued a callback token (attempt `attempt`, at `seq`)."""
    if new:
        await started(store, run_id)
    await opened(
        store,
        run_id,
        seq,
        "callback_issued",
        step="charge",
        attempt=attempt,
        token_sha256=token,
        deadline=None if deadline is None else rfc3339(deadline),
    )


def test_a_signal_is_kept_audited_and_listed(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await started(store)
        await started(store, "r2")
        before = time.time()
        first = await store.send_signal(
            "r1", "paid", {"id": 1}, signal_audit("r1", "paid"), limit=2
        )
        await store.send_signal("r2", "paid", None, signal_audit("r2", "paid"), limit=2)
        second = await store.send_signal(
            "r1", "shipped", [1, 2], signal_audit("r1", "shipped"), limit=2
        )
        assert first["signal_id"] < second["signal_id"]
        other = s.open()
        listed = await other.signals("r1")
        assert listed == [first, second]
        assert (first["run_id"], first["name"], first["data"], first["sent_by"]) == (
            "r1",
            "paid",
            {"id": 1},
            "bob",
        )
        assert (first["consumed_step"], first["consumed_seq"]) == (None, None)
        assert rfc3339(before - 1) <= first["sent_at"] <= rfc3339(time.time() + 1)
        assert await other.signals("r1", "shipped") == [second]
        assert await other.signals("r1", "nope") == []
        assert await other.signals("nope") == []
        audit = await other.audit_log("r1")
        assert [(a["action"], a["outcome"], a["actor"], a["os_user"]) for a in audit] == [
            ("signal", "accepted", "bob", os_user())
        ] * 2
        assert [a["detail"] for a in audit] == [
            {"signal_id": first["signal_id"]},
            {"signal_id": second["signal_id"]},
        ]

    stores.run(body)


def test_a_signal_is_refused_past_its_limit_or_once_the_run_finished(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await started(store)
        await store.send_signal("r1", "paid", 1, signal_audit("r1", "paid"), limit=1)
        with pytest.raises(SignalAlreadySent):
            await s.open().send_signal("r1", "paid", 2, signal_audit("r1", "paid"), limit=1)
        await store.send_signal("r1", "paid", 3, signal_audit("r1", "paid"), limit=2)
        await store.append("r1", [ev("r1", 2, "saga_completed")], report={"status": "succeeded"})
        with pytest.raises(RunFinished) as refused:
            await store.send_signal("r1", "other", 4, signal_audit("r1", "other"), limit=1)
        assert refused.value.code == "RUN_FINISHED"
        with pytest.raises(RunNotFound):
            await store.send_signal("nope", "paid", 1, signal_audit("nope", "paid"), limit=1)
        assert [sig["data"] for sig in await s.open().signals("r1")] == [1, 3]
        assert len(await s.open().audit_log("r1")) == 2  # the refusals are the caller's to audit

    stores.run(body)


def test_a_signal_wakes_a_run_parked_waiting_for_it(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await started(store)
        await opened(
            store, "r1", 2, "wait_started", step="paid", signal="paid", deadline=rfc3339(FAR)
        )
        await park(store, "r1", 3)
        waiter = s.open()
        await waiter.wait_for_work(0)
        await store.send_signal("r1", "other", 1, signal_audit("r1", "other"), limit=1)
        assert await wake_at(s.open(), "r1") == FAR  # not what it waits for
        waiting = asyncio.ensure_future(waiter.wait_for_work(30))
        before = time.time()
        await store.send_signal("r1", "paid", 1, signal_audit("r1", "paid"), limit=1)
        assert before - 1 <= (await wake_at(s.open(), "r1") or 0) <= time.time() + 1
        assert await asyncio.wait_for(waiting, 10) is True

    stores.run(body)


def test_a_callback_outcome_is_recorded_once_with_its_audit(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await issued(store)
        assert await store.callback("sha256:nope") is None
        row = await s.open().callback(TOKEN)
        assert row is not None
        assert (row["run_id"], row["step"], row["attempt"], row["state"]) == (
            "r1",
            "charge",
            1,
            "pending",
        )
        done = await store.complete_callback(TOKEN, {"result": {"id": 9}}, callback_entry())
        assert (done["outcome"], done["outcome_by"]) == ({"result": {"id": 9}}, "payments")
        assert done == await s.open().callback(TOKEN) == (await s.open().parked("r1"))[0]
        assert done["state"] == "pending"  # until the run's driver takes it (`wait_ended`)
        [audit] = await s.open().audit_log("r1")
        assert (audit["action"], audit["outcome"], audit["gate"], audit["actor"]) == (
            "callback",
            "accepted",
            "charge",
            "payments",
        )
        assert audit["detail"] == {"attempt": 1, "kind": "result"}
        with pytest.raises(CallbackTokenUsed):
            await s.open().complete_callback(TOKEN, {"result": 2}, callback_entry())
        with pytest.raises(UnknownCallbackToken):
            await store.complete_callback("sha256:nope", {"result": 2}, callback_entry())
        assert (await store.callback(TOKEN))["outcome"] == {"result": {"id": 9}}  # type: ignore[index]
        assert len(await store.audit_log()) == 1

    stores.run(body)


def test_two_completions_at_once_exactly_one_wins(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        await issued(s.open())
        handles = [s.open() for _ in range(4)]
        outcomes = await asyncio.gather(
            *(
                h.complete_callback(TOKEN, {"result": i}, callback_entry(f"p{i}"))
                for i, h in enumerate(handles)
            ),
            return_exceptions=True,
        )
        won = [o for o in outcomes if isinstance(o, dict)]
        assert len(won) == 1
        assert all(isinstance(o, CallbackTokenUsed) for o in outcomes if o not in won)
        assert (await s.open().callback(TOKEN))["outcome"] == won[0]["outcome"]  # type: ignore[index]
        assert len(await s.open().audit_log()) == 1

    stores.run(body)


@pytest.mark.parametrize("why", ["late", "closed", "finished", "sibling"])
def test_a_callback_no_longer_waited_for_is_refused(stores: Stores, why: str) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await issued(store, deadline=time.time() - 1 if why == "late" else FAR)
        if why == "closed":
            await opened(store, "r1", 3, "wait_ended", step="charge", reason="timeout", attempt=1)
        elif why == "finished":
            await store.append("r1", [ev("r1", 3, "saga_failed")], report={"status": "failed"})
        elif why == "sibling":  # a crash, the attempt again: its token came first
            await issued(store, token="sha256:2", attempt=2, seq=3, new=False)
            await store.complete_callback("sha256:2", {"result": 1}, callback_entry())
        expected: dict[str, type[CallbackRefused]] = {"late": CallbackLate}
        with pytest.raises(expected.get(why, CallbackNotPending)):
            await s.open().complete_callback(TOKEN, {"result": 1}, callback_entry())
        assert (await s.open().callback(TOKEN))["outcome"] is None  # type: ignore[index]

    stores.run(body)


def test_an_old_attempts_token_stays_valid_until_one_is_used(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await issued(store)
        await issued(store, token="sha256:2", attempt=2, seq=3, new=False)
        done = await s.open().complete_callback(TOKEN, {"result": 1}, callback_entry())
        assert done["attempt"] == 1
        with pytest.raises(CallbackNotPending):
            await s.open().complete_callback("sha256:2", {"result": 1}, callback_entry())

    stores.run(body)


@pytest.mark.parametrize("parked", [True, False])
def test_a_callback_wakes_its_run_when_parked(stores: Stores, parked: bool) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await issued(store)
        if parked:
            await park(store, "r1", 3)
            assert await wake_at(s.open(), "r1") == FAR
        waiter = s.open()
        await waiter.wait_for_work(0)
        waiting = asyncio.ensure_future(waiter.wait_for_work(0.5 if not parked else 30))
        wake_before = await wake_at(store, "r1")
        before = time.time()
        await store.complete_callback(
            TOKEN, {"error": {"code": "DECLINED", "message": "no"}}, callback_entry()
        )
        if parked:
            assert before - 1 <= (await wake_at(s.open(), "r1") or 0) <= time.time() + 1
            assert await asyncio.wait_for(waiting, 10) is True
        else:  # still running: its driver looks when it parks
            assert await wake_at(s.open(), "r1") == wake_before
            await waiting

    stores.run(body)


def test_refusals_keep_their_codes(stores: Stores) -> None:
    """What the CLI maps to exit 77: the codes of docs/language.md."""

    async def body(s: Stores) -> None:
        store = s.open()
        await issued(store)
        await store.complete_callback(TOKEN, {"result": None}, callback_entry())
        codes: list[Any] = []
        for token in (TOKEN, "sha256:nope"):
            try:
                await store.complete_callback(token, {"result": None}, callback_entry())
            except CallbackRefused as refused:
                codes.append((refused.code, refused.exit_code))
        assert [c for c, _ in codes] == ["CALLBACK_TOKEN_USED", "UNKNOWN_CALLBACK_TOKEN"]
        assert {int(e) for _, e in codes} == {77}

    stores.run(body)


@pytest.mark.parametrize("what", ["signal", "callback"])
def test_what_comes_while_the_run_parks_is_never_lost(stores: Stores, what: str) -> None:
    """The parking append and the signal (or callback) at once, from two handles: whichever
    commits first, the run ends parked and due now."""

    async def body(s: Stores) -> None:
        parker, sender = s.open(), s.open()
        for i in range(8):
            run_id, token = f"r{i}", f"sha256:{i}"
            await started(parker, run_id)
            await parker.append(
                run_id,
                [
                    ev(run_id, 2, "wait_started", step="w", signal="go", deadline=rfc3339(FAR)),
                    ev(
                        run_id,
                        3,
                        "callback_issued",
                        step="t",
                        attempt=1,
                        token_sha256=token,
                        deadline=rfc3339(FAR),
                    ),
                ],
            )
            if what == "signal":
                arrives = sender.send_signal(run_id, "go", i, signal_audit(run_id, "go"), limit=1)
            else:
                arrives = sender.complete_callback(token, {"result": i}, callback_entry())
            before = time.time()
            await asyncio.gather(park(parker, run_id, 4), arrives)
            assert before - 1 <= (await wake_at(s.open(), run_id) or FAR) <= time.time() + 1

    stores.run(body)
