"""Leases: at most one process drives a run at a time.

Whoever runs or resumes a run first takes its lease in the store (owner, expiry) in a write
transaction, so of two processes resuming the same run exactly one proceeds; the other gets
`RunBusy` (exit 75) naming the owner and the expiry. The holder renews the lease every third of
its time to live while it works. A holder that cannot renew (its lease expired and someone else
took the run) stops at once, journaling nothing more, exactly as if it had crashed: two drivers
must never write one journal. A crashed holder's lease simply expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import getpass
import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

from sagac.errors import LeaseHeld

from .store.base import Store

LEASE_TTL = 30.0  # seconds; renewed every LEASE_TTL / 3
RunBusy = LeaseHeld  # exit 75: "run ... is in progress in another process: OWNER holds it ..."
# The leases the current task holds (run id -> Lease): holding one again re-uses it.
_HELD: contextvars.ContextVar[dict[str, Lease] | None] = contextvars.ContextVar(
    "sagac_leases", default=None
)


def owner_id() -> str:
    """Who holds a lease: user@host:pid/random, readable in the exit-75 message; a new one
    each call, so two holders in one process are two owners."""
    return f"{_who(os.getpid())}/{uuid.uuid4().hex[:6]}"


@functools.cache
def _who(pid: int) -> str:
    # Keyed by pid: a forked child is another process. The user lookup reads the password
    # database, too slow to repeat for every run.
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment: the pid still tells
        user = "?"
    return f"{user}@{socket.gethostname()}:{pid}"


def lease_lost(run_id: str) -> bool:
    """Whether the current task held `run_id`'s lease and lost it: then it must write nothing."""
    lease = (_HELD.get() or {}).get(run_id)
    return lease is not None and lease.lost


class Lease:
    """A held lease; `lost` is set when it could not be renewed."""

    def __init__(self, store: Store, run_id: str, owner: str, ttl: float) -> None:
        self.store, self.run_id, self.owner, self.ttl = store, run_id, owner, ttl
        self.lost = False


@contextlib.asynccontextmanager
async def held(
    store: Store,
    run_id: str,
    owner: str | None = None,
    ttl: float = LEASE_TTL,
    *,
    claimed: bool = False,
) -> AsyncIterator[Lease]:
    """Hold `run_id`'s lease for the body; raises RunBusy when another live owner holds it.
    `claimed`: `owner`'s `Store.claim_runs` wrote this lease just now (with `ttl`): it is
    adopted as it is, not taken a second time; it is renewed and released as any other.
    A store no other process shares (`Store.shared` false: memory) has nobody to exclude: no
    lease is taken in it, and the lease yielded never expires."""
    mine = _HELD.get() or {}
    if run_id in mine and mine[run_id].store is store:  # re-entered by the holder: one lease
        yield mine[run_id]
        return
    if claimed and owner is None:
        raise ValueError("a claimed lease is adopted by the owner that claimed it")
    lease = Lease(store, run_id, owner or owner_id(), ttl)
    if not store.shared:
        yield lease
        return
    if not claimed:
        await store.acquire_lease(run_id, lease.owner, ttl)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    renewing: list[asyncio.Task[None]] = []

    def start_renewing() -> None:  # a third of the ttl after taking it: two thirds are left
        renewing.append(loop.create_task(_renew(lease, task, loop.time() + ttl * 2 / 3)))

    # The renewer starts when the first renewal is due: most runs end before, with no task.
    timer = loop.call_later(ttl / 3, start_renewing)
    token = _HELD.set({**mine, run_id: lease})
    try:
        yield lease
    finally:
        _HELD.reset(token)
        timer.cancel()
        for renewer in renewing:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        if not lease.lost:
            with contextlib.suppress(Exception):  # an unreleased lease just expires
                await store.release_lease(run_id, lease.owner)


async def _renew(lease: Lease, holder: asyncio.Task[Any] | None, valid_until: float) -> None:
    """Renew now, then every third of the time to live; `valid_until` (loop time): when the
    lease taken or last renewed runs out."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            ours = await lease.store.renew_lease(lease.run_id, lease.owner, lease.ttl)
            valid_until = loop.time() + lease.ttl
        except Exception:
            # The store did not answer: keep going while the last renewal still holds.
            ours = loop.time() + lease.ttl / 3 < valid_until
        if not ours:
            lease.lost = True
            if holder is not None:
                holder.cancel()  # stop as a crash would: nothing more is journaled
            return
        await asyncio.sleep(lease.ttl / 3)
