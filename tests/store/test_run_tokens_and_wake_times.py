"""The contract's run columns for workers: a run's approval token hash (kept as given, read back
by every handle) and its wake time, shown in `RunRecord.meta["wake_at"]`."""

from __future__ import annotations

import time

from sagac.runtime import approvals
from sagac.runtime.store.base import RunRecord

from .conftest import Stores, new_run
from .test_claims import approve, parked, queued


def test_a_runs_approval_token_hash_is_kept_and_read_back(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        _, digest = approvals.new_token()
        record = RunRecord("r1", "s", 1, "sha256:d", {}, status="queued")
        record.approval_token_sha256 = digest
        await store.create_run(record)
        await new_run(store, "r2")  # a run started in the foreground has none
        other = s.open()
        assert (await other.get_run("r1")).approval_token_sha256 == digest
        assert (await other.get_run("r2")).approval_token_sha256 is None
        listed = {r.run_id: r.approval_token_sha256 for r in await other.list_runs()}
        assert listed == {"r1": digest, "r2": None}

    stores.run(body)


def test_a_runs_wake_time_is_in_its_meta(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        before = time.time()
        await queued(store, "queued")
        await parked(store, "r1")  # no deadline: only a person wakes it
        await parked(store, "deadline", deadline=before + 3600)
        read = s.open()
        assert before - 1 <= (await read.get_run("queued")).meta["wake_at"] <= time.time() + 1
        assert "wake_at" not in (await read.get_run("r1")).meta
        assert abs((await read.get_run("deadline")).meta["wake_at"] - (before + 3600)) < 1
        decided_at = time.time()
        await approve(store, "r1")  # a decision makes it now
        woken = (await s.open().get_run("r1")).meta["wake_at"]
        assert decided_at - 1 <= woken <= time.time() + 1
        listed = {r.run_id: r.meta.get("wake_at") for r in await s.open().list_runs()}
        assert listed["r1"] == woken

    stores.run(body)
