"""The executor's semantics: scheduling, group modes, cancellation, failure and compensation."""
# ruff: noqa: E501  (YAML sagas inline: long lines read better than split flow mappings)

from __future__ import annotations

import pytest

from .fixtures_sagas import SagaFactory, run

ACTIONS = """
async def work(name, delay=0.0, fail=None):
    record("start", step=name)
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        record("cancelled", step=name)
        raise
    if fail:
        raise StepError(fail, f"{name} failed")
    record("done", step=name)
    return {"name": name}

async def undo(name, fail=None):
    record("undo", step=name)
    if fail:
        raise StepError(fail, f"undo of {name} failed")
    return {"undone": name}

def undo_error_result(name):
    record("undo", step=name)
    return StepError("REFUND_FAILED", "an error result")
"""


def step(
    id_: str, delay: float = 0.0, fail: str | None = None, comp: bool = True, extra: str = ""
) -> str:
    args = f"{{name: {id_}, delay: {delay}" + (f", fail: {fail}" if fail else "") + "}"
    out = f"""
  - id: {id_}
    action: work
    with: {args}{extra}"""
    if comp:
        out += f"""
    compensate: {{action: undo, with: {{name: {id_}}}}}"""
    return out


HEAD = """
saga: t
actions:
  work: {python: "MOD:work"}
  undo: {python: "MOD:undo"}
  undo_bad: {python: "MOD:undo_error_result"}
"""


@pytest.fixture
def factory(tmp_path):
    return SagaFactory(tmp_path)


def undone(mod):
    return [f["step"] for name, f in (e for e in mod.LOG if isinstance(e, tuple)) if name == "undo"]


def test_linear_success_runs_in_order(factory):
    plan, mod = factory.plan(HEAD + "steps:" + step("a") + step("b") + step("c"), ACTIONS)
    report, rec = run(plan)
    assert report.status == "succeeded"
    assert rec.steps("step_completed") == ["a", "b", "c"]
    assert [e["seq"] for e in rec.events] == list(range(1, len(rec.events) + 1))
    assert rec.types()[0] == "saga_started" and rec.types()[-1] == "saga_completed"
    assert undone(mod) == []


def test_lifo_follows_completion_order_not_declaration(factory):
    # Branches finish in the order c, a, b; the step after the group fails.
    saga = (
        HEAD
        + """
steps:
  - parallel:
      id: g
      branches:
        - [{id: a, action: work, with: {name: a, delay: 0.04}, compensate: {action: undo, with: {name: a}}}]
        - [{id: b, action: work, with: {name: b, delay: 0.08}, compensate: {action: undo, with: {name: b}}}]
        - [{id: c, action: work, with: {name: c, delay: 0.0}, compensate: {action: undo, with: {name: c}}}]
"""
        + step("d", fail="BOOM", comp=False)
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, rec = run(plan)
    assert report.status == "compensated"
    assert rec.steps("step_completed")[:3] == ["c", "a", "b"]
    assert undone(mod) == ["b", "a", "c"]
    assert [c.step for c in report.compensations] == ["b", "a", "c"]
    assert report.failure.step == "d" and report.failure.code == "BOOM"


def test_all_mode_fails_fast_and_cancels_siblings(factory):
    saga = (
        HEAD
        + """
steps:
  - parallel:
      id: g
      mode: all
      branches:
        - [{id: slow, action: work, with: {name: slow, delay: 5}, compensate: {action: undo, with: {name: slow}}}]
        - [{id: quick, action: work, with: {name: quick, delay: 0.0}, compensate: {action: undo, with: {name: quick}}}]
        - - {id: bad, action: work, with: {name: bad, delay: 0.03, fail: NOPE}}
          - {id: never, action: work, with: {name: never}}
"""
        + step("after", comp=False)
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, rec = run(plan)
    assert report.status == "compensated"
    assert ("cancelled", {"step": "slow"}) in mod.LOG
    started = [f["step"] for n, f in mod.LOG if n == "start"]
    assert "never" not in started and "after" not in started
    assert undone(mod) == ["quick"]
    cancelled = [e for e in rec.of("step_failed") if e.get("cancelled")]
    assert [e["step"] for e in cancelled] == ["slow"]
    assert cancelled[0]["branch"] == "g/0"
    assert [(e.step, e.branch, e.code) for e in report.errors] == [("bad", "g/2", "NOPE")]
    # Nothing starts after the failure was journaled.
    fail_seq = next(e["seq"] for e in rec.of("step_failed") if e["step"] == "bad")
    assert not [e for e in rec.of("step_started") if e["seq"] > fail_seq]


def test_all_settled_collects_every_error(factory):
    saga = (
        HEAD
        + """
steps:
  - parallel:
      id: g
      mode: all_settled
      branches:
        - [{id: a, action: work, with: {name: a, delay: 0.02, fail: E1}}]
        - [{id: b, action: work, with: {name: b, delay: 0.05}, compensate: {action: undo, with: {name: b}}}]
        - [{id: c, action: work, with: {name: c, delay: 0.0, fail: E2}}]
"""
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, _ = run(plan)
    assert report.status == "compensated"
    assert sorted((e.step, e.code, e.branch) for e in report.errors) == [
        ("a", "E1", "g/0"),
        ("c", "E2", "g/2"),
    ]
    assert report.failure.code == "E2"  # the first error in time
    assert ("done", {"step": "b"}) in mod.LOG and undone(mod) == ["b"]


def test_any_first_success_wins_losers_cancelled_and_compensated(factory):
    saga = (
        HEAD
        + """
steps:
  - parallel:
      id: g
      mode: any
      branches:
        - - {id: a1, action: work, with: {name: a1, delay: 0.0}, compensate: {action: undo, with: {name: a1}}}
          - {id: a2, action: work, with: {name: a2, delay: 5}, compensate: {action: undo, with: {name: a2}}}
        - [{id: b, action: work, with: {name: b, delay: 0.03}, compensate: {action: undo, with: {name: b}}}]
        - [{id: c, action: work, with: {name: c, delay: 0.01, fail: DOWN}}]
  - id: use
    action: work
    with: {name: "{{ steps.g.result.name }}"}
"""
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, rec = run(plan)
    assert report.status == "succeeded"
    (done,) = rec.of("group_completed")
    assert done["winner"] == 1 and done["result"] == {"name": "b"}
    assert ("cancelled", {"step": "a2"}) in mod.LOG
    # a1 completed in a losing branch: it is compensated though its branch never finished.
    assert undone(mod) == ["a1"]
    assert ("done", {"step": "b"}) in mod.LOG
    assert [c.step for c in report.compensations] == ["a1"]


def test_any_all_branches_fail(factory):
    saga = (
        HEAD
        + """
steps:
  - parallel:
      id: g
      mode: any
      branches:
        - [{id: a, action: work, with: {name: a, fail: X}}]
        - [{id: b, action: work, with: {name: b, delay: 0.01, fail: Y}}]
"""
    )
    plan, _ = factory.plan(saga, ACTIONS)
    report, _ = run(plan)
    assert report.status == "failed"
    assert {e.code for e in report.errors} == {"X", "Y"}


def test_max_concurrency_bounds_branches(factory):
    branches = "\n".join(
        f"        - [{{id: s{i}, action: work, with: {{name: s{i}, delay: 0.02}}}}]"
        for i in range(5)
    )
    saga = (
        HEAD
        + f"""
steps:
  - parallel:
      id: g
      max_concurrency: 2
      branches:
{branches}
"""
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, _ = run(plan)
    assert report.status == "succeeded"
    in_flight = peak = 0
    for name, _f in (e for e in mod.LOG if isinstance(e, tuple)):
        in_flight += {"start": 1, "done": -1}.get(name, 0)
        peak = max(peak, in_flight)
    assert peak == 2
    assert report.output is None


def test_when_false_skips_and_never_compensates(factory):
    saga = (
        HEAD
        + "steps:"
        + step("a")
        + step("b", extra='\n    when: "{{ input.go }}"')
        + """
  - id: c
    action: work
    with: {name: "{{ steps.b.status }}-{{ steps.b.result }}", fail: BOOM}
"""
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, rec = run(plan, {"go": False})
    assert rec.steps("step_skipped") == ["b"]
    assert ("start", {"step": "skipped-None"}) in mod.LOG
    assert undone(mod) == ["a"]
    assert report.status == "compensated"


def test_fail_node_ends_the_saga_with_its_code(factory):
    saga = (
        HEAD
        + "steps:"
        + step("a")
        + """
  - fail: {id: stop_here, code: ORDER_REJECTED, message: "rejected {{ input.why }}", when: "{{ input.why != '' }}"}
"""
        + step("z")
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, _ = run(plan, {"why": "out of stock"})
    assert report.status == "compensated"
    assert report.failure.model_dump(exclude={"detail"}) == {
        "step": "stop_here",
        "branch": None,
        "item_index": None,
        "code": "ORDER_REJECTED",
        "message": "rejected out of stock",
        "attempts": 0,
    }
    assert undone(mod) == ["a"]
    report, _ = run(plan, {"why": ""})
    assert report.status == "succeeded"


def test_failure_with_nothing_to_undo_is_failed(factory):
    plan, _ = factory.plan(HEAD + "steps:" + step("a", comp=False) + step("b", fail="X"), ACTIONS)
    report, _ = run(plan)
    assert report.status == "failed" and report.compensations == []


def test_compensation_failures_are_collected_and_the_rest_still_run(factory):
    saga = (
        HEAD
        + """
steps:
  - {id: a, action: work, with: {name: a}, compensate: {action: undo, with: {name: a}}}
  - {id: b, action: work, with: {name: b}, compensate: {action: undo, with: {name: b, fail: UNAVAILABLE}, retry: {max_attempts: 3, backoff: fixed, initial_delay: 1ms, jitter: none}}}
  - {id: c, action: work, with: {name: c}, compensate: {action: undo_bad, with: {name: c}}}
  - {id: d, action: work, with: {name: d, fail: X}}
"""
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, rec = run(plan)
    assert report.status == "compensation_failed"
    assert undone(mod) == ["c", "b", "b", "b", "a"]
    assert [(c.step, c.status, c.attempts) for c in report.compensations] == [
        ("c", "failed", 1),
        ("b", "failed", 3),
        ("a", "ok", 1),
    ]
    assert report.needs_attention == ["c", "b"]
    assert report.compensations[0].error.code == "REFUND_FAILED"
    phases = [(e.step, e.phase) for e in report.errors]
    assert phases == [("d", "run"), ("c", "compensation"), ("b", "compensation")]
    retries = [e for e in rec.of("compensation_failed") if not e["final"]]
    assert len(retries) == 2 and all(e["delay_ms"] == 1 for e in retries)


def test_on_compensation_failure_stop(factory):
    saga = (
        HEAD
        + """
on_compensation_failure: stop
steps:
  - {id: a, action: work, with: {name: a}, compensate: {action: undo, with: {name: a}}}
  - {id: b, action: work, with: {name: b}, compensate: {action: undo, with: {name: b, fail: STUCK}}}
  - {id: c, action: work, with: {name: c}, compensate: {action: undo, with: {name: c}}}
  - {id: d, action: work, with: {name: d, fail: X}}
"""
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, _ = run(plan)
    assert report.status == "compensation_failed"
    assert undone(mod) == ["c", "b"]
    assert [(c.step, c.status) for c in report.compensations] == [
        ("c", "ok"),
        ("b", "failed"),
        ("a", "not_run"),
    ]
    assert report.needs_attention == ["b", "a"]


def test_attempted_compensation_after_timeout_sees_its_error(factory):
    saga = (
        HEAD
        + """
steps:
  - {id: a, action: work, with: {name: a}, compensate: {action: undo, with: {name: a}}}
  - id: b
    action: work
    with: {name: b, delay: 5}
    timeout: 50ms
    compensate: {action: undo, with: {name: "b-{{ error.code }}-{{ result }}"}, on: attempted}
"""
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, _ = run(plan)
    assert report.failure.code == "TIMEOUT"
    assert undone(mod) == ["b-TIMEOUT-None", "a"]
    assert report.status == "compensated"


def test_attempted_covers_a_step_cancelled_mid_flight(factory):
    saga = (
        HEAD
        + """
steps:
  - parallel:
      id: g
      branches:
        - [{id: long, action: work, with: {name: long, delay: 5}, compensate: {action: undo, with: {name: "long-{{ error.code }}"}, on: attempted}}]
        - [{id: bad, action: work, with: {name: bad, delay: 0.02, fail: X}}]
"""
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, _ = run(plan)
    assert undone(mod) == ["long-CANCELLED"]
    assert report.status == "compensated"


def test_parallel_compensation_follows_the_reverse_dag(factory):
    saga = (
        HEAD
        + """
compensation: parallel
steps:
  - {id: root, action: work, with: {name: root}, compensate: {action: undo, with: {name: root}}}
  - parallel:
      id: g
      branches:
        - [{id: x, action: work, with: {name: x}, compensate: {action: undo, with: {name: x}}}]
        - [{id: y, action: work, with: {name: y, delay: 0.01}, compensate: {action: undo, with: {name: y}}}]
  - {id: pay, action: work, with: {name: pay}, compensate: {action: undo, with: {name: pay}}}
  - {id: boom, action: work, with: {name: boom, fail: X}}
"""
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, _ = run(plan)
    order = undone(mod)
    assert order[0] == "pay" and order[-1] == "root" and set(order[1:3]) == {"x", "y"}
    assert report.status == "compensated"


def test_on_failure_nodes_see_failure_and_report(factory):
    saga = (
        HEAD
        + "steps:"
        + step("a")
        + step("b", fail="BOOM", comp=False)
        + """
on_failure:
  - id: notice
    action: work
    with: {name: "{{ failure.step }}:{{ failure.code }}:{{ report.compensations | length }}"}
  - id: ticket
    action: work
    with: {name: ticket, fail: TICKET_DOWN}
"""
    )
    plan, mod = factory.plan(saga, ACTIONS)
    report, _ = run(plan)
    assert ("done", {"step": "b:BOOM:1"}) in mod.LOG
    assert report.status == "compensated"
    assert [(e.step, e.code, e.phase) for e in report.errors] == [
        ("b", "BOOM", "run"),
        ("ticket", "TICKET_DOWN", "on_failure"),
    ]


def test_sync_python_cancelled_runs_to_the_end_and_counts(factory):
    actions = (
        ACTIONS
        + """
def slow_sync(name):
    time.sleep(0.15)
    record("done", step=name)
    return {"name": name}
"""
    )
    saga = (
        HEAD
        + """
  slow_sync: {python: "MOD:slow_sync"}
steps:
  - parallel:
      id: g
      branches:
        - [{id: s, action: slow_sync, with: {name: s}, compensate: {action: undo, with: {name: s}}}]
        - [{id: bad, action: work, with: {name: bad, delay: 0.03, fail: X}}]
"""
    )
    plan, mod = factory.plan(saga, actions)
    _report, rec = run(plan)
    assert rec.steps("step_completed") == ["s"]
    assert undone(mod) == ["s"]


def test_dependencies_start_nodes_as_soon_as_ready(factory):
    saga = (
        HEAD
        + """
steps:
  - {id: a, action: work, with: {name: a, delay: 0.05}}
  - {id: b, action: work, with: {name: b}, after: []}
  - {id: c, action: work, with: {name: c}, after: [b]}
  - {id: d, action: work, with: {name: d}, after: [a, c]}
"""
    )
    plan, _mod = factory.plan(saga, ACTIONS)
    report, rec = run(plan)
    assert report.status == "succeeded"
    assert rec.steps("step_completed") == ["b", "c", "a", "d"]


def test_nodes_inside_a_skipped_group_read_as_skipped(tmp_path):
    # A guard on a nested step's status (what E017 asks for) must work when its group was
    # skipped: the step reads as skipped, not as a missing name (TEMPLATE_ERROR).
    path = tmp_path / "skip.yaml"
    path.write_text(
        """\
saga: skip_nested
steps:
  - parallel:
      id: g
      when: "{{ input.g }}"
      branches:
        - [{id: g1, action: {mock: {result: {id: 7}}}}]
  - id: after
    action: {mock: {result: 1}}
    with: {x: "{{ steps.g1.result.id if steps.g1.status == 'completed' else 0 }}"}
output:
  status: "{{ steps.g1.status }}"
  id: "{{ steps.g1.result.id | default(0) }}"
"""
    )
    import sagac

    report, rec = run(sagac.load(path), {"g": False})
    assert report.status == "succeeded"
    assert report.output == {"status": "skipped", "id": 0}
    assert rec.steps("step_skipped") == ["g"]
