"""The contract's leases (one driver per run) and cancel requests."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest
from sagac.runtime import leases, resume

from sagac.errors import LeaseHeld, RunNotFound, UsageError

from .conftest import Stores, ev, new_run

A, B = "a@elsewhere:1/x", "b@elsewhere:2/y"  # owners on another host: always taken as alive


def _dead_owner() -> str:
    """An owner of this host whose process has ended: its lease needs no waiting for."""
    pid = os.getpid() + 100_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"u@{socket.gethostname()}:{pid}/dead"
        except PermissionError:
            pass
        pid += 1


def test_a_lease_is_exclusive_until_it_expires_then_taken_over(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        assert await store.get_lease("r1") is None
        expires = await store.acquire_lease("r1", A, 10)
        assert time.time() + 9 < expires <= time.time() + 10
        assert await store.get_lease("r1") == (A, expires)
        with pytest.raises(LeaseHeld) as busy:
            await store.acquire_lease("r1", B, 10)
        got = busy.value
        assert (got.exit_code, got.code, got.owner, got.expires_at) == (75, "RUN_BUSY", A, expires)
        assert A in got.message and got.hint
        assert await store.acquire_lease("r1", A, 20) > expires  # the holder may take it again
        # Expiry: a lease not renewed in time is no one's, and another owner takes it over.
        await store.acquire_lease("r2", A, 0.05)
        await asyncio.sleep(0.1)
        assert await store.get_lease("r2") is None
        await store.acquire_lease("r2", B, 10)
        assert (await store.get_lease("r2"))[0] == B  # type: ignore[index]
        assert await store.renew_lease("r2", A, 10) is False  # the old holder learns it lost it
        # A holder whose process is gone (this host) is not waited for.
        await store.acquire_lease("r3", _dead_owner(), 60)
        await store.acquire_lease("r3", B, 10)

    stores.run(body)


def test_a_lease_is_renewed_and_released_only_by_its_owner(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await store.acquire_lease("r1", A, 0.3)
        assert await store.renew_lease("r1", A, 10) is True
        await asyncio.sleep(0.4)  # past the first ttl: the renewal holds it
        assert (await store.get_lease("r1"))[0] == A  # type: ignore[index]
        assert await store.renew_lease("r1", B, 10) is False
        await store.release_lease("r1", B)  # not B's: nothing happens
        assert (await store.get_lease("r1"))[0] == A  # type: ignore[index]
        await store.release_lease("r1", A)
        assert await store.get_lease("r1") is None
        await store.acquire_lease("r1", B, 10)  # free again

    stores.run(body)


def test_a_runs_final_append_ends_the_lease_it_holds(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await new_run(store)
        await store.acquire_lease("r1", A, 10)
        await store.append("r1", [ev("r1", 1, "saga_started")])
        assert (await store.get_lease("r1"))[0] == A  # type: ignore[index]
        report = {"status": "succeeded"}
        await store.append("r1", [ev("r1", 2, "saga_completed", status="succeeded")], report)
        assert await store.get_lease("r1") is None
        assert await store.renew_lease("r1", A, 10) is True  # ended, not lost: nothing to stop
        await store.release_lease("r1", A)
        assert await store.get_lease("r1") is None

    stores.run(body)


def test_held_leases_a_run_only_in_a_shared_store(stores: Stores) -> None:
    """`leases.held` takes, renews and releases the lease where other processes could drive
    the run; a store of one process has nobody to exclude, and no lease is taken in it."""

    async def body(s: Stores) -> None:
        store = s.open()
        async with leases.held(store, "r1", A, ttl=0.3) as lease:
            await asyncio.sleep(0.5)  # longer than the ttl: renewal keeps it ours
            assert not lease.lost
            got = await store.get_lease("r1")
            assert (got[0] if got else None) == (A if s.shared else None)
        assert await store.get_lease("r1") is None  # released on the way out

    stores.run(body)


def test_cancel_requests_keep_the_first_and_audit_each(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await new_run(store)
        assert await store.cancel_request("r1") is None
        assert await store.cancel_request("nope") is None
        assert await store.request_cancel("r1", "alice", "wrong amount") is True
        assert await store.request_cancel("r1", "bob", None) is False
        request = await store.cancel_request("r1")
        assert request is not None
        assert (request["by"], request["reason"]) == ("alice", "wrong amount") and request["at"]
        meta = (await store.get_run("r1")).meta
        assert (meta["cancel_requested_at"], meta["cancel_by"], meta["cancel_reason"]) == (
            request["at"],
            "alice",
            "wrong amount",
        )
        log = await store.audit_log("r1")
        assert [(a["action"], a["outcome"], a["actor"], a["message"]) for a in log] == [
            ("cancel", "accepted", "alice", "wrong amount"),
            ("cancel", "repeated", "bob", None),
        ]
        with pytest.raises(RunNotFound):
            await store.request_cancel("nope", "alice", None)

    stores.run(body)


def test_resume_cancel_is_refused_where_nobody_could_hear_it(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await new_run(store)
        if s.shared:
            assert await resume.cancel(store, "r1", by="alice") is True
            with pytest.raises(RunNotFound):
                await resume.cancel(store, "nope", by="alice")
        else:
            with pytest.raises(UsageError, match="need a durable store"):
                await resume.cancel(store, "r1", by="alice")
            assert await store.cancel_request("r1") is None

    stores.run(body)
