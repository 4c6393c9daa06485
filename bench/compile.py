"""Compile-time benchmark: large generated sagas, timed stage by stage.

Run with `make bench-full` (or `.venv/bin/python bench/compile.py [--profile N]`; `--quick`,
what `make bench` runs: 1k, 2k and 4k steps and 200 branches). Prints, for linear
sagas of 1k, 10k and 20k steps (templates reading earlier steps, retries, compensations) and
for one parallel group of 1,000 branches, the total compile time and each stage's share, then
the 20k/10k ratio: compile time must grow about linearly (target <= 2.2).

Then the diagnostics path (`--warnings`, also run by default): the same linear sagas without
their idempotency keys (one W101 warning per retried step), compiled and rendered as `sagac
validate` does (text with source lines, and JSON), each in a fresh process for its peak RSS.
Time and peak memory are printed as ratios against the clean saga of the same size measured in
the same run; rendering n diagnostics must stay linear (targets: 10k with warnings <= 4x the
clean 10k in time, <= 3x in memory; 20k/10k with warnings <= 2.2).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from sagac.compiler.checks import check_ids, check_semantics
from sagac.compiler.formatting import format_json, format_text
from sagac.compiler.graph import build_graph
from sagac.compiler.loader import load_text
from sagac.compiler.lower import lower
from sagac.compiler.pipeline import compile_text, paused_gc
from sagac.compiler.plan import build_plan
from sagac.compiler.schema import check_schema

HEADER = """\
saga: bench_{name}
input:
  type: object
  properties:
    order_id: {{type: string}}
actions:
  charge: {{python: "shop.payments:charge"}}
  refund: {{python: "shop.payments:refund"}}
  fetch: {{http: {{method: GET, url: "http://127.0.0.1:8080/items/{{{{ args.id }}}}"}}}}
defaults:
  timeout: 10s
  retry: {{max_attempts: 3, initial_delay: 100ms, max_delay: 2s}}
"""


def linear_saga(n: int) -> str:
    """`n` steps in a list; each reads its predecessor's result and most can be undone."""
    out = [HEADER.format(name=f"linear_{n}"), "steps:\n"]
    for i in range(n):
        prev = f"steps.s{i - 1}.result.id" if i else "input.order_id"
        if i % 10 == 1:  # s{i - 1} has a `when`: it may have been skipped (E017 without a guard)
            prev += " | default(none)"
        out.append(
            f"  - id: s{i}\n"
            f"    action: {'fetch' if i % 7 == 3 else 'charge'}\n"
            f'    with: {{order: "{{{{ input.order_id }}}}", parent: "{{{{ {prev} }}}}", n: {i}}}\n'
            f'    idempotency_key: "bench-{{{{ input.order_id }}}}-s{i}"\n'
            f"    errors: [DECLINED]\n"
            f"    retry: {{max_attempts: 4, on: [TIMEOUT, UNAVAILABLE, DECLINED]}}\n"
            f"    keep: [id, amount]\n"
        )
        if i % 10 == 0:
            out.append(f'    when: "{{{{ {prev} is not none }}}}"\n')
        out.append(
            f"    compensate:\n"
            f"      action: refund\n"
            f'      with: {{payment: "{{{{ result.id }}}}", amount: "{{{{ result.amount }}}}"}}\n'
            f'      idempotency_key: "bench-{{{{ input.order_id }}}}-undo-s{i}"\n'
            f"      retry: {{max_attempts: 10}}\n"
        )
    out.append(f'output: {{last: "{{{{ steps.s{n - 1}.result.id }}}}"}}\n')
    return "".join(out)


def parallel_saga(branches: int) -> str:
    """One group of `branches` two-step branches, then a step reading every branch."""
    out = [HEADER.format(name=f"parallel_{branches}"), "steps:\n  - parallel:\n"]
    out.append("      id: fan_out\n      max_concurrency: 50\n      branches:\n")
    for i in range(branches):
        out.append(
            f'        - - {{id: get_{i}, action: fetch, with: {{id: "b{i}"}}}}\n'
            f"          - id: charge_{i}\n"
            f"            action: charge\n"
            f'            with: {{item: "{{{{ steps.get_{i}.result.id }}}}"}}\n'
            f'            idempotency_key: "bench-{{{{ input.order_id }}}}-{i}"\n'
            f"            compensate:\n"
            f'              {{action: refund, with: {{p: "{{{{ result.id }}}}"}}, '
            f'idempotency_key: "undo-{{{{ run.id }}}}-{i}"}}\n'
        )
    reads = ", ".join(f'r{i}: "{{{{ steps.charge_{i}.result.id }}}}"' for i in range(branches))
    out.append(f"  - id: summary\n    action: charge\n    with: {{{reads}}}\n")
    out.append('    idempotency_key: "bench-{{ input.order_id }}-summary"\n')
    return "".join(out)


def compile_stages(text: str, name: str) -> dict[str, float]:
    """Seconds per stage; fails loudly if the generated saga does not compile cleanly."""
    times: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        times[stage] = times.get(stage, 0.0) + time.perf_counter() - t0
        return value

    doc, diags = timed("load", lambda: load_text(text, name))
    assert doc is not None, diags
    diags = timed("schema", lambda: check_schema(doc))
    assert not diags, diags[:3]
    saga = timed("lower+checks", lambda: lower(doc.data))
    diags = timed("lower+checks", lambda: check_ids(saga, doc))
    graph, gdiags = timed("graph", lambda: build_graph(saga, doc))
    diags += gdiags + timed("lower+checks", lambda: check_semantics(saga, graph, doc))
    assert not diags, [f"{d.code} {d.line}:{d.column} {d.message}" for d in diags[:5]]
    timed("plan", lambda: build_plan(saga, graph, doc.data, name))
    times["total"] = sum(times.values())
    return times


def warned_saga(n: int) -> str:
    """`linear_saga(n)` without the steps' idempotency keys: a W101 warning per step."""
    return re.sub(r"^    idempotency_key: .*\n", "", linear_saga(n), flags=re.MULTILINE)


def validate_once(n: int, warned: bool) -> dict[str, float]:
    """Compile a saga and render its diagnostics as `sagac validate` does (text and JSON)."""
    text = warned_saga(n) if warned else linear_saga(n)
    t0 = time.perf_counter()
    c = compile_text(text, "bench.yaml")
    doc = c.document
    rendered = format_text(c.diagnostics, lambda _f, line: doc.line_text(line) if doc else "")
    rendered += format_json(c.diagnostics)
    seconds = time.perf_counter() - t0
    assert c.ok(), [d.message for d in c.errors()[:3]]
    assert len(c.diagnostics) >= (n // 2 if warned else 0), len(c.diagnostics)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_mib": peak_kib / 1024, "diagnostics": len(c.diagnostics)}


def _in_child(n: int, warned: bool) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", str(n), *(["--warned"] if warned else [])],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def warnings_bench(sizes: tuple[int, int] = (10_000, 20_000)) -> bool:
    """The diagnostics path against the clean baseline; True when every target is met."""
    print(f"\n{'validate (text + JSON)':<30}{'diagnostics':>12}{'time':>10}{'peak RSS':>11}")
    rows: dict[tuple[int, bool], dict[str, float]] = {}
    small, large = sizes
    for n in sizes:
        for warned in (False, True):
            r = rows[(n, warned)] = _in_child(n, warned)
            name = f"linear {n:,}" + (" with warnings" if warned else " (baseline)")
            print(
                f"{name:<30}{r['diagnostics']:>12,.0f}{r['seconds']:>9.2f}s"
                f"{r['peak_mib']:>8.0f} MiB"
            )
    base, warned10, warned20 = rows[(small, False)], rows[(small, True)], rows[(large, True)]
    time_ratio = warned10["seconds"] / base["seconds"]
    mem_ratio = warned10["peak_mib"] / base["peak_mib"]
    growth = warned20["seconds"] / warned10["seconds"]
    print(f"{small:,} with warnings / baseline: time {time_ratio:.2f} (target <= 4), ", end="")
    print(f"peak memory {mem_ratio:.2f} (target <= 3)")
    print(f"ratio {large:,}/{small:,} with warnings: {growth:.2f} (target <= 2.2)")
    return time_ratio <= 4 and mem_ratio <= 3 and growth <= 2.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=int, metavar="N", help="profile a linear saga of N steps")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, one round: what `make bench` runs (seconds, not minutes)",
    )
    parser.add_argument("--warnings", action="store_true", help="only the diagnostics path")
    parser.add_argument("--one", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--warned", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # one measurement, in a process of its own (for its peak RSS)
        print(json.dumps(validate_once(args.one, args.warned)))
        return 0
    if args.warnings:
        return 0 if warnings_bench() else 1
    if args.profile:
        text = linear_saga(args.profile)
        with paused_gc():  # as when timed: else the collector's pauses land on random lines
            cProfile.runctx(
                "compile_stages(text, 'p')", globals(), {"text": text}, "/tmp/sagac.prof"
            )
        pstats.Stats("/tmp/sagac.prof").sort_stats("cumulative").print_stats(30)
        return 0
    sizes = (1_000, 2_000, 4_000) if args.quick else (1_000, 10_000, 20_000)
    cases = [(f"linear {n:,}", linear_saga(n)) for n in sizes]
    branches = 200 if args.quick else 1_000
    cases.append((f"parallel {branches:,} branches", parallel_saga(branches)))
    stages = ("load", "schema", "lower+checks", "graph", "plan")
    print(f"{'saga':<24}{'total':>9}" + "".join(f"{s:>14}" for s in stages))
    totals: dict[str, float] = {}
    for name, text in cases:
        with paused_gc():  # as `compile_file` does
            times = compile_stages(text, name)
        totals[name] = times["total"]
        cells = "".join(f"{times[s]:>8.3f}s {times[s] / times['total']:>3.0%}" for s in stages)
        print(f"{name:<24}{times['total']:>8.3f}s{cells}")
    ratio = totals[f"linear {sizes[2]:,}"] / totals[f"linear {sizes[1]:,}"]
    if args.quick:  # small sagas: too noisy to hold to the targets
        print(f"ratio {sizes[2]:,}/{sizes[1]:,}: {ratio:.2f} (quick: the target is for 20k/10k)")
        warnings_bench((1_000, 2_000))
        return 0
    print(f"ratio 20k/10k: {ratio:.2f} (target <= 2.2)")
    diagnostics_ok = warnings_bench()
    return 0 if ratio <= 2.2 and diagnostics_ok else 1


if __name__ == "__main__":
    sys.exit(main())
