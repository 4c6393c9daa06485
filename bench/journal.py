"""Journal benchmark: steps per second with the durable SQLite journal.

Run with `.venv/bin/python bench/journal.py [--seconds S] [--dir DIR]`. Measures, in one run and
on one disk (DIR, default .sagac/bench): the raw rate of one-row SQLite commits in WAL mode with
synchronous=FULL (the ceiling for anything that commits once per state change), then steps per
second for one saga at a time (target >= 4,000) and for 50 concurrent sagas in one process with
group commit (target >= 20,000), each printed next to that raw rate with the commits per step.
Sagas are 100 `mock` steps, so what is measured is the executor plus the journal.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

from sagac.compiler.pipeline import compile_text
from sagac.compiler.plan import Plan
from sagac.runtime.api import arun
from sagac.runtime.store.sqlite import SqliteStore

STEPS = 100
CONCURRENT = 50


def saga(n: int = STEPS) -> Plan:
    steps = "\n".join(
        f"  - id: s{i}\n    action: m\n    idempotency_key: 'k-{{{{ run.id }}}}-{i}'"
        for i in range(n)
    )
    text = f"saga: bench\nactions:\n  m: {{mock: {{result: {{ok: true}}}}}}\nsteps:\n{steps}\n"
    plan = compile_text(text, "bench.yaml").plan
    assert plan is not None
    return plan


def raw_commit_rate(folder: Path, seconds: float, name: str = "raw") -> float:
    path = folder / f"{name}.db"
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA synchronous = FULL")
    c.execute("CREATE TABLE t (run TEXT, seq INTEGER, body TEXT)")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO t VALUES ('r', ?, '{}')", (n,))
        c.execute("COMMIT")
        n += 1
    rate = n / (time.perf_counter() - t0)
    c.close()
    return rate


async def one_at_a_time(store: SqliteStore, plan: Plan, seconds: float) -> tuple[float, float]:
    steps, c0, t0 = 0, store.commits, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        report = await arun(plan, {}, store=store)
        assert report.status == "succeeded"
        steps += STEPS
    return steps / (time.perf_counter() - t0), (store.commits - c0) / steps


async def concurrent(store: SqliteStore, plan: Plan, seconds: float) -> tuple[float, float]:
    steps, c0, t0 = 0, store.commits, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        reports = await asyncio.gather(*(arun(plan, {}, store=store) for _ in range(CONCURRENT)))
        assert {r.status for r in reports} == {"succeeded"}
        steps += STEPS * CONCURRENT
    return steps / (time.perf_counter() - t0), (store.commits - c0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--dir", default=".sagac/bench", help="where the journal files go")
    args = parser.parse_args()
    folder = Path(args.dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    plan = saga()
    try:
        raw = raw_commit_rate(folder, min(args.seconds, 2.0))
        print(f"raw SQLite commits (WAL, synchronous=FULL, one row): {raw:10,.0f} /s", flush=True)

        async def measure() -> tuple[tuple[float, float], tuple[float, float]]:
            store = SqliteStore(folder / "journal.db")
            try:
                await arun(plan, {}, store=store)  # warm up: imports, caches, the file
                one = await one_at_a_time(store, plan, args.seconds)
                many = await concurrent(store, plan, args.seconds)
                return one, many
            finally:
                await store.close()

        (one, cps1), (many, cps2) = asyncio.run(measure())
        raw_after = raw_commit_rate(folder, min(args.seconds, 2.0), "raw-after")
        print(f"raw SQLite commits, measured again after the runs:    {raw_after:10,.0f} /s")
        print(
            f"one saga at a time ({STEPS} steps):    {one:10,.0f} steps/s  "
            f"({cps1:.2f} commits/step; target 4,000; raw commits {raw:,.0f}/s)"
        )
        print(
            f"{CONCURRENT} concurrent sagas, group commit: {many:10,.0f} steps/s  "
            f"({cps2:.3f} commits/step; target 20,000; raw commits {raw:,.0f}/s)"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
