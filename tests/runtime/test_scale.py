"""A run's per-plan derivations grow linearly with the saga, and parallel compensation still
waits for exactly the compensations of the steps that depended on a step (no more, no fewer).

Sizes are counted, never timed: speed is measured in `bench/runtime.py`.
"""

from __future__ import annotations

from typing import Any

from sagac.compiler.pipeline import compile_text
from sagac.compiler.plan import Plan
from sagac.runtime.prepared import prepared

import sagac


def chain(n: int, compensation: str = "sequential", fail_last: bool = False) -> Plan:
    lines = [
        "saga: chain",
        f"compensation: {compensation}",
        "actions:",
        "  noop: {mock: {result: {}}}",
        "  boom: {mock: {fail: BOOM}}",
        "steps:",
    ]
    lines += [f"  - {{id: s{i}, action: noop, compensate: {{action: noop}}}}" for i in range(n)]
    if fail_last:
        lines.append("  - {id: last, action: boom}")
    c = compile_text("\n".join(lines) + "\n")
    assert c.plan is not None, [d.message for d in c.diagnostics]
    return c.plan


def entries(value: Any, seen: set[int]) -> int:
    """Entries of every container reachable from `value` (each container counted once); the
    plan's IR models are the plan's own size, not the derivation's, and are not entered."""
    if not isinstance(value, dict | list | tuple | set | frozenset) or id(value) in seen:
        return 0
    seen.add(id(value))
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else list(value)
    return len(value) + sum(entries(v, seen) for v in items)


def derived_size(n: int) -> int:
    """Entries the run derived from a plan of n steps, after a parallel compensation of all."""
    plan = chain(n, "parallel", fail_last=True)
    assert sagac.run(plan, {}).status == "compensated"
    seen: set[int] = set()
    return sum(entries(v, seen) for v in vars(prepared(plan)).values())


def test_a_chains_derivations_grow_linearly():
    small, large = derived_size(150), derived_size(300)
    # Quadratic tables (a node's every ancestor) would be 4x; a few entries per node is linear.
    assert large <= 2.1 * small, (small, large)
    assert large <= 40 * 300, large


def test_parallel_compensation_of_a_long_chain_runs_in_reverse():
    events: list[dict[str, Any]] = []
    report = sagac.run(chain(300, "parallel", fail_last=True), {}, on_event=events.append)
    assert report.status == "compensated"
    undone = [e["step"] for e in events if e["type"] == "compensation_started"]
    assert undone == [f"s{i}" for i in reversed(range(300))]


NESTED = """
saga: nested
compensation: parallel
actions:
  noop: {mock: {result: {}}}
  boom: {mock: {fail: BOOM}}
  undo: {mock: {result: {}}}
  slow_undo: {mock: {result: {}, delay: 80ms}}
steps:
  - {id: a, action: noop, compensate: {action: undo}}
  - parallel:
      id: g
      branches:
        - - {id: b, action: noop, compensate: {action: undo}}
          - parallel:
              id: h
              branches:
                - [{id: c, action: noop, compensate: {action: undo}}]
                - [{id: d, action: noop, compensate: {action: slow_undo}}]
        - [{id: e, action: noop, compensate: {action: undo}}]
  - {id: x, action: noop}
  - {id: f, action: noop, compensate: {action: undo}}
  - {id: boom, action: boom}
"""


def test_parallel_compensation_waits_for_dependents_only():
    c = compile_text(NESTED)
    assert c.plan is not None, [d.message for d in c.diagnostics]
    events: list[dict[str, Any]] = []
    report = sagac.run(c.plan, {}, on_event=events.append)
    assert report.status == "compensated"
    started = {e["step"]: e["seq"] for e in events if e["type"] == "compensation_started"}
    ended = {e["step"]: e["seq"] for e in events if e["type"] == "compensation_completed"}
    assert set(started) == set(ended) == {"a", "b", "c", "d", "e", "f"}
    # Each step is undone after everything that depended on it, across groups and through x
    # (which has nothing to undo): f before g's nodes, c and d before b, all before a.
    for earlier, later in [
        *(("b", "f"), ("c", "f"), ("d", "f"), ("e", "f")),
        *(("b", "c"), ("b", "d")),
        *(("a", s) for s in "bcdef"),
    ]:
        assert ended[later] < started[earlier], (earlier, later)
    # ... and not after what did not depend on it: d's undo is slow, c and e do not wait for it.
    assert started["c"] < ended["d"] and started["e"] < ended["d"]
    assert ended["e"] < ended["d"]
