"""A lease written by `claim_runs` is adopted by its claimer (`leases.held(..., claimed=True)`):
not taken a second time, still exclusive, renewed and released as any other, and its loss
stops the holder."""

from __future__ import annotations

import asyncio

import pytest
from sagac.runtime.leases import held

from sagac.errors import LeaseHeld

from .conftest import Stores
from .test_claims import A, B, queued


def test_a_claimed_lease_is_adopted_not_taken_again_and_stays_exclusive(
    shared_stores: Stores,
) -> None:

    async def body(s: Stores) -> None:
        store, other = s.open(), s.open()
        await queued(store, "q1")
        assert await store.claim_runs(A, 30, 10) == ["q1"]
        claimed = await store.get_lease("q1")
        await asyncio.sleep(0.02)  # a second take would write a later expiry
        async with held(store, "q1", A, 30, claimed=True) as lease:
            assert await other.get_lease("q1") == claimed
            with pytest.raises(LeaseHeld):
                await other.acquire_lease("q1", B, 30)
            assert await other.claim_runs(B, 30, 10) == []
            assert lease.owner == A and not lease.lost
        assert await other.get_lease("q1") is None  # released at the end, as a taken one
        assert await other.claim_runs(B, 30, 10) == ["q1"]
        with pytest.raises(ValueError, match="owner"):
            async with held(store, "q1", claimed=True):
                pass

    shared_stores.run(body)


def test_an_adopted_lease_that_is_lost_stops_its_holder(shared_stores: Stores) -> None:

    async def body(s: Stores) -> None:
        store, other = s.open(), s.open()
        await queued(store, "q1")
        assert await store.claim_runs(A, 0.3, 10) == ["q1"]
        stopped, leases = False, []

        async def holder() -> None:
            nonlocal stopped
            async with held(store, "q1", A, 0.3, claimed=True) as lease:
                leases.append(lease)
                # Another worker has it now (as after an expiry): A's renewal finds it gone.
                await other.release_lease("q1", A)
                await other.acquire_lease("q1", B, 30)
                try:
                    await asyncio.sleep(5)
                except asyncio.CancelledError:
                    stopped = True
                    raise

        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.create_task(holder()), 3)
        assert stopped and leases[0].lost
        assert (await other.get_lease("q1"))[0] == B  # type: ignore[index]  # not released by A

    shared_stores.run(body)
