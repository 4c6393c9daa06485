"""Run (or resume) a saga through the Python API on the SQLite journal, and SIGKILL this very
process at a chosen point: the `kill_at_event`-th event delivered (events are delivered only
once durable), or inside an action (the example's SAGAC_DEMO_CRASH_AT, passed in `env`).

    python driver.py '{"db": PATH, "saga": PATH, "input": PATH, "run_id": ID, "kill_at_event": N}'

Prints the run's status when it was not killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from sagac.runtime import resume as durable
from sagac.runtime.store.sqlite import SqliteStore


def main() -> None:
    cmd = json.loads(sys.argv[1])
    kill_at = cmd.get("kill_at_event")
    count = 0

    def on_event(event: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    async def go() -> str:
        store = SqliteStore(cmd["db"])
        try:
            with open(cmd["input"], encoding="utf-8") as f:
                data = json.load(f)
            report = await durable.start(
                cmd["saga"], data, store=store, run_id=cmd["run_id"], on_event=on_event
            )
            return report.status
        finally:
            await store.close()

    print(asyncio.run(go()))


if __name__ == "__main__":
    main()
