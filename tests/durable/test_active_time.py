"""The saga `timeout` counts active time (spec section 1): time parked at an approval gate does
not count, and the active time used before parking is journaled, so a resumed run goes on with
what is left of it, not with a fresh budget."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from sagac.runtime import approvals
from sagac.runtime import resume as durable
from sagac.runtime.store.sqlite import SqliteStore

from .durable_support import sagac

TOKEN = re.compile(r"--token (\S+)")
RUN = re.compile(r"run (\w+) waits for approval")

SAGA = """\
saga: parked
timeout: {timeout}
actions:
  work: {{mock: {{result: {{ok: true}}, delay: {delay}}}}}
steps:
  - {{id: before, action: work}}
  - approval: {{id: sign_off, approvers: [alice], timeout: 48h}}
  - {{id: after, action: work}}
"""


def write(tmp_path: Path, timeout: str, delay: str) -> Path:
    path = tmp_path / "parked.yaml"
    path.write_text(SAGA.format(timeout=timeout, delay=delay))
    return path


def test_time_parked_at_a_gate_does_not_count(tmp_path: Path) -> None:
    saga, store = write(tmp_path, "1s", "0ms"), f"sqlite:///{tmp_path / 'j.db'}"
    ran = sagac("run", str(saga), "--store", store)
    assert ran.returncode == 3, ran.stderr
    parked = time.monotonic()
    token = TOKEN.search(ran.stderr).group(1)  # type: ignore[union-attr]
    run_id = RUN.search(ran.stderr).group(1)  # type: ignore[union-attr]
    time.sleep(max(0.0, 1.5 - (time.monotonic() - parked)))  # longer than the saga's timeout
    ok = sagac(
        "approve", run_id, "--gate", "sign_off", "--as", "alice", "--token", token,
        "--store", store, "--resume",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "succeeded" in ok.stdout


def test_active_time_used_before_the_gate_still_counts_after_resume(tmp_path: Path) -> None:
    # 0.6 s before the gate and 0.6 s after it: over a 1 s budget of active time, though each
    # process alone stays under it.
    saga, db = write(tmp_path, "1s", "600ms"), tmp_path / "j.db"

    async def go() -> Any:
        store = SqliteStore(db)
        try:
            first = await durable.start(saga, {}, store=store)
            assert first.status == "waiting_approval"
            events = await store.load_events(first.run_id)
            waiting = [e for e in events if e["type"] == "saga_waiting"]
            assert 600 <= waiting[-1]["active_ms"] < 1000
            token = first.approval_tokens["sign_off"]
            await approvals.decide(
                store, first.run_id, "sign_off", approved=True, by="alice", token=token
            )
            return await durable.resume(first.run_id, store=store)
        finally:
            await store.close()

    report = asyncio.run(go())
    assert report.status == "failed"
    assert report.failure is not None
    assert (report.failure.code, report.failure.step) == ("SAGA_TIMEOUT", "after")
