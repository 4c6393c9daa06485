"""From a claim to the first action, in one process on a real SQLite file: the worker adopts
the lease its claim wrote, and still stops a run whose lease it lost; a queued run asked to
cancel before any worker took it never runs a step."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sagac.runtime.store.sqlite import SqliteStore

import sagac

ACTIONS = """\
import asyncio


async def slow() -> dict:
    await asyncio.sleep(5)
    return {}
"""
SAGA = """\
saga: slowpoke
actions:
  slow: {python: "claim_path_actions:slow"}
  undo: {mock: {result: {}}}
steps:
  - {id: first, action: slow, compensate: {action: undo}}
  - {id: second, action: slow}
"""


def _saga(folder: Path) -> Path:
    (folder / "claim_path_actions.py").write_text(ACTIONS)
    file = folder / "slowpoke.yaml"
    file.write_text(SAGA)
    return file


def test_a_worker_whose_claimed_lease_is_lost_stops_the_run_and_writes_nothing(
    tmp_path: Path,
) -> None:
    async def go() -> tuple[int, list[dict[str, Any]], list[str], str]:
        store, other = SqliteStore(tmp_path / "j.db"), SqliteStore(tmp_path / "j.db")
        try:
            run_id = (await sagac.asubmit(_saga(tmp_path), {}, store=store)).run_id
            lines: list[dict[str, Any]] = []
            worker = asyncio.create_task(
                sagac.arun_worker(
                    store, concurrency=1, lease_ttl=0.6, exit_when_idle=True, log=lines.append
                )
            )
            deadline = time.monotonic() + 10
            while not any(e["type"] == "step_started" for e in await other.load_events(run_id)):
                assert time.monotonic() < deadline, lines
                await asyncio.sleep(0.02)
            # Another worker took the run (as after an expiry), for long.
            await other.write(
                lambda c: c.execute(
                    "UPDATE leases SET owner = 'thief@elsewhere:1/x', expires_at = ?",
                    (time.time() + 3600,),
                )
            )
            code = await asyncio.wait_for(worker, 10)
            events = [e["type"] for e in await other.load_events(run_id)]
            return code, lines, events, (await other.get_run(run_id)).status
        finally:
            await store.close()
            await other.close()

    code, lines, events, status = asyncio.run(go())
    assert code == 0
    assert [line["event"] for line in lines if "run_id" in line][:3] == [
        "claimed",
        "started",
        "lease_lost",
    ]
    assert events == ["saga_started", "step_started"]  # nothing after the loss
    assert status == "running"


def test_a_queued_run_cancelled_before_its_claim_runs_no_step(tmp_path: Path) -> None:
    async def go() -> tuple[list[str], str]:
        store = SqliteStore(tmp_path / "j.db")
        try:
            run_id = (await sagac.asubmit(_saga(tmp_path), {}, store=store)).run_id
            assert await store.request_cancel(run_id, "alice", "not now")
            code = await sagac.arun_worker(store, concurrency=1, exit_when_idle=True)
            assert code == 0
            events = [e["type"] for e in await store.load_events(run_id)]
            return events, (await store.get_run(run_id)).status
        finally:
            await store.close()

    events, status = asyncio.run(go())
    assert "step_started" not in events
    assert events[:2] == ["saga_started", "cancel_requested"]
    assert status in ("failed", "compensated")
