"""A queued run becomes `running` with the append of its `saga_started` (no write of its own),
and `load_events` tells an empty journal from an unknown run."""

from __future__ import annotations

import pytest
from sagac.runtime.store import Store

from sagac.errors import RunNotFound

from .conftest import Stores, ev
from .test_claims import queued


def test_the_append_of_saga_started_makes_a_queued_run_running(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await queued(store, "r1")
        await queued(store, "r2", status="interrupted")
        assert await store.load_events("r1") == []
        # Together with the first step's start, as the executor's group commit sends them.
        started = ev("r1", 1, "saga_started", saga="s", version=1, input={})
        await store.append("r1", [started, ev("r1", 2, "step_started", step="a", attempt=1)])
        await store.append("r2", [ev("r2", 1, "saga_started", saga="s", version=1, input={})])
        again = s.open()  # another process sees it too
        record = await again.get_run("r1")
        assert record.status == "running"
        assert [e["type"] for e in await again.load_events("r1")] == [
            "saga_started",
            "step_started",
        ]
        assert (await again.get_run("r2")).status == "interrupted"  # only a queued run moves
        await store.append("r1", [ev("r1", 3, "step_completed", step="a", attempt=1)])
        assert (await again.get_run("r1")).status == "running"

    stores.run(body)


def test_loading_the_journal_of_an_unknown_run_is_refused(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store: Store = s.open()
        await queued(store, "r1")
        assert await store.load_events("r1", after_seq=5) == []
        with pytest.raises(RunNotFound):
            await store.load_events("nope")

    stores.run(body)
