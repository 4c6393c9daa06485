"""The contract's child runs (issue 13, `call`): a run's parent link, kept by `create_run` and
read back everywhere; `children`; a finished child waking its parked parent."""

from __future__ import annotations

import asyncio
import time

import pytest
from sagac.runtime.store.base import RunRecord

from .conftest import Stores, ev
from .test_claims import SAGA, claim_all
from .test_parked_rows import FAR, park, sleeping, started, wake_at


def child(run_id: str, parent: str = "parent", step: str = "reserve") -> RunRecord:
    record = RunRecord(run_id, "child", 1, SAGA.hash, {"n": 1})
    record.parent_run_id, record.parent_step = parent, step
    return record


def test_a_child_run_knows_its_parent_and_the_parent_its_children(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await started(store, "parent")
        await store.create_run(child("c1"), SAGA)
        await store.create_run(child("c2", step="ship"), SAGA)
        await store.create_run(child("elsewhere", parent="other"), SAGA)
        other = s.open()
        read = await other.get_run("c2")
        assert (read.parent_run_id, read.parent_step) == ("parent", "ship")
        parent = await other.get_run("parent")
        assert (parent.parent_run_id, parent.parent_step) == (None, None)
        listed = {r.run_id: (r.parent_run_id, r.parent_step) for r in await other.list_runs()}
        assert listed == {
            "parent": (None, None),
            "c1": ("parent", "reserve"),
            "c2": ("parent", "ship"),
            "elsewhere": ("other", "reserve"),
        }
        assert [r.run_id for r in await other.children("parent")] == ["c1", "c2"]
        assert [r.run_id for r in await other.children("c1")] == []
        assert await other.children("nope") == []

    stores.run(body)


@pytest.mark.parametrize("how", ["append", "update_run"])
def test_a_finished_child_wakes_its_parked_parent(stores: Stores, how: str) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await sleeping(store, "parent", FAR)  # parked while its child is parked too
        await store.create_run(child("c1"), SAGA)
        await store.append("c1", [ev("c1", 1, "saga_started")])
        await park(store, "c1", 2)
        assert await wake_at(s.open(), "parent") == FAR
        waiter = s.open()
        await waiter.wait_for_work(0)
        waiting = asyncio.ensure_future(waiter.wait_for_work(30))
        before = time.time()
        if how == "append":
            await store.append(
                "c1", [ev("c1", 3, "saga_completed")], report={"status": "succeeded"}
            )
        else:
            await store.update_run("c1", "compensated", {"status": "compensated"})
        assert before - 1 <= (await wake_at(s.open(), "parent") or 0) <= time.time() + 1
        assert await asyncio.wait_for(waiting, 10) is True
        assert await claim_all(s.open()) == ["parent"]

    stores.run(body)


def test_a_child_that_parks_or_a_running_parent_is_left_alone(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await sleeping(store, "parent", FAR)
        await store.create_run(child("c1"), SAGA)
        await store.append("c1", [ev("c1", 1, "saga_started")])
        await park(store, "c1", 2)  # only a child that finishes wakes its parent
        assert await wake_at(s.open(), "parent") == FAR
        await started(store, "running")
        await store.create_run(child("c2", parent="running"), SAGA)
        wake = await wake_at(store, "running")
        await store.update_run("c2", "failed", {"status": "failed"})
        assert await wake_at(s.open(), "running") == wake  # its driver sees the child itself

    stores.run(body)
