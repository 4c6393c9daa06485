"""Timers benchmark: thousands of runs parked on sleeps, woken on time by one `sagac worker`.

Run with `.venv/bin/python bench/timers.py [--quick]`. In a temporary folder, it parks 10,000
runs (`--quick`: 1,000) of a saga that sleeps `until` a time of its input, on a SQLite journal:
each run is started in this process with a sleep limit of 0, so it journals its due time and
parks (`waiting`). The due times are spread evenly over one minute (`--quick`: 20 s) that
begins `--idle` seconds after the parking is expected to end. Then one `sagac worker
--concurrency 32` starts on the journal and

1. its CPU use while nothing is due: user + system time from `/proc/PID/stat` over the window
   from its start-up (6 s after it started) to 1 s before the first due time, over the wall
   time of that window; target < 1% (it sleeps until `Store.next_wake` or a wake-up, it does
   not poll the table);
2. how late each run was woken: its `wait_ended` event's time minus its journaled due time,
   p50, p99 and the worst, once every run finished; target: every run within 1 s;
3. the peak RSS of the worker (`VmHWM`) and of this process.

It never touches a file it did not create, and stops the worker it started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sagac.compiler.pipeline import load  # noqa: E402
from sagac.runtime.api import arun  # noqa: E402
from sagac.runtime.clock import parse_rfc3339, rfc3339  # noqa: E402
from sagac.runtime.store.sqlite import SqliteStore  # noqa: E402

TARGET_LATE = 1.0  # seconds after its due time, at the latest
TARGET_IDLE_CPU = 0.01  # the worker's CPU share while nothing is due
SAGAC = Path(sys.executable).with_name("sagac")
TICKS = os.sysconf("SC_CLK_TCK")
STARTUP = 6.0  # seconds a worker may take to start (imports, first claim) on a busy machine

SAGA = """\
saga: timers
input: {type: object, required: [at], properties: {at: {type: string}}}
steps:
  - sleep: {id: hold, until: "{{ input.at }}"}
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def park(db: Path, plan_file: Path, dues: list[float], concurrency: int) -> list[str]:
    """Start one run per due time; each parks on its sleep. Returns the run ids."""
    plan = load(plan_file)
    store = SqliteStore(db)
    ids: list[str] = []
    try:
        for i in range(0, len(dues), concurrency):
            chunk = dues[i : i + concurrency]
            reports = await asyncio.gather(
                *(arun(plan, {"at": rfc3339(d)}, store=store, sleep_limit=0) for d in chunk)
            )
            for r in reports:
                if r.status != "waiting":
                    raise SystemExit(f"run {r.run_id} did not park ({r.status}): raise --lead")
                ids.append(r.run_id)
    finally:
        await store.close()
    return ids


async def lateness(db: Path, ids: list[str]) -> tuple[list[float], int]:
    """Each finished run's wake-up lateness (seconds), and how many have not finished."""
    store = SqliteStore(db)
    late, unfinished = [], 0
    try:
        for run_id in ids:
            events = await store.load_events(run_id)
            until = next(e["until"] for e in events if e["type"] == "sleep_started")
            woke = [e["at"] for e in events if e["type"] == "wait_ended"]
            if not woke or events[-1]["type"] != "saga_completed":
                unfinished += 1
                continue
            late.append(parse_rfc3339(woke[0]) - parse_rfc3339(until))
    finally:
        await store.close()
    return late, unfinished


async def finished(db: Path) -> int:
    store = SqliteStore(db)
    try:
        return len(await store.list_runs(status="succeeded", limit=10**9))
    finally:
        await store.close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 runs over 20 s")
    parser.add_argument("--runs", type=int, help="parked runs (default 10,000; quick 1,000)")
    parser.add_argument("--spread", type=float, help="seconds the due times cover (60; 20)")
    parser.add_argument("--lead", type=float, help="seconds allowed for parking (60; 15)")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds nothing is due")
    parser.add_argument("--concurrency", type=int, default=32, help="the worker's slots")
    args = parser.parse_args()
    runs = args.runs or (1_000 if args.quick else 10_000)
    spread = args.spread or (20.0 if args.quick else 60.0)
    lead = args.lead or (15.0 if args.quick else 60.0)

    with tempfile.TemporaryDirectory(prefix="sagac-timers-") as tmp:
        folder = Path(tmp)
        (folder / "timers.yaml").write_text(SAGA)
        db = folder / "journal.db"
        t0 = time.time()
        first_due = t0 + lead + args.idle
        dues = [first_due + spread * i / runs for i in range(runs)]
        random.shuffle(dues)
        ids = asyncio.run(park(db, folder / "timers.yaml", dues, 100))
        parked_in = time.time() - t0
        print(f"timers: {runs} runs parked in {parked_in:.1f} s, due over {spread:g} s from"
              f" {first_due - time.time():.1f} s from now")  # fmt: skip
        if time.time() > first_due - 5:
            raise SystemExit("parking took too long for an idle window: raise --lead")

        log = (folder / "worker.log").open("w")
        worker = subprocess.Popen(
            [str(SAGAC), "worker", "--store", f"sqlite:///{db}", "--concurrency",
             str(args.concurrency)],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        try:
            time.sleep(STARTUP)  # its start-up: imports, the first claim
            c0, w0 = cpu_seconds(worker.pid), time.monotonic()
            time.sleep(max(first_due - 1.0 - time.time(), 0.5))
            c1, w1 = cpu_seconds(worker.pid), time.monotonic()
            idle_share = (c1 - c0) / (w1 - w0)
            deadline = first_due + spread + 60
            while time.time() < deadline and asyncio.run(finished(db)) < runs:
                time.sleep(1.0)
            worker_rss = peak_rss_mib(worker.pid)
            worker_cpu = cpu_seconds(worker.pid)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
            log.close()
        late, unfinished = asyncio.run(lateness(db, ids))

    within = sum(x <= TARGET_LATE for x in late)
    print(
        f"1. worker CPU while nothing was due: {idle_share:.2%} over {w1 - w0:.1f} s"
        f" (target < {TARGET_IDLE_CPU:.0%}: {'met' if idle_share < TARGET_IDLE_CPU else 'NOT met'})"
    )
    if late:
        verdict = "met" if within == runs else "NOT met"
        print(
            f"2. lateness of {len(late)} wake-ups: p50 {statistics.median(late) * 1000:.0f} ms,"
            f" p99 {pct(late, 0.99) * 1000:.0f} ms, worst {max(late) * 1000:.0f} ms;"
            f" {within}/{runs} within {TARGET_LATE:g} s (target: all: {verdict});"
            f" {unfinished} unfinished"
        )
    print(
        f"3. peak RSS: worker {worker_rss:.0f} MiB (CPU {worker_cpu:.1f} s in all),"
        f" this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
