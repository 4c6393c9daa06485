"""Helpers for the worker tests: saga folders of their own, `sagac submit`, worker processes
(real `python -m sagac worker` subprocesses whose JSON log lines are read back), and checks of
the ledger the example actions write (tests/durable/sagas/ledger_shop.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DURABLE_SAGAS = ROOT / "tests" / "durable" / "sagas"

# Charge, a slow step (`input.seconds`), reserve; undone in reverse on failure.
SLOW = """\
saga: slow_checkout
input:
  type: object
  required: [order_id]
  properties:
    order_id: {type: string}
    seconds: {type: number}
actions:
  charge: {python: "ledger_shop:charge"}
  refund: {python: "ledger_shop:refund"}
  slow: {python: "slow_shop:slow"}
  reserve: {python: "ledger_shop:reserve"}
steps:
  - id: charge
    action: charge
    with: {order_id: "{{ input.order_id }}"}
    idempotency_key: "{{ input.order_id }}-charge"
    compensate:
      action: refund
      with: {payment_id: "x"}
      idempotency_key: "{{ input.order_id }}-refund"
  - id: wait
    action: slow
    with: {order_id: "{{ input.order_id }}", seconds: "{{ input.seconds | default(1) }}"}
    idempotency_key: "{{ input.order_id }}-slow"
  - id: reserve
    action: reserve
    with: {order_id: "{{ input.order_id }}"}
    idempotency_key: "{{ input.order_id }}-reserve"
"""


# The slow step: a ledger line, then `seconds` of waiting, cut short once a file `fast` is in
# the folder (so that a run interrupted in it is finished quickly by the next worker).
SLOW_SHOP = """\
import asyncio
from pathlib import Path

from ledger_shop import _call


async def slow(order_id, seconds=1.0, context=None):
    out = _call("slow", context)
    fast = Path(__file__).with_name("fast")
    waited = 0.0
    while waited < seconds and not fast.exists():
        await asyncio.sleep(0.05)
        waited += 0.05
    return out
"""


def saga_folder(folder: Path) -> Path:
    """`folder` holding copies of ledger_checkout.yaml and ledger_shop.py, and slow.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DURABLE_SAGAS / "ledger_checkout.yaml", folder / "ledger_checkout.yaml")
    shutil.copy(DURABLE_SAGAS / "ledger_shop.py", folder / "ledger_shop.py")
    (folder / "slow_shop.py").write_text(SLOW_SHOP)
    (folder / "slow.yaml").write_text(SLOW)
    return folder


def env(ledger: Path, **more: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SAGAC_")}
    return {**base, "NO_COLOR": "1", "SAGAC_TEST_LEDGER": str(ledger), **more}


def sagac(*args: str, ledger: Path, cwd: Path = ROOT, stdin: str = "") -> Any:
    """`python -m sagac ARGS` in a real process; the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "sagac", *args],
        cwd=cwd,
        env=env(ledger),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def submit(store: str, file: Path, data: dict[str, Any], ledger: Path, *more: str) -> str:
    done = sagac("submit", str(file), "--input", json.dumps(data), "--store", store, *more,
                 ledger=ledger)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id: str = done.stdout.strip()
    return run_id


class Worker:
    """A `sagac worker` process; its stderr (the JSON log) goes to a file read by `lines`."""

    def __init__(self, store: str, folder: Path, ledger: Path, *args: str, **env_more: str):
        self.log = folder / f"worker-{time.monotonic_ns()}.log"
        self._err = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sagac", "worker", "--store", store, *args],
            cwd=ROOT,
            env=env(ledger, **env_more),
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"event": "not_json", "text": line})
        return out

    def events(self, event: str, run_id: str | None = None) -> list[dict[str, Any]]:
        return [
            x
            for x in self.lines()
            if x.get("event") == event and (run_id is None or x.get("run_id") == run_id)
        ]

    def wait_for(
        self, event: str, run_id: str | None = None, timeout: float = 30.0, count: int = 1
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(event, run_id)
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(
            f"no {count} {event!r} line(s) for {run_id} (exit {self.proc.poll()}):\n"
            + self.log.read_text()
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._err.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.wait()


def wait_until(check: Any, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def order_of(key: str) -> str:
    """`o-7-charge` -> `o-7`: the run an action call belongs to."""
    return key.rsplit("-", 1)[0]


def check_ledger(entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    """No action was effective twice for one key, and the calls of one run never interleave
    across processes: per run, each pid's calls form one unbroken stretch (a second worker
    only ever continues after the first stopped). Returns run -> the pids in order."""
    effective: dict[tuple[str, str], int] = defaultdict(int)
    pids: dict[str, list[int]] = defaultdict(list)
    for e in entries:
        effective[(e["action"], e["key"])] += e["effective"]
        pids[order_of(e["key"])].append(e["pid"])
    doubled = {k: n for k, n in effective.items() if n > 1}
    assert not doubled, f"charged (or undone) twice: {doubled}"
    out = {}
    for order, seq in pids.items():
        stretches = [p for i, p in enumerate(seq) if i == 0 or seq[i - 1] != p]
        assert len(stretches) == len(set(stretches)), f"run {order} interleaved: {seq}"
        out[order] = [str(p) for p in stretches]
    return out


def runs(store: str, ledger: Path, *more: str) -> list[dict[str, Any]]:
    done = sagac("runs", "--store", store, "--json", "--limit", "10000", *more, ledger=ledger)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def submit_many(store: str, file: Path, inputs: list[dict[str, Any]]) -> list[str]:
    """Submit a run per input through the Python API (`sagac.asubmit`), in this process."""
    import asyncio

    import sagac

    async def go() -> list[str]:
        s = sagac.open_store(store)
        try:
            plan = sagac.load(file)
            return [(await sagac.asubmit(plan, data, store=s)).run_id for data in inputs]
        finally:
            await s.close()

    return asyncio.run(go())
