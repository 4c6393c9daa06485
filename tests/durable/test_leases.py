"""Leases: of two processes resuming one run, exactly one proceeds; nothing runs twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sagac.runtime import leases
from sagac.runtime.store.base import owner_alive
from sagac.runtime.store.sqlite import SqliteStore

from .durable_support import ROOT, SAGAS, read_ledger


def test_two_processes_resume_one_run_one_wins(driver: Any, tmp_path: Path) -> None:
    db, ledger = tmp_path / "j.db", tmp_path / "l.jsonl"
    env = {"SAGAC_TEST_LEDGER": str(ledger)}
    # Killed right after `step_started wait` is durable, before the slow action ran.
    answer = driver.run(
        db=str(db), saga=str(SAGAS / "slow.yaml"), input={}, run_id="r", kill_at=2, env=env
    )
    assert answer["signal"] == signal.SIGKILL
    assert read_ledger(ledger) == []
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sagac", "resume", "r", "--store", f"sqlite:///{db}"],
            cwd=ROOT,
            env={**os.environ, **env, "NO_COLOR": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 75], outs
    loser = outs[[p.returncode for p in procs].index(75)][1]
    assert "run r is in progress in another process: " in loser and " until 20" in loser, loser
    assert "error[RUN_BUSY]" in loser
    calls = [(c["action"], c["effective"]) for c in read_ledger(ledger)]
    assert calls == [("slow", True), ("charge", True)]  # each action ran exactly once


def test_a_holder_that_loses_its_lease_stops_like_a_crash(db: Path) -> None:
    async def go() -> None:
        store = SqliteStore(db)
        stopped = False
        try:
            async with leases.held(store, "r", "a@elsewhere:1/x", ttl=0.15):
                await store.write(lambda c: c.execute("UPDATE leases SET owner = 'thief'"))
                try:
                    await asyncio.sleep(5)
                except asyncio.CancelledError:
                    stopped = True
                    raise
        except asyncio.CancelledError:
            pass
        finally:
            await store.close()
        assert stopped

    started = time.monotonic()
    asyncio.run(go())
    assert time.monotonic() - started < 2


def test_owner_liveness_only_judges_processes_of_this_host() -> None:
    import socket

    me = leases.owner_id()
    assert owner_alive(me)
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not owner_alive(f"u@{host}:{dead.pid}/abc")
    assert owner_alive(f"u@another-host:{dead.pid}/abc")
