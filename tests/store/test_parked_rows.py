"""The contract's parked rows (issue 13): opened by `sleep_started`, `wait_started` and
`callback_issued`, closed by `wait_ended`; the wake time of a run that parks (status
`waiting`), and claims and `next_wake` of such runs."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sagac.runtime.clock import rfc3339
from sagac.runtime.store import Store
from sagac.runtime.store.base import AuditEntry, RunRecord

from .conftest import Stores, ev
from .test_claims import SAGA, A, claim_all

FAR = 4_102_444_800  # 2100-01-01


async def started(store: Store, run_id: str = "r1", **kw: Any) -> None:
    """A run with a stored definition that has started (seq 1)."""
    await store.create_run(RunRecord(run_id, "s", 1, SAGA.hash, {"n": 1}, **kw), SAGA)
    await store.append(run_id, [ev(run_id, 1, "saga_started")])


async def opened(store: Store, run_id: str, seq: int, type_: str, **fields: Any) -> None:
    await store.append(run_id, [ev(run_id, seq, type_, **fields)])


async def park(store: Store, run_id: str, seq: int, status: str = "waiting") -> None:
    """The run's driver parks it (its final append for now)."""
    await store.append(
        run_id, [ev(run_id, seq, "saga_waiting", status=status)], report={"status": status}
    )


async def sleeping(store: Store, run_id: str, until: float) -> None:
    await started(store, run_id)
    await opened(store, run_id, 2, "sleep_started", step="nap", until=rfc3339(until))
    await park(store, run_id, 3)


async def wake_at(store: Store, run_id: str) -> float | None:
    wake = (await store.get_run(run_id)).meta.get("wake_at")
    return None if wake is None else float(wake)


def signal_audit(run_id: str, name: str) -> AuditEntry:
    return AuditEntry(action="signal", outcome="accepted", run_id=run_id, actor="bob", message=name)


def test_opening_events_open_parked_rows_and_wait_ended_closes_them(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await started(store)
        await store.append(
            "r1",
            [
                ev("r1", 2, "sleep_started", step="nap", until=rfc3339(FAR)),
                ev("r1", 3, "wait_started", step="paid", signal="payment", deadline=None),
                ev(
                    "r1",
                    4,
                    "callback_issued",
                    step="charge",
                    attempt=1,
                    token_sha256="sha256:t1",
                    deadline=rfc3339(FAR + 60),
                ),
            ],
        )
        sig = await store.send_signal(
            "r1", "payment", {"id": 7}, signal_audit("r1", "payment"), limit=1
        )
        await store.append(
            "r1",
            [
                ev("r1", 5, "wait_ended", step="nap", reason="due"),
                ev("r1", 6, "wait_ended", step="paid", reason="signal", signal_id=sig["signal_id"]),
                ev(
                    "r1",
                    7,
                    "callback_issued",
                    step="charge",
                    attempt=2,
                    token_sha256="sha256:t2",
                    deadline=None,
                ),
                ev("r1", 8, "wait_ended", step="charge", reason="callback", attempt=1),
            ],
        )
        rows = await s.open().parked("r1")
        assert [
            (r["step"], r["attempt"], r["kind"], r["state"], r["opened_seq"]) for r in rows
        ] == [
            ("nap", 0, "sleep", "done", 2),
            ("paid", 0, "signal", "done", 3),
            ("charge", 1, "callback", "done", 4),
            ("charge", 2, "callback", "pending", 7),
        ]
        nap, paid, first, second = rows
        assert nap["due_epoch"] == FAR and nap["signal"] is None and nap["token_sha256"] is None
        assert (paid["signal"], paid["due_epoch"], paid["token_sha256"]) == ("payment", None, None)
        assert (first["token_sha256"], first["due_epoch"]) == ("sha256:t1", FAR + 60)
        assert (second["token_sha256"], second["due_epoch"]) == ("sha256:t2", None)
        for row in rows:
            assert row["run_id"] == "r1"
            assert (row["outcome"], row["outcome_at"], row["outcome_by"]) == (None, None, None)
        [kept] = await s.open().signals("r1")
        assert (kept["consumed_step"], kept["consumed_seq"]) == ("paid", 6)
        assert await store.parked("nope") == []

    stores.run(body)


def test_a_run_that_parks_wakes_at_its_earliest_due_time(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await sleeping(store, "sleeps", FAR)
        assert await wake_at(s.open(), "sleeps") == FAR
        await started(store, "both")
        await store.append(
            "both",
            [
                ev(
                    "both",
                    2,
                    "wait_started",
                    step="paid",
                    signal="payment",
                    deadline=rfc3339(FAR + 10),
                ),
                ev(
                    "both",
                    3,
                    "approval_requested",
                    step="gate",
                    deadline=rfc3339(FAR + 5),
                    approvers=["alice"],
                ),
                ev(
                    "both",
                    4,
                    "callback_issued",
                    step="cb",
                    attempt=1,
                    token_sha256="sha256:b",
                    deadline=rfc3339(FAR + 20),
                ),
                ev("both", 5, "sleep_started", step="done_nap", until=rfc3339(FAR - 99)),
                ev("both", 6, "wait_ended", step="done_nap", reason="due"),  # done: not counted
            ],
        )
        await park(store, "both", 7, "waiting_approval")
        assert await wake_at(s.open(), "both") == FAR + 5
        await started(store, "forever")  # a wait with no deadline: only a signal wakes it
        await opened(
            store, "forever", 2, "wait_started", step="paid", signal="payment", deadline=None
        )
        await park(store, "forever", 3)
        assert await wake_at(s.open(), "forever") is None
        assert (await store.get_run("forever")).status == "waiting"

    stores.run(body)


@pytest.mark.parametrize("why", ["signal", "outcome", "cancel"])
def test_a_run_parks_awake_when_what_it_waits_for_came_first(stores: Stores, why: str) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await started(store)
        await store.append(
            "r1",
            [
                ev("r1", 2, "sleep_started", step="nap", until=rfc3339(FAR)),
                ev("r1", 3, "wait_started", step="paid", signal="payment", deadline=None),
                ev(
                    "r1",
                    4,
                    "callback_issued",
                    step="cb",
                    attempt=1,
                    token_sha256="sha256:c",
                    deadline=None,
                ),
            ],
        )
        # Another name, and a signal already consumed, do not wake it.
        old = await store.send_signal("r1", "payment", 1, signal_audit("r1", "payment"), limit=2)
        await store.send_signal("r1", "other", None, signal_audit("r1", "other"), limit=1)
        await opened(
            store, "r1", 5, "wait_ended", step="paid", reason="signal", signal_id=old["signal_id"]
        )
        await opened(
            store, "r1", 6, "wait_started", step="paid_again", signal="payment", deadline=None
        )
        if why == "signal":
            await s.open().send_signal("r1", "payment", 2, signal_audit("r1", "payment"), limit=2)
        elif why == "outcome":
            await s.open().complete_callback(
                "sha256:c", {"result": 1}, AuditEntry(action="callback", outcome="accepted")
            )
        else:
            assert await s.open().request_cancel("r1", "bob", None)
        before = time.time()
        await park(store, "r1", 7)
        assert before - 1 <= (await wake_at(s.open(), "r1") or 0) <= time.time() + 1
        assert await claim_all(s.open()) == ["r1"]

    stores.run(body)


def test_a_run_parked_on_nothing_it_knows_of_waits_for_a_person(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await started(store)
        await store.send_signal("r1", "payment", 1, signal_audit("r1", "payment"), limit=1)
        await park(store, "r1", 2)  # kept, but no wait of it is pending
        assert await wake_at(s.open(), "r1") is None
        assert await claim_all(s.open()) == []

    stores.run(body)


def test_waiting_runs_are_claimed_when_due_and_next_wake_names_them(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        now = time.time()
        await sleeping(store, "ahead", now + 600)
        await sleeping(store, "due", now - 1)
        await started(store, "forever")
        await park(store, "forever", 2)
        other = s.open()
        assert await other.next_wake() == pytest.approx(now + 600, abs=0.002)
        assert await claim_all(other) == ["due"]
        assert await claim_all(other) == []
        await store.update_run("ahead", "running")  # resumed by hand: claimable should it die
        assert await claim_all(s.open()) == ["ahead"]

    stores.run(body)


def test_a_waiting_run_lease_delays_its_claim(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await sleeping(store, "r1", time.time() - 1)
        await store.acquire_lease("r1", A, 60)
        assert await claim_all(s.open(), "b@elsewhere:2/y") == []
        await store.release_lease("r1", A)
        assert await claim_all(s.open(), "b@elsewhere:2/y") == ["r1"]

    stores.run(body)
