"""`get_lease(run_id, expired=True)`: a lease that ran out is still named (its holder died)
until someone takes or releases it; a released lease is gone (used by `runs --status stuck`)."""

from __future__ import annotations

import asyncio

from .conftest import Stores, new_run

A, B = "a@elsewhere:1/x", "b@elsewhere:2/y"  # owners on another host: always taken as alive


def test_an_expired_lease_is_named_only_when_asked(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await new_run(store)
        expires = await store.acquire_lease("r1", A, 0.05)
        await asyncio.sleep(0.1)
        assert await store.get_lease("r1") is None
        assert await store.get_lease("r1", expired=True) == (A, expires)
        await store.acquire_lease("r1", B, 30)
        assert (await store.get_lease("r1", expired=True) or ("",))[0] == B
        await store.release_lease("r1", B)
        assert await store.get_lease("r1", expired=True) is None

    stores.run(body)
