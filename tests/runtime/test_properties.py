"""Laws of compensation, checked on random DAGs of mock steps (hypothesis).

For any DAG and any failing step: the compensations that run are exactly those of the
compensable steps that completed, each once, in reverse order of completion (sequential), or
never before the compensation of a step that depended on it (parallel).
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sagac.compiler.pipeline import compile_text

import sagac


@st.composite
def dags(draw):
    n = draw(st.integers(2, 8))
    steps = []
    for i in range(n):
        after = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        steps.append(
            {
                "id": f"s{i}",
                "after": [f"s{j}" for j in after],
                "delay": draw(st.sampled_from(["0ms", "0ms", "1ms", "2ms"])),
                "comp": draw(st.booleans()),
            }
        )
    failing = draw(st.integers(0, n - 1))
    mode = draw(st.sampled_from(["sequential", "parallel"]))
    return steps, failing, mode


def saga_text(steps, failing, mode):
    lines = ["saga: prop", f"compensation: {mode}", "steps:"]
    for i, s in enumerate(steps):
        action = {"mock": {"result": {"i": i}, "delay": s["delay"]}}
        if i == failing:
            action["mock"]["fail"] = "BOOM"
        node = {"id": s["id"], "action": action, "after": s["after"]}
        if s["comp"] and i != failing:
            node["compensate"] = {"action": {"mock": {"result": {}}}}
        lines.append("  - " + json.dumps(node))
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_compensations_are_the_completed_compensable_steps_in_reverse(case):
    steps, failing, mode = case
    c = compile_text(saga_text(steps, failing, mode))
    assert c.plan is not None, [d.message for d in c.diagnostics]
    events = []
    report = sagac.run(c.plan, {}, on_event=events.append)
    completed = [e["step"] for e in events if e["type"] == "step_completed"]
    compensable = {s["id"] for i, s in enumerate(steps) if s["comp"] and i != failing}
    expected = [s for s in reversed(completed) if s in compensable]
    ran = [e["step"] for e in events if e["type"] == "compensation_started"]
    assert sorted(ran) == sorted(expected) and len(set(ran)) == len(ran)
    assert report.failure is not None and report.failure.step == f"s{failing}"
    if mode == "sequential":
        assert ran == expected
    else:
        deps = {s["id"]: set(s["after"]) for s in steps}  # `after` is always explicit here
        ended = {e["step"]: e["seq"] for e in events if e["type"] == "compensation_completed"}
        started = {e["step"]: e["seq"] for e in events if e["type"] == "compensation_started"}
        for later, before in deps.items():
            for earlier in before:
                if later in ended and earlier in started:
                    assert ended[later] < started[earlier]
    status = "compensated" if ran else "failed"
    assert report.status == status
