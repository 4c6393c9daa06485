"""Journal benchmark: steps per second with the durable SQLite journal.

Run with `.venv/bin/python bench/journal.py [--rounds N] [--seconds S] [--dir DIR] [--quick]`
(`--quick`: one round of 0.5 s measurements). Measures,
on one disk (DIR, default .sagac/bench) and in rounds that interleave the three measurements
(the disk and the shared CPU drift by 20% within minutes here): the raw rate of one-row SQLite
commits in WAL mode with synchronous=FULL, once the WAL has been written through and is reused
(the ceiling for anything that commits once per state change); steps per second for one saga at
a time (target >= 4,000); and for 50 concurrent sagas in one process with group commit (target
>= 20,000). Prints every round, then the medians, each next to the raw rate and with the
commits per step, and each against its target (the disk-bound one also scaled to this disk's
raw rate). Sagas are 100 `mock` steps with a templated idempotency key, so what is
measured is the executor plus the journal.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import time
from pathlib import Path

from sagac.compiler.pipeline import compile_text
from sagac.compiler.plan import Plan
from sagac.runtime.api import arun
from sagac.runtime.store.sqlite import SqliteStore

STEPS = 100
CONCURRENT = 50
TARGET_ONE, TARGET_MANY = 4_000, 20_000
TARGET_RAW = 7_200  # the raw commits/s the targets were set against, on the disk


def saga(n: int = STEPS) -> Plan:
    steps = "\n".join(
        f"  - id: s{i}\n    action: m\n    idempotency_key: 'k-{{{{ run.id }}}}-{i}'"
        for i in range(n)
    )
    text = f"saga: bench\nactions:\n  m: {{mock: {{result: {{ok: true}}}}}}\nsteps:\n{steps}\n"
    plan = compile_text(text, "bench.yaml").plan
    assert plan is not None
    return plan


class RawCommits:
    """One-row commits on a file of their own, measured once its WAL is reused (a growing WAL
    costs more per commit, which would flatter everything measured against it)."""

    def __init__(self, folder: Path) -> None:
        self.c = sqlite3.connect(folder / "raw.db", isolation_level=None)
        self.c.execute("PRAGMA journal_mode = WAL")
        self.c.execute("PRAGMA synchronous = FULL")
        self.c.execute("CREATE TABLE t (run TEXT, seq INTEGER, body TEXT)")
        self.n = 0
        self.commit(2_500)  # past the first checkpoint (1,000 pages): the WAL starts over

    def commit(self, count: int) -> None:
        for _ in range(count):
            self.c.execute("BEGIN IMMEDIATE")
            self.c.execute("INSERT INTO t VALUES ('r', ?, '{}')", (self.n,))
            self.c.execute("COMMIT")
            self.n += 1

    def rate(self, seconds: float) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.commit(100)
            n += 100
        return n / (time.perf_counter() - t0)


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


def verdict(rate: float, target: int, raw: float | None = None) -> str:
    """Against the target; for a disk-bound rate (`raw` given) also against the target scaled
    to this run's disk: the targets were set where one-row commits ran at TARGET_RAW/s, and
    this disk's rate drifts by 20% and more."""
    out = f"target {target:,}: {'met' if rate >= target else 'NOT met'}"
    if raw is not None:
        scaled = target * raw / TARGET_RAW
        out += (
            f"; scaled to this disk ({raw:,.0f} raw commits/s against {TARGET_RAW:,}):"
            f" {scaled:,.0f}, {'met' if rate >= scaled else 'NOT met'}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--dir", default=".sagac/bench", help="where the journal files go")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, one round: what `make bench` runs (seconds, not minutes)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, min(args.seconds, 0.5)
    folder = Path(args.dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    plan = saga()
    raws: list[float] = []
    ones: list[tuple[float, float]] = []
    manys: list[tuple[float, float]] = []
    try:
        raw = RawCommits(folder)

        async def measure() -> None:
            store = SqliteStore(folder / "journal.db")
            try:
                await one_at_a_time(store, plan, 0.5)  # warm up: imports, caches, the WAL
                await concurrent(store, plan, 0.5)
                for i in range(args.rounds):
                    raws.append(raw.rate(args.seconds / 2))
                    ones.append(await one_at_a_time(store, plan, args.seconds))
                    manys.append(await concurrent(store, plan, args.seconds))
                    print(
                        f"round {i + 1}: raw commits {raws[-1]:6,.0f}/s   one saga at a time"
                        f" {ones[-1][0]:6,.0f} steps/s   {CONCURRENT} concurrent"
                        f" {manys[-1][0]:7,.0f} steps/s",
                        flush=True,
                    )
            finally:
                await store.close()

        asyncio.run(measure())
        raw.c.close()
        r = statistics.median(raws)
        one, cps1 = (statistics.median(x[i] for x in ones) for i in (0, 1))
        many, cps2 = (statistics.median(x[i] for x in manys) for i in (0, 1))
        print(f"medians of {args.rounds} rounds:")
        print(f"raw SQLite commits (WAL, synchronous=FULL, one row): {r:10,.0f} /s")
        print(
            f"one saga at a time ({STEPS} steps):    {one:10,.0f} steps/s  "
            f"({cps1:.2f} commits/step; {one / r:.2f} x raw)\n    {verdict(one, TARGET_ONE, r)}"
        )
        print(
            f"{CONCURRENT} concurrent sagas, group commit: {many:10,.0f} steps/s  "
            f"({cps2:.3f} commits/step; {many / r:.2f} x raw)\n    {verdict(many, TARGET_MANY)}"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
