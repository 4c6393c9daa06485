"""`sagac runs --status stuck` lists a `waiting` run whose wake time came long ago and that no
lease covers (a sleep due, nobody to wake it), and not one parked until later."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sagac.runtime.api import arun
from sagac.runtime.store.sqlite import SqliteStore
from sagac.runtime.stuck import stuck_runs

from .support import plan_of

SAGAS = """
saga: naps
input: {type: object}
steps:
  - sleep: {id: rest, for: "FOR"}
"""


def test_a_waiting_run_due_long_ago_is_stuck_and_one_due_later_is_not(tmp_path: Path) -> None:
    soon = plan_of(SAGAS.replace('"FOR"', "200ms"))
    later = plan_of(SAGAS.replace('"FOR"', "1h"))

    async def go() -> None:
        store = SqliteStore(tmp_path / "journal.db")
        try:
            due = await arun(soon, {}, store=store, sleep_limit=0)
            parked = await arun(later, {}, store=store, sleep_limit=0)
            assert due.status == parked.status == "waiting"
            await asyncio.sleep(0.5)
            [(record, why)] = await stuck_runs(store, 0.2)
            assert record.run_id == due.run_id
            assert why.startswith("waiting, woken") and "no lease; 0 workers alive" in why
        finally:
            await store.close()

    asyncio.run(go())
