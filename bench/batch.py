"""Batch benchmark: a foreach of no-op items against a plain asyncio loop, in the same run.

Run with `.venv/bin/python bench/batch.py [--items 50000] [--memory-items 50000 200000]
[--quick]` (`--quick`: 5,000 items, once).

- throughput: N no-op items (an async python action) at concurrency 10, batches of 100, with a
  `checkpoint` cursor, journaled in memory and durably (SQLite, WAL, synchronous=FULL), against
  `asyncio.Semaphore(10)` around the same calls; prints items/s and the overhead per item.
  Targets: 20,000 items/s in memory, 10,000 items/s with checkpoints on SQLite.
- memory: the tracemalloc peak of a durable run beyond its input list, for each item count,
  without and with a per-item compensation: it must grow with the batch size, not the items.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sagac.compiler.pipeline import compile_text
from sagac.compiler.plan import Plan
from sagac.runtime.api import arun
from sagac.runtime.store.base import Store
from sagac.runtime.store.memory import MemoryStore
from sagac.runtime.store.sqlite import SqliteStore

ACTIONS = """
async def noop(n, context=None):
    return None

async def undo(n):
    return None
"""


def saga(compensate: bool) -> Plan:
    lines = [
        "saga: bench_batch",
        "actions:",
        '  noop: {python: "bench_batch_actions:noop"}',
        '  undo: {python: "bench_batch_actions:undo"}',
        "steps:",
        "  - foreach:",
        "      id: each",
        '      items: "{{ input.items }}"',
        "      as: it",
        "      action: noop",
        "      with: {n: '{{ it }}'}",
        "      batch: {size: 100, concurrency: 10}",
        "      checkpoint: 'item-{{ it }}'",
    ]
    if compensate:
        lines.append("      compensate: {action: undo, with: {n: '{{ it }}'}}")
    c = compile_text("\n".join(lines) + "\n")
    assert c.plan is not None, [d.message for d in c.diagnostics]
    return c.plan


async def plain(n: int) -> None:
    """What a hand-written script would do: a semaphore around every call."""
    from bench_batch_actions import noop  # type: ignore[import-not-found]

    sem = asyncio.Semaphore(10)

    async def one(i: int) -> None:
        async with sem:
            await noop(i)

    await asyncio.gather(*(one(i) for i in range(n)))


async def foreach(plan: Plan, items: list[int], store: Store) -> None:
    try:
        report = await arun(plan, {"items": items}, store=store)
        assert report.status == "succeeded", report.failure
    finally:
        await store.close()


def timed(make: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        asyncio.run(make())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def sqlite_store(folder: Path) -> SqliteStore:
    path = folder / f"bench-{time.monotonic_ns()}.db"
    return SqliteStore(path)


def throughput(n: int, repeat: int, folder: Path) -> None:
    plan = saga(compensate=False)
    items = list(range(n))
    base = timed(lambda: plain(n), repeat)
    mem = timed(lambda: foreach(plan, items, MemoryStore()), repeat)
    durable = timed(lambda: foreach(plan, items, sqlite_store(folder)), repeat)
    print(f"{n} no-op items, concurrency 10, batches of 100, checkpoints (median of {repeat})")
    print(f"  plain asyncio.Semaphore loop  {n / base:>9,.0f} items/s")
    for name, t, target in (("foreach, memory", mem, 20_000), ("foreach, SQLite", durable, 10_000)):
        ok = "ok" if n / t >= target else "MISSED"
        print(
            f"  {name:<29} {n / t:>9,.0f} items/s  overhead {(t - base) / n * 1e6:5.1f} us/item"
            f"  (target {target:,}/s: {ok})"
        )


def peak_memory(n: int, compensate: bool, folder: Path) -> tuple[float, float]:
    """(MB of the input list, MB of the peak beyond it) for a durable run of n items."""
    plan = saga(compensate)
    gc.collect()
    tracemalloc.start()
    items = list(range(n))
    data = {"items": items}
    input_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]

    async def go() -> None:
        store = sqlite_store(folder)
        try:
            report = await arun(plan, data, store=store)
            assert report.status == "succeeded"
        finally:
            await store.close()

    asyncio.run(go())
    peak = (tracemalloc.get_traced_memory()[1] - base) / 1e6
    tracemalloc.stop()
    return input_mb, peak


def memory(counts: list[int], folder: Path) -> None:
    print("peak memory of a durable run beyond its input list (tracemalloc)")
    for compensate in (False, True):
        for n in counts:
            input_mb, peak = peak_memory(n, compensate, folder)
            what = "with compensate" if compensate else "no compensate"
            print(
                f"  {n:>7,} items, {what:<16} input {input_mb:6.1f} MB, peak beyond {peak:6.1f} MB"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--memory-items", type=int, nargs="*", default=[50_000, 200_000])
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, one round: what `make bench` runs (seconds, not minutes)",
    )
    args = p.parse_args()
    if args.quick:
        args.items, args.repeat, args.memory_items = 5_000, 1, [5_000]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bench_batch_actions.py").write_text(ACTIONS)
        sys.path.insert(0, str(folder))
        throughput(args.items, args.repeat, folder)
        if args.memory_items:
            memory(args.memory_items, folder)


if __name__ == "__main__":
    main()
