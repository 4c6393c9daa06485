"""Runtime benchmark: the executor's overhead against plain asyncio, measured in the same run.

Run with `.venv/bin/python bench/runtime.py [--profile linear|compensate] [--sizes ...] [--quick]`
(`--quick`: 20 repeats instead of 200, and large chains of 1,000 and 5,000 steps only). Three
cases against asyncio, then large sagas:

- linear: a saga of 100 no-op steps (mock actions) vs 100 awaited no-op coroutines;
  target: at most 10 us of overhead per step. A mock without delay takes the executor's
  immediate path (no coroutine, its result checked once), so the same saga with an async
  python no-op (`invoke`'s full path: context, coroutine, JSON round trip) is shown too.
- compensate: 10 steps, the 10th fails, 9 compensations vs the same calls in a try/except;
  target: under 100 us per saga of overhead.
- parallel: one group of 10 branches each sleeping 50 ms vs asyncio.gather of 10 sleeps;
  target: wall time within 2 ms.

- large: chains of 1k, 10k and 20k compensable no-op steps, each size in a process of its own
  (so its peak RSS is its own): compile time, the in-memory run (median of 3), the same saga
  with its last step failing and `compensation: parallel` (every step undone), and the run with
  the SQLite journal; per step, with the run's peak RSS above what the process held before it,
  and each as a ratio to the 1k case of the same bench run. Target: flat (ratios near 1).

Every run journals to a fresh MemoryStore (what `sagac run` does), with no event callback,
unless it says SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sagac.compiler.pipeline import compile_text
from sagac.compiler.plan import Plan
from sagac.runtime.executor import Executor
from sagac.runtime.store.memory import MemoryStore
from sagac.runtime.store.sqlite import SqliteStore


def build(lines: list[str]) -> Plan:
    c = compile_text("\n".join(lines) + "\n")
    assert c.plan is not None, [d.message for d in c.diagnostics]
    return c.plan


def linear_saga(n: int) -> Plan:
    lines = ["saga: bench_linear", "actions:", "  noop: {mock: {result: {}}}", "steps:"]
    lines += [f"  - {{id: s{i}, action: noop}}" for i in range(n)]
    return build(lines)


def python_saga(n: int) -> Plan:
    lines = ["saga: bench_python", "actions:", "  noop: {python: '__main__:noop'}", "steps:"]
    lines += [f"  - {{id: s{i}, action: noop}}" for i in range(n)]
    return build(lines)


def compensate_saga(n: int) -> Plan:
    lines = [
        "saga: bench_compensate",
        "actions:",
        "  noop: {mock: {result: {}}}",
        "  boom: {mock: {fail: BOOM}}",
        "steps:",
    ]
    lines += [
        f"  - {{id: s{i}, action: noop, compensate: {{action: noop, retry: {{max_attempts: 1}}}}}}"
        for i in range(n - 1)
    ]
    lines.append(f"  - {{id: s{n - 1}, action: boom}}")
    return build(lines)


def parallel_saga(n: int, delay: str) -> Plan:
    lines = ["saga: bench_parallel", "steps:", "  - parallel:", "      id: g", "      branches:"]
    lines += [
        f"        - [{{id: b{i}, action: {{mock: {{result: {{}}, delay: {delay}}}}}}}]"
        for i in range(n)
    ]
    return build(lines)


def chain_saga(n: int, fail_last: bool = False) -> Plan:
    """n compensable no-op steps; with `fail_last`, one more that fails and every step undone
    in parallel mode (the compensation mode that reads the most derived structure)."""
    mode = "parallel" if fail_last else "sequential"
    lines = [f"saga: bench_chain_{n}", f"compensation: {mode}", "actions:"]
    lines += ["  noop: {mock: {result: {}}}", "  boom: {mock: {fail: BOOM}}", "steps:"]
    lines += [f"  - {{id: s{i}, action: noop, compensate: {{action: noop}}}}" for i in range(n)]
    if fail_last:
        lines.append("  - {id: boom, action: boom}")
    return build(lines)


async def run_plan(plan: Plan) -> str:
    report = await Executor(plan, {}, store=MemoryStore()).run()
    return report.status


async def noop() -> dict[str, Any]:
    return {}


async def baseline_linear(n: int) -> None:
    for _ in range(n):
        json.loads(json.dumps(await noop()))  # what any action's result goes through


async def baseline_compensate(n: int) -> None:
    done = []
    try:
        for i in range(n):
            json.loads(json.dumps(await noop()))
            if i == n - 1:
                raise RuntimeError("BOOM")
            done.append(i)
    except RuntimeError:
        for _ in reversed(done):
            await noop()


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> float:
    """Median seconds per call over `repeat` calls (after a warm-up)."""
    for _ in range(min(repeat, 20)):
        await fn()
    samples = []
    gc.collect()
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


async def main_async(args: argparse.Namespace) -> None:
    n = 100
    linear = linear_saga(n)
    python = python_saga(n)
    comp = compensate_saga(10)
    par = parallel_saga(10, "50ms")
    assert await run_plan(linear) == "succeeded"
    assert await run_plan(python) == "succeeded"
    assert await run_plan(comp) == "compensated"

    t_saga = await timed(lambda: run_plan(linear), args.repeat)
    t_base = await timed(lambda: baseline_linear(n), args.repeat)
    per_step = (t_saga - t_base) / n * 1e6
    print(
        f"linear {n} steps: saga {t_saga * 1e3:.2f} ms, asyncio {t_base * 1e3:.3f} ms, "
        f"ratio {t_saga / t_base:.0f}x, overhead {per_step:.1f} us/step (target <= 10)"
    )
    t_saga = await timed(lambda: run_plan(python), args.repeat)
    per_step = (t_saga - t_base) / n * 1e6
    print(
        f"linear {n} python steps (async no-op): saga {t_saga * 1e3:.2f} ms, "
        f"overhead {per_step:.1f} us/step"
    )

    t_saga = await timed(lambda: run_plan(comp), args.repeat)
    t_base = await timed(lambda: baseline_compensate(10), args.repeat)
    print(
        f"10 steps, 10th fails, 9 compensations: saga {t_saga * 1e6:.0f} us, "
        f"asyncio {t_base * 1e6:.1f} us, ratio {t_saga / t_base:.0f}x, "
        f"overhead {(t_saga - t_base) * 1e6:.0f} us/saga (target < 100)"
    )

    async def gather() -> None:
        await asyncio.gather(*(asyncio.sleep(0.05) for _ in range(10)))

    t_saga = await timed(lambda: run_plan(par), 10)
    t_base = await timed(gather, 10)
    print(
        f"parallel 10 x 50 ms: saga {t_saga * 1e3:.2f} ms, gather {t_base * 1e3:.2f} ms, "
        f"ratio {t_saga / t_base:.3f}, difference {(t_saga - t_base) * 1e3:.2f} ms (target <= 2)"
    )

    if args.profile:
        plan = linear if args.profile == "linear" else comp
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(200):
            await run_plan(plan)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def traced_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes of Python heap `fn` allocated above what was live when it started."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def timed_once(fn: Callable[[], Any]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def one_size(n: int) -> dict[str, float]:
    """The large-saga measurements of one size (run in a process of its own): seconds, and
    the peak heap of a second, traced run (tracemalloc slows it, so it is not timed). Each run
    gets a copy of the plan, so it derives what a run derives once per plan (as `sagac run`
    does in every process) instead of finding it cached by the previous run."""
    chain_saga(1_000, fail_last=True)  # one-time costs: imports, caches, the fast validator
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    plan = chain_saga(n)
    out["compile"] = time.perf_counter() - t0
    failing = chain_saga(n, fail_last=True)

    def memory() -> None:
        assert asyncio.run(run_plan(plan.model_copy())) == "succeeded"

    def compensate() -> None:
        assert asyncio.run(run_plan(failing.model_copy())) == "compensated"

    def durable() -> None:
        async def go(folder: str) -> None:
            store = SqliteStore(Path(folder) / "journal.db")
            try:
                report = await Executor(plan.model_copy(), {}, store=store).run()
                assert report.status == "succeeded"
            finally:
                await store.close()

        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(go(folder))

    out["memory"] = statistics.median(timed_once(memory) for _ in range(3))
    out["compensate"] = timed_once(compensate)
    out["sqlite"] = timed_once(durable)
    for key, fn in (("memory", memory), ("compensate", compensate), ("sqlite", durable)):
        out[f"{key}_heap"] = traced_peak(fn)
    out["process_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def large(sizes: list[int]) -> None:
    """Each size in a fresh process; per-step figures and their ratios to the first size."""
    results: dict[int, dict[str, float]] = {}
    for n in sizes:
        cmd = [sys.executable, __file__, "--one-size", str(n)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[n] = json.loads(done.stdout.splitlines()[-1])
    first = sizes[0]
    base = results[first]
    print(f"\nlarge chains, per step; (xR) is the ratio to {first:,} steps in this bench run:")
    cases = [
        ("compile", "compile"),
        ("in-memory run", "memory"),
        ("last fails, parallel undo", "compensate"),
        ("SQLite journal run", "sqlite"),
    ]
    for label, key in cases:
        for n in sizes:
            r = results[n]
            per, per0 = r[key] / n * 1e6, base[key] / first * 1e6
            line = (
                f"  {label:<26}{n:>7,} steps {r[key]:7.2f} s {per:7.1f} us/step (x{per / per0:.2f})"
            )
            heap = f"{key}_heap"
            if heap in r:
                kib, kib0 = r[heap] / n / 1024, base[heap] / first / 1024
                line += f"   heap peak {r[heap] / 2**20:7.1f} MiB {kib:5.2f} KiB/step"
                line += f" (x{kib / kib0:.2f})"
            print(line)
    for n in sizes:
        mib = results[n]["process_peak"] / 2**20
        kib = (results[n]["process_peak"] - base["process_peak"]) / 1024
        extra = f", {kib / (n - first):.2f} KiB per step beyond {first:,}" if n > first else ""
        print(
            f"  peak RSS of the process (compile, all runs), {n:>7,} steps: {mib:6.1f} MiB{extra}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--profile", choices=("linear", "compensate"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, one round: what `make bench` runs (seconds, not minutes)",
    )
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[1_000, 10_000, 20_000], help="large chains"
    )
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_size:
        print(json.dumps(one_size(args.one_size)))
        return
    if args.quick:
        args.repeat = min(args.repeat, 20)
        args.sizes = [n for n in args.sizes if n <= 5_000] or [1_000, 5_000]
    asyncio.run(main_async(args))
    if args.sizes:
        large(args.sizes)


if __name__ == "__main__":
    main()
