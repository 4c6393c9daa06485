"""The contract's registry of live workers: `heartbeat`, `workers` (with what each holds) and
`remove_worker`."""

from __future__ import annotations

import asyncio
import time

from sagac.runtime.clock import parse_rfc3339
from sagac.runtime.store.base import WorkerInfo

from .conftest import Stores
from .test_claims import queued

A = WorkerInfo("a@h1:11/x", "h1", 11, 4)
B = WorkerInfo("b@h2:22/y", "h2", 22, 8)


def test_heartbeats_list_live_workers_with_what_they_hold(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store, other = s.open(), s.open()
        assert await store.workers(60) == []
        before = time.time()
        await store.heartbeat(A)
        (a,) = await other.workers(60)
        assert (a.worker_id, a.host, a.pid, a.concurrency, a.state, a.held) == (
            A.worker_id,
            "h1",
            11,
            4,
            "running",
            (),
        )
        assert before - 0.01 <= parse_rfc3339(a.started_at) <= time.time()
        assert a.heartbeat_at == a.started_at
        for run_id in ("q2", "q1", "q3"):
            await queued(store, run_id)
        assert sorted(await store.claim_runs(A.worker_id, 60, 2)) == ["q1", "q2"]
        await asyncio.sleep(0.05)
        await other.heartbeat(B)
        await store.heartbeat(WorkerInfo(A.worker_id, "h1", 11, 4, state="stopping"))
        await store.acquire_lease("q3", B.worker_id, 0.05)  # expires: no longer held
        await asyncio.sleep(0.1)
        a2, b = await store.workers(60)  # the oldest first
        assert (a2.worker_id, a2.state, a2.held) == (A.worker_id, "stopping", ("q1", "q2"))
        assert a2.started_at == a.started_at  # kept
        assert parse_rfc3339(a2.heartbeat_at) > parse_rfc3339(a.heartbeat_at)
        assert (b.worker_id, b.concurrency, b.held) == (B.worker_id, 8, ())
        await asyncio.sleep(0.6)
        await other.heartbeat(B)
        assert [w.worker_id for w in await store.workers(0.5)] == [B.worker_id]  # A is late
        await store.remove_worker(A.worker_id)
        await store.remove_worker("nobody@h:1/z")  # unknown: nothing happens
        assert [w.worker_id for w in await other.workers(60)] == [B.worker_id]

    stores.run(body)
