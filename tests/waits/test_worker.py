"""Parked runs moved by a real `sagac worker` process: a due sleep and a wait's timeout are
woken on time (within 1 s), and a signal wakes the run at once (SQLite, and PostgreSQL on the
session's throw-away server)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sagac.runtime.clock import parse_rfc3339

import sagac

ROOT = Path(__file__).resolve().parents[2]

TIMERS = """
saga: timers
steps:
  - {id: reserve, action: {mock: {result: {}}}, compensate: {action: {mock: {result: {}}}}}
  - sleep: {id: hold, for: 2s}
  - wait: {id: paid, signal: paid, timeout: 2s}
"""

SIGNALLED = """
saga: signalled
steps:
  - wait: {id: paid, signal: paid, timeout: 1h}
output: {paid: "{{ steps.paid.result }}"}
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAC_")}
    return {**env, "NO_COLOR": "1"}


class Worker:
    """A `sagac worker` process on `store`, its JSON log in a file."""

    def __init__(self, store: str, folder: Path) -> None:
        self.log = folder / f"worker-{time.monotonic_ns()}.log"
        self._err = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sagac", "worker", "--store", store, "--poll", "5s"],
            cwd=folder,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )

    def lines(self, event: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            row = json.loads(line)
            if row.get("event") == event:
                out.append(row)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def _submit(store: str, folder: Path, text: str) -> str:
    (folder / "saga.yaml").write_text(text)

    async def go() -> str:
        s = sagac.open_store(store)
        try:
            return (await sagac.asubmit(sagac.load(folder / "saga.yaml"), {}, store=s)).run_id
        finally:
            await s.close()

    return asyncio.run(go())


def _finished(store: str, run_id: str, timeout: float = 30.0) -> tuple[str, list[dict[str, Any]]]:
    """The run's final status and its events, once it finished."""

    async def look() -> tuple[str, list[dict[str, Any]]]:
        s = sagac.open_store(store)
        try:
            return (await s.get_run(run_id)).status, await s.load_events(run_id)
        finally:
            await s.close()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, events = asyncio.run(look())
        if status in sagac.FINAL_STATUSES:
            return status, events
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {status}")


def _sagac(*args: str, cwd: Path) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "sagac", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_worker_wakes_a_sleep_and_fires_a_wait_timeout_on_time(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    run_id = _submit(store, tmp_path, TIMERS)
    worker = Worker(store, tmp_path)
    try:
        status, events = _finished(store, run_id)
    finally:
        worker.stop()
    assert status == "compensated"
    by_type = {e["type"]: e for e in events if e["type"] != "wait_ended"}
    ended = {e["step"]: e for e in events if e["type"] == "wait_ended"}
    until = parse_rfc3339(by_type["sleep_started"]["until"])
    assert ended["hold"]["reason"] == "due"
    assert until <= parse_rfc3339(ended["hold"]["at"]) < until + 1  # woken on time
    deadline = parse_rfc3339(by_type["wait_started"]["deadline"])
    assert ended["paid"]["reason"] == "timeout"
    assert deadline <= parse_rfc3339(ended["paid"]["at"]) < deadline + 1  # fired on time
    assert by_type["saga_failed"]["failure"]["code"] == "WAIT_TIMEOUT"
    assert len(worker.lines("parked")) == 2  # parked on the sleep, then on the wait


def _signal_wakes(store: str, folder: Path) -> None:
    run_id = _submit(store, folder, SIGNALLED)
    worker = Worker(store, folder)
    try:
        deadline = time.monotonic() + 30
        while not worker.lines("parked") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.lines("parked"), worker.log.read_text()
        sent = _sagac(
            "signal", run_id, "paid", "--data", '{"ok": true}', "--store", store, cwd=folder
        )
        assert sent.returncode == 0, sent.stderr
        assert "a live worker continues the run" in sent.stdout
        status, events = _finished(store, run_id)
    finally:
        worker.stop()
    assert status == "succeeded"
    assert events[-1]["output"] == {"paid": {"ok": True}}


def test_a_signal_wakes_a_parked_run_through_a_worker_sqlite(tmp_path: Path) -> None:
    _signal_wakes(f"sqlite:///{tmp_path / 'journal.db'}", tmp_path)


@pytest.mark.usefixtures("pg_server")
def test_a_signal_wakes_a_parked_run_through_a_worker_postgres(
    pg_server: Any, tmp_path: Path
) -> None:
    _signal_wakes(pg_server.database(), tmp_path)
