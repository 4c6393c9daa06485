"""The contract's queue: stored definitions, queued runs, `claim_runs` (what is runnable, in
which order, to whom), `next_wake` and `wait_for_work`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import pytest
from sagac.runtime.clock import rfc3339
from sagac.runtime.store import Store
from sagac.runtime.store.base import Definition, RunRecord

from .conftest import Stores, ev
from .test_approvals_and_audit import DEFINITION, OTHER_TOKEN, TOKEN, decide, gated

A, B = "a@elsewhere:1/x", "b@elsewhere:2/y"  # owners on another host: always taken as alive
SAGA = Definition(DEFINITION, "s", '{"saga":"s","steps":[]}', "/srv/sagas/s.yaml")
T0 = 1_767_225_600  # 2026-01-01: before any wake time set by the clock


async def queued(
    store: Store,
    run_id: str,
    *,
    at: float | None = None,
    status: str = "queued",
    definition: Definition | None = SAGA,
    definition_hash: str = DEFINITION,
) -> None:
    """A run as `sagac submit` records it (created at `at`), with its definition."""
    record = RunRecord(run_id, "s", 1, definition_hash, {"n": 1}, status=status)
    record.created_at = rfc3339(at) if at is not None else ""
    await store.create_run(record, definition)


async def parked(store: Store, run_id: str, deadline: float | None = None) -> None:
    """A run waiting at gate `sign_off` (deadline `deadline`), parked by its final append."""
    await gated(store, run_id, deadline=None if deadline is None else rfc3339(deadline))
    await park(store, run_id)


async def park(store: Store, run_id: str) -> None:
    await store.append(
        run_id,
        [ev(run_id, 3, "saga_waiting", status="waiting_approval")],
        report={"status": "waiting_approval"},
    )


async def approve(store: Store, run_id: str) -> None:
    await decide(store, "alice", TOKEN if run_id == "r1" else OTHER_TOKEN, run_id=run_id)


async def claim_all(store: Store, owner: str = A) -> list[str]:
    return await store.claim_runs(owner, 60, 1000)


def test_a_definition_is_kept_once_per_hash(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        assert await store.definition(DEFINITION) is None
        await queued(store, "q1")
        assert await store.definition(DEFINITION) == SAGA
        other = Definition(DEFINITION, "s", '{"saga":"changed"}', "/elsewhere/s.yaml")
        await queued(store, "q2", definition=other)  # the same hash again: nothing changes
        assert await s.open().definition(DEFINITION) == SAGA
        await queued(store, "q3", definition=None, definition_hash="sha256:x")
        assert await store.definition("sha256:x") is None
        assert [r.run_id for r in await store.list_runs(status="queued")] == ["q3", "q2", "q1"]
        assert (await store.get_run("q1")).status == "queued"

    stores.run(body)


def test_a_queued_run_is_claimed_once_with_its_lease(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await queued(store, "q1")
        before = time.time()
        assert await store.claim_runs(A, 30, 10) == ["q1"]
        lease = await store.get_lease("q1")
        assert lease is not None and lease[0] == A
        assert before + 30 <= lease[1] <= time.time() + 30
        assert await store.claim_runs(B, 30, 10) == []  # leased: nobody else gets it
        assert await s.open().claim_runs(A, 30, 10) == []  # nor its own owner, again
        assert await store.renew_lease("q1", A, 30) is True  # the claimer's to renew
        await store.release_lease("q1", A)  # its worker let it go unfinished: runnable again
        assert await s.open().claim_runs(B, 30, 10) == ["q1"]
        assert (await store.get_lease("q1"))[0] == B  # type: ignore[index]

    stores.run(body)


def test_two_claimers_at_once_never_share_a_run_and_together_take_all(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        first, second = s.open(), s.open()
        for i in range(30):
            await queued(first, f"q{i:02}")
        got: dict[str, list[str]] = {A: [], B: []}
        while True:
            claims = await asyncio.gather(
                *(store.claim_runs(owner, 60, 4) for store, owner in [(first, A), (second, B)] * 3)
            )
            if not any(claims):
                break
            for owner, ids in zip([A, B] * 3, claims, strict=True):
                got[owner].extend(ids)
        assert not set(got[A]) & set(got[B])
        assert sorted(got[A] + got[B]) == [f"q{i:02}" for i in range(30)]
        assert len(got[A] + got[B]) == 30  # nobody got a run twice either
        for owner, ids in got.items():
            for run_id in ids:
                assert (await first.get_lease(run_id))[0] == owner  # type: ignore[index]

    stores.run(body)


def test_what_is_runnable(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        now = time.time()
        await queued(store, "queued")
        await queued(store, "lease_expired", status="running")
        await store.acquire_lease("lease_expired", B, 0.05)
        await queued(store, "lease_held", status="running")
        await store.acquire_lease("lease_held", B, 60)
        await queued(store, "interrupted", status="running")
        await store.update_run("interrupted", "interrupted")
        await parked(store, "waits")  # no deadline: only a person wakes it
        await parked(store, "deadline_passed", deadline=now - 1)
        await parked(store, "deadline_ahead", deadline=now + 3600)
        await parked(store, "decided")
        await approve(store, "decided")
        await parked(store, "cancelled")
        assert await store.request_cancel("cancelled", "bob", "no longer needed")
        await gated(store, "parked_by_update", deadline=rfc3339(now - 1))
        await store.update_run("parked_by_update", "waiting_approval")
        for resumed, deadline in [("resumed", None), ("resumed_early", now + 3600)]:
            await parked(store, resumed, deadline)  # resumed by a person, whose process died
            await store.update_run(resumed, "running")
        await queued(store, "finished", status="running")
        await store.update_run("finished", "succeeded", {"status": "succeeded"})
        await queued(store, "no_definition", definition=None, definition_hash="sha256:x")
        await asyncio.sleep(0.1)  # the short lease expires
        assert sorted(await claim_all(s.open())) == [
            "cancelled",
            "deadline_passed",
            "decided",
            "interrupted",
            "lease_expired",
            "parked_by_update",
            "queued",
            "resumed",
            "resumed_early",
        ]

    stores.run(body)


def test_a_cancel_requested_while_running_wakes_the_run_when_it_parks(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await queued(store, "done", status="succeeded")  # keeps the definition
        await gated(store, "r1")
        await store.acquire_lease("r1", A, 60)
        assert await s.open().request_cancel("r1", "bob", None)  # its driver is still running
        await park(store, "r1")  # ...and parks without having seen it: its lease ends
        assert await claim_all(s.open(), B) == ["r1"]

    stores.run(body)


def test_claims_take_the_longest_waiting_first_up_to_the_limit(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await parked(store, "decided")  # its wake time: the decision, now
        await queued(store, "q_newer", at=T0 + 30)
        await parked(store, "deadline_passed", deadline=T0 + 20)
        await queued(store, "q_older", at=T0 + 10)
        await queued(store, "q_same_wake", at=T0 + 20)  # a tie: the older run first
        await approve(store, "decided")
        assert await store.claim_runs(A, 60, 0) == []
        assert await store.claim_runs(A, 60, 2) == ["q_older", "q_same_wake"]
        assert await store.claim_runs(A, 60, 2) == ["deadline_passed", "q_newer"]
        assert await store.claim_runs(A, 60, 2) == ["decided"]
        assert await store.claim_runs(A, 60, 2) == []

    stores.run(body)


def test_next_wake_is_the_earliest_deadline_or_lease_expiry(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        assert await store.next_wake() is None
        now = time.time()
        await parked(store, "waits")  # no deadline: no wake by the clock
        await queued(store, "finished", status="running")
        await store.update_run("finished", "succeeded", {"status": "succeeded"})
        assert await store.next_wake() is None
        await parked(store, "gate", deadline=now + 600)
        assert await store.next_wake() == pytest.approx(now + 600, abs=0.002)
        await parked(store, "passed", deadline=now - 5)  # runnable now: not a future wake
        assert await store.next_wake() == pytest.approx(now + 600, abs=0.002)
        await queued(store, "held", status="running")
        expires = await store.acquire_lease("held", B, 300)
        assert await s.open().next_wake() == expires
        # A parked run's lease ends at its wake time at the earliest; a run without a
        # stored definition never wakes.
        await queued(store, "orphan", status="running", definition=None, definition_hash="x")
        await store.acquire_lease("orphan", B, 100)
        await store.acquire_lease("waits", B, 10)
        assert await store.next_wake() == expires
        await store.release_lease("held", B)  # runnable now: the gate is next again
        assert await store.next_wake() == pytest.approx(now + 600, abs=0.002)

    stores.run(body)


def test_wait_for_work_wakes_on_work_made_by_another_handle(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        waiter, other = s.open(), s.open()
        await parked(other, "r1")
        await parked(other, "r2")
        await queued(other, "held", status="running")
        await other.acquire_lease("held", B, 60)
        await waiter.wait_for_work(0)  # forget what happened before
        assert await waiter.wait_for_work(0.2) is False  # nothing happened meanwhile

        async def wakes(make_work: Awaitable[Any]) -> None:
            await waiter.wait_for_work(0)
            waiting = asyncio.ensure_future(waiter.wait_for_work(30))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            await make_work
            assert await asyncio.wait_for(waiting, 10) is True

        await wakes(queued(other, "q1"))
        await wakes(approve(other, "r1"))
        await wakes(other.request_cancel("r2", "bob", None))
        await wakes(other.release_lease("held", B))
        await waiter.wait_for_work(0)
        assert await waiter.wait_for_work(0.2) is False

    stores.run(body)


def test_wait_for_work_in_a_later_event_loop(stores: Stores) -> None:
    """A store may outlive an event loop (a script's `asyncio.run` after another): waiting
    for work in the next loop works too."""

    async def first(s: Stores) -> None:
        store = s.open()
        assert await store.wait_for_work(0.05) is False
        await queued(store, "q1")

    stores.run(first)

    async def second(s: Stores) -> None:
        store = s.open()
        await store.wait_for_work(0)
        waiting = asyncio.ensure_future(store.wait_for_work(30))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await queued(s.open(), "q2")
        assert await asyncio.wait_for(waiting, 10) is True

    stores.run(second)
