"""Workers benchmark: the PostgreSQL journal, `sagac worker` processes and wake-up latency.

Run with `.venv/bin/python bench/workers.py [--quick] [--only journal|drain|latency]`. It starts
its own throw-away PostgreSQL server (`tests/throwaway_pg.py`, durable: fsync and
synchronous_commit on, as a production server runs; `--no-fsync`: both off, as the tests run
it) and stops it at the end; SQLite files go in a temporary folder. Every figure is printed
with its time, its ratio to a baseline measured in the same run, its target, and the peak RSS
of the processes that matter. It never touches a server, a database or a file it did not create,
and stops every worker it started.

1. journal: one saga at a time, 100 `mock` steps (bench/journal.py's saga), on the PostgreSQL
   store, against the raw rate of one-row commits of the same server (one connection, INSERT
   one row + COMMIT in a loop, psycopg 3); target >= 0.5 of it. The same for the SQLite journal
   against its disk's raw rate (reference: 0.54 - 0.70). The first saga through a just-opened
   store (the executor warmed on a memory store before) is shown apart from the warm ones
   (medians of interleaved rounds).
2. drain: 1, 2 and 4 `sagac worker` processes (`--concurrency 1` each) draining the same number
   of runs (400; `--quick` 60), all submitted before the workers start, of a saga of 10 python
   steps that each `await asyncio.sleep(0.02)`: runs/s from the workers' start to the last
   run's end (read from the store), and the ratio of 4 workers to 1; target >= 3.5. One run
   at a time per worker, so that N workers can at best be N times one and the ratio measures
   how well the workers share the queue (claims, wake-ups, leases), not asyncio concurrency
   within a process nor this machine's 2 cores (4 runs in flight are 200 steps/s, I/O-bound).
   Without `--quick`, one worker is measured again at the end and the two averaged (the shared
   disk drifts over minutes). The ratio is shown from the workers' start (their start-up
   counted) and from the first claim on. `--concurrency N` gives every worker N slots instead.
3. latency: an idle worker, then a few hundred submits one at a time (`sagac.asubmit` in this
   process, the previous run finished and a random 20 - 80 ms pause before each): the time
   from the submit call to the moment the first step's action runs (a timestamp the action
   returns), p50 and p99. Target on PostgreSQL (LISTEN/NOTIFY): p50 < 10 ms, p99 < 50 ms; the
   SQLite figure (the worker polls the file about every 20 - 50 ms) is shown for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/throwaway_pg.py: the same throw-away server as the tests

from journal import STEPS, RawCommits, saga  # noqa: E402  (bench/journal.py)
from sagac.compiler.pipeline import load  # noqa: E402
from sagac.compiler.plan import Plan  # noqa: E402
from sagac.runtime.api import arun  # noqa: E402
from sagac.runtime.clock import parse_rfc3339  # noqa: E402
from sagac.runtime.store import open_store  # noqa: E402
from sagac.runtime.store.base import Store  # noqa: E402
from sagac.runtime.store.memory import MemoryStore  # noqa: E402
from sagac.runtime.store.postgres import PostgresStore  # noqa: E402
from sagac.runtime.store.sqlite import SqliteStore  # noqa: E402

from tests.throwaway_pg import PgServer  # noqa: E402

TARGET_JOURNAL = 0.5  # steps/s over the server's raw one-row commits/s
TARGET_SCALE = 3.5  # runs/s of 4 workers over 1 worker
TARGET_P50, TARGET_P99 = 0.010, 0.050  # seconds from submit to the first step, PostgreSQL
FINAL = {"succeeded", "failed", "compensated", "compensation_failed", "cancelled", "timed_out"}
SAGAC = Path(sys.executable).with_name("sagac")

ACTIONS = '''\
"""Actions of bench/workers.py's sagas."""

import asyncio
import time


async def nap() -> dict:
    await asyncio.sleep(0.02)
    return {}


async def stamp() -> dict:
    return {"t": time.time()}
'''


def nap_saga(steps: int = 10) -> str:
    lines = ["saga: bench_nap", "actions:", "  nap: {python: 'bench_workers_actions:nap'}"]
    lines += ["steps:", *(f"  - {{id: s{i}, action: nap}}" for i in range(steps))]
    return "\n".join(lines) + "\n"


STAMP_SAGA = (
    "saga: bench_stamp\nactions:\n  stamp: {python: 'bench_workers_actions:stamp'}\n"
    "steps:\n  - {id: first, action: stamp}\n"
)


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def self_peak() -> str:
    return mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# -- the server ------------------------------------------------------------------------------


def start_server(durable: bool) -> PgServer:
    """The tests' throw-away server; `durable`: with fsync and synchronous commits, as a
    production server runs (the tests run without both)."""
    import psycopg

    pg = PgServer(durable=durable)
    with psycopg.connect(pg.admin) as c:
        settings = [c.execute(f"SHOW {n}").fetchone() for n in ("fsync", "synchronous_commit")]
    want = "on" if durable else "off"
    assert settings == [(want,), (want,)], settings
    return pg


# -- 1. the journal, one saga at a time --------------------------------------------------------


class PgRawCommits(RawCommits):
    """One-row commits to the server on one connection (psycopg 3): INSERT, COMMIT, again
    (`rate` is bench/journal.py's, over these commits)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.pg = psycopg.connect(url)
        self.pg.execute("CREATE TABLE raw (run TEXT, seq INTEGER, body TEXT)")
        self.pg.commit()
        self.n = 0
        self.commit(500)  # warm: the connection, the prepared statement, the table's pages

    def commit(self, count: int) -> None:
        for _ in range(count):
            self.pg.execute("INSERT INTO raw VALUES ('r', %s, '{}')", (self.n,))
            self.pg.commit()
            self.n += 1

    def close(self) -> None:
        self.pg.close()


async def saga_rate(store: Store, plan: Plan, seconds: float) -> float:
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        report = await arun(plan, {}, store=store)
        assert report.status == "succeeded", report.failure
        steps += STEPS
    return steps / (time.perf_counter() - t0)


async def first_saga(store: Store, plan: Plan) -> tuple[float, float]:
    """(seconds to open the store, seconds of the first saga through it)."""
    t0 = time.perf_counter()
    await store.list_runs(limit=1)  # opens it: PostgreSQL's pool and migrations
    t1 = time.perf_counter()
    report = await arun(plan, {}, store=store)
    assert report.status == "succeeded", report.failure
    return t1 - t0, time.perf_counter() - t1


def journal(server: PgServer, folder: Path, rounds: int, seconds: float) -> None:
    print(f"1. journal: one saga of {STEPS} mock steps at a time, against raw one-row commits")
    plan = saga()
    pg_raw = PgRawCommits(server.database())
    sq_raw = RawCommits(folder)
    raws: dict[str, list[float]] = {"pg": [], "sq": []}
    rates: dict[str, list[float]] = {"pg": [], "sq": []}

    async def measure() -> dict[str, tuple[float, float, float]]:
        stores: dict[str, Store] = {
            "pg": PostgresStore(server.database()),
            "sq": SqliteStore(folder / "journal.db"),
        }
        try:
            await arun(plan, {}, store=MemoryStore())  # the executor's first run, apart
            firsts = {}
            for k, raw in (("pg", pg_raw), ("sq", sq_raw)):
                firsts[k] = (raw.rate(seconds / 2), *await first_saga(stores[k], plan))
            for s in stores.values():
                await saga_rate(s, plan, seconds / 4)  # warm up
            for i in range(rounds):
                for k, raw in (("pg", pg_raw), ("sq", sq_raw)):
                    raws[k].append(raw.rate(seconds / 2))
                    rates[k].append(await saga_rate(stores[k], plan, seconds))
                print(
                    f"   round {i + 1}: PostgreSQL raw {raws['pg'][-1]:6,.0f} commits/s, saga"
                    f" {rates['pg'][-1]:6,.0f} steps/s; SQLite raw {raws['sq'][-1]:6,.0f}"
                    f" commits/s, saga {rates['sq'][-1]:6,.0f} steps/s",
                    flush=True,
                )
            return firsts
        finally:
            for s in stores.values():
                await s.close()

    try:
        firsts = asyncio.run(measure())
    finally:
        pg_raw.close()
        sq_raw.c.close()
    for k, name, target in (
        ("pg", "PostgreSQL", f"target >= {TARGET_JOURNAL}"),
        ("sq", "SQLite", "reference 0.54 - 0.70"),
    ):
        raw, rate = statistics.median(raws[k]), statistics.median(rates[k])
        ratio = statistics.median(r / w for r, w in zip(rates[k], raws[k], strict=True))
        first_raw, opened, first = firsts[k]
        verdict = f": {met(ratio >= TARGET_JOURNAL)}" if k == "pg" else ""
        print(
            f"   {name:<10} warm (medians of {rounds}): {rate:6,.0f} steps/s ({1e3 / rate:.2f} ms"
            f" a step), raw {raw:6,.0f} commits/s; each round's steps/s over its raw rate:"
            f" {ratio:.2f}; {target}{verdict}"
        )
        print(
            f"   {'':<10} first saga: {first * 1e3:6.0f} ms, {STEPS / first:6,.0f} steps/s,"
            f" {STEPS / first / first_raw:.2f} x the raw rate just before it ({first_raw:,.0f}"
            f" commits/s; the store opened in {opened * 1e3:.0f} ms before it)"
        )
    print(f"   peak RSS of this process: {self_peak()}")


# -- 2 and 3: worker processes ---------------------------------------------------------------


class Workers:
    """`sagac worker` subprocesses on one store, each logging to a file of its own."""

    def __init__(self, url: str, count: int, folder: Path, concurrency: int = 1) -> None:
        self.logs = [folder / f"worker-{time.monotonic_ns()}-{i}.log" for i in range(count)]
        self.started = time.time()
        argv = [str(SAGAC), "worker", "--store", url, "--concurrency", str(concurrency)]
        self.procs = []
        for log in self.logs:
            with log.open("w") as err:
                self.procs.append(
                    subprocess.Popen(argv, cwd=folder, stdout=subprocess.DEVNULL, stderr=err)
                )

    def check_alive(self) -> None:
        for p, log in zip(self.procs, self.logs, strict=True):
            if p.poll() is not None:
                raise RuntimeError(
                    f"a worker exited with {p.returncode}: {log.read_text()[-2000:]}"
                )

    def claims(self) -> dict[str, float]:
        """Run id -> the epoch time of its first `claimed` line in the workers' logs (the
        log's `at` has millisecond resolution)."""
        import json

        claimed: dict[str, float] = {}
        for log in self.logs:
            for line in log.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("event") == "claimed":
                    at = parse_rfc3339(entry["at"])
                    claimed[entry["run_id"]] = min(at, claimed.get(entry["run_id"], at))
        return claimed

    def stop(self) -> list[int]:
        """SIGTERM each worker (a graceful stop) and wait; their peak RSS in KiB."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        peaks = []
        deadline = time.monotonic() + 30
        for p in self.procs:
            while p.returncode is None:
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    p.returncode = os.waitstatus_to_exitcode(status)
                    peaks.append(usage.ru_maxrss)
                elif time.monotonic() > deadline:
                    p.kill()
                    deadline += 5
                else:
                    time.sleep(0.02)
        return peaks


async def wait_for_workers(store: Store, workers: Workers, count: int) -> None:
    """Until `count` workers are registered (they heartbeat once they listen for work)."""
    deadline = time.monotonic() + 60
    while len(await store.workers(alive_within=60)) < count:
        workers.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not register within 60 s")
        await asyncio.sleep(0.05)


async def drain_once(
    url: str, plan: Plan, runs: int, count: int, concurrency: int, folder: Path
) -> dict[str, Any]:
    import sagac

    store = PostgresStore(url)
    try:
        for _ in range(runs):
            await sagac.asubmit(plan, {}, store=store)
        workers = Workers(url, count, folder, concurrency)
        try:
            while True:
                records = await store.list_runs(limit=runs + 1)
                done = [r for r in records if r.status in FINAL]
                if len(done) == runs:
                    break
                workers.check_alive()
                await asyncio.sleep(0.1)
            first = min(workers.claims().values(), default=None)
        finally:
            peaks = workers.stop()
        bad = [r.status for r in done if r.status != "succeeded"]
        assert not bad, f"runs ended {sorted(set(bad))}"
        end = max(parse_rfc3339(r.updated_at) for r in done)
        return {
            "seconds": end - workers.started,
            "from_claim": end - first if first else None,
            "startup": first - workers.started if first else None,
            "peaks": peaks,
        }
    finally:
        await store.close()


def drain(
    server: PgServer, folder: Path, runs: int, counts: list[int], concurrency: int, again: bool
) -> None:
    print(
        f"2. drain: {runs} submitted runs of 10 python steps that each sleep 20 ms, by"
        f" {', '.join(map(str, counts))} `sagac worker --concurrency {concurrency}` processes\n"
        f"   ({concurrency} run(s) at a time per worker: N workers can at best be N times one, so"
        " the ratio measures how well they share the queue)"
    )
    plan = load(folder / "nap.yaml")
    results: dict[int, list[dict[str, Any]]] = {}
    # The shared disk drifts over minutes: with `again`, one worker is measured last as well
    # and its two runs averaged.
    for count in [*counts, 1] if again and 1 in counts and len(counts) > 1 else counts:
        r = asyncio.run(drain_once(server.database(), plan, runs, count, concurrency, folder))
        results.setdefault(count, []).append(r)
        ideal = runs * 10 * 0.02 / count / concurrency
        start = f", first claim {r['startup']:.2f} s after the start" if r["startup"] else ""
        print(
            f"   {count} worker(s): {r['seconds']:6.2f} s, {runs / r['seconds']:6.1f} runs/s"
            f" (sleeps alone: {ideal:.1f} s{start}); peak RSS per worker"
            f" {', '.join(mib(p) for p in r['peaks'])}",
            flush=True,
        )
    if 1 not in results:
        return

    def mean(count: int, key: str) -> float | None:
        values = [r[key] for r in results[count]]
        return None if None in values else statistics.mean(values)

    base, base_steady = mean(1, "seconds"), mean(1, "from_claim")
    assert base is not None
    for count in results:
        if count == 1:
            continue
        seconds, steady = mean(count, "seconds"), mean(count, "from_claim")
        assert seconds is not None
        ratio = base / seconds
        line = f"   {count} workers / 1 worker: {ratio:.2f} x runs/s"
        steady_ratio = base_steady / steady if base_steady and steady else None
        if steady_ratio is not None:
            line += f"; from the first claim on: {steady_ratio:.2f} x"
        if count == 4:
            line += f"; target >= {TARGET_SCALE}: {met(ratio >= TARGET_SCALE)}"
            if steady_ratio is not None:
                line += f", from the first claim on {met(steady_ratio >= TARGET_SCALE)}"
        print(line)


async def latency_once(url: str, plan: Plan, submits: int, folder: Path) -> dict[str, Any]:
    """Per submit: (run id, submit called, submit returned, the action's timestamp)."""
    import sagac

    store = open_store(url)
    workers = Workers(url, 1, folder)
    samples: list[tuple[str, float, float, float]] = []
    try:
        await wait_for_workers(store, workers, 1)

        async def one() -> tuple[str, float, float, float]:
            t0 = time.time()
            run_id = (await sagac.asubmit(plan, {}, store=store)).run_id
            t1 = time.time()
            await asyncio.sleep(0.01)
            while (await store.get_run(run_id)).status not in FINAL:
                workers.check_alive()
                await asyncio.sleep(0.005)  # seldom enough to leave the worker the CPU
            events = await store.load_events(run_id)
            acted = next(e["result"]["t"] for e in events if e["type"] == "step_completed")
            return run_id, t0, t1, acted

        for _ in range(3):  # warm up: the worker imports the actions, caches the definition
            await one()
        for _ in range(submits):
            await asyncio.sleep(random.uniform(0.02, 0.08))  # idle, out of phase with polls
            samples.append(await one())
    finally:
        peaks = workers.stop()
        await store.close()
    claims = workers.claims()
    return {
        "waits": [acted - t0 for _, t0, _, acted in samples],
        "calls": [t1 - t0 for _, t0, t1, _ in samples],
        "to_claim": [claims[r] - t1 for r, _, t1, _ in samples if r in claims],
        "claim_to_step": [acted - claims[r] for r, _, _, acted in samples if r in claims],
        "peaks": peaks,
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency(server: PgServer, folder: Path, submits: int) -> None:
    print(
        f"3. latency: {submits} submits one at a time to an idle worker, from the submit call to"
        " the first step's action running"
    )
    plan = load(folder / "stamp.yaml")
    for name, url in (
        ("PostgreSQL", server.database()),
        ("SQLite", f"sqlite:///{folder / 'latency.db'}"),
    ):
        r = asyncio.run(latency_once(url, plan, submits, folder))
        p50, p99 = percentile(r["waits"], 50), percentile(r["waits"], 99)
        target = (
            f"target p50 < {TARGET_P50 * 1e3:.0f} ms: {met(p50 < TARGET_P50)},"
            f" p99 < {TARGET_P99 * 1e3:.0f} ms: {met(p99 < TARGET_P99)}"
            if name == "PostgreSQL"
            else "(polling: no target)"
        )
        print(
            f"   {name:<10} p50 {p50 * 1e3:6.1f} ms, p99 {p99 * 1e3:6.1f} ms, max"
            f" {max(r['waits']) * 1e3:6.1f} ms; {target}; worker peak RSS {mib(max(r['peaks']))}"
        )
        medians = [statistics.median(r[k]) * 1e3 for k in ("calls", "to_claim", "claim_to_step")]
        print(
            f"   {'':<10} medians: the submit call {medians[0]:.1f} ms, its return to the claim"
            f" {medians[1]:.1f} ms, the claim to the action {medians[2]:.1f} ms (the claim's time"
            " from the worker's log, to the millisecond)",
            flush=True,
        )


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["journal", "drain", "latency"], action="append")
    parser.add_argument("--rounds", type=int, default=5, help="journal: interleaved rounds")
    parser.add_argument("--seconds", type=float, default=2.0, help="journal: per measurement")
    parser.add_argument("--runs", type=int, default=400, help="drain: runs submitted")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="drain")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="drain: each worker's --concurrency"
    )
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="PostgreSQL as the tests run it (fsync and synchronous_commit off): the figures"
        " without the disk's commits",
    )
    parser.add_argument("--submits", type=int, default=300, help="latency: submits")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, one round: what `make bench` runs (seconds, not minutes)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, min(args.seconds, 0.5)
        args.runs, args.submits = min(args.runs, 60), min(args.submits, 50)
    parts = args.only or ["journal", "drain", "latency"]
    folder = Path(tempfile.mkdtemp(prefix="sagac-bench-"))
    (folder / "bench_workers_actions.py").write_text(ACTIONS)
    (folder / "nap.yaml").write_text(nap_saga())
    (folder / "stamp.yaml").write_text(STAMP_SAGA)
    t0 = time.perf_counter()
    pg = start_server(durable=not args.no_fsync)
    print(
        f"PostgreSQL {pg.admin} (fsync {'off' if args.no_fsync else 'on'}), started in"
        f" {time.perf_counter() - t0:.1f} s"
    )
    steps: dict[str, Callable[[], None]] = {
        "journal": lambda: journal(pg, folder, args.rounds, args.seconds),
        "drain": lambda: drain(
            pg, folder, args.runs, args.workers, args.concurrency, not args.quick
        ),
        "latency": lambda: latency(pg, folder, args.submits),
    }
    try:
        for part in parts:
            steps[part]()
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
