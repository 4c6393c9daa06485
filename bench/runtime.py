"""Runtime benchmark: the executor's overhead against plain asyncio, measured in the same run.

Run with `.venv/bin/python bench/runtime.py [--profile linear|compensate] [--quick]` (`--quick`:
20 repeats instead of 200). Three cases:

- linear: a saga of 100 no-op steps (mock actions) vs 100 awaited no-op coroutines;
  target: at most 10 us of overhead per step. A mock without delay takes the executor's
  immediate path (no coroutine, its result checked once), so the same saga with an async
  python no-op (`invoke`'s full path: context, coroutine, JSON round trip) is shown too.
- compensate: 10 steps, the 10th fails, 9 compensations vs the same calls in a try/except;
  target: under 100 us per saga of overhead.
- parallel: one group of 10 branches each sleeping 50 ms vs asyncio.gather of 10 sleeps;
  target: wall time within 2 ms.

Every run journals to a fresh MemoryStore (what `sagac run` does), with no event callback.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sagac.compiler.pipeline import compile_text
from sagac.compiler.plan import Plan
from sagac.runtime.executor import Executor
from sagac.runtime.store.memory import MemoryStore


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--profile", choices=("linear", "compensate"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, one round: what `make bench` runs (seconds, not minutes)",
    )
    args = parser.parse_args()
    if args.quick:
        args.repeat = min(args.repeat, 20)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
