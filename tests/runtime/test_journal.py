"""The journal: events and their fields, redaction, `keep`, replay, resume, approval gates."""

from __future__ import annotations

import asyncio
import json

import pytest
from sagac.runtime.api import aresume
from sagac.runtime.journal import replay
from sagac.runtime.store.memory import MemoryStore

import sagac

from .fixtures_sagas import SagaFactory, run, run_until

ACTIONS = """
async def work(name, delay=0.0, fail=None, context=None):
    record("call", step=name, attempt=context.attempt, key=context.idempotency_key)
    await asyncio.sleep(delay)
    if fail:
        raise StepError(fail, f"{name} failed")
    return {"name": name, "token": "tok-" + name, "big": "x" * 10}

async def undo(name, context=None):
    record("undo", step=name, key=context.idempotency_key)
    await asyncio.sleep(0)
    return {}

def huge():
    return {"blob": "y" * 70000, "id": 1}

def leak(secret):
    return {"echo": secret, "ok": True}
"""

HEAD = """
saga: j
actions:
  work: {python: "MOD:work"}
  undo: {python: "MOD:undo"}
"""


def step(id_, fail=None, extra=""):
    f = f", fail: {fail}" if fail else ""
    return f"""
  - id: {id_}
    action: work
    with: {{name: {id_}{f}}}
    idempotency_key: "k-{id_}-{{{{ input.n }}}}"
    compensate: {{action: undo, with: {{name: {id_}}}, idempotency_key: "u-{id_}"}}{extra}"""


@pytest.fixture
def factory(tmp_path):
    return SagaFactory(tmp_path)


def calls(mod, kind="call"):
    return [f["step"] for name, f in mod.LOG if name == kind]


def test_events_carry_the_spec_fields(factory):
    plan, _ = factory.plan(HEAD + "steps:" + step("a") + step("b", fail="BAD"), "" + ACTIONS)
    report, rec = run(plan, {"n": 1})
    for e in rec.events:
        assert {"type", "run_id", "seq", "at"} <= set(e)
        assert e["run_id"] == report.run_id and e["at"].endswith("Z")
    started = rec.of("step_started")[0]
    assert started["step"] == "a" and started["attempt"] == 1
    assert started["idempotency_key"] == "k-a-1"
    done = rec.of("step_completed")[0]
    assert done["result"]["name"] == "a" and done["duration_ms"] >= 0
    failed = rec.of("step_failed")[0]
    assert failed["error"]["code"] == "BAD" and failed["final"] is True
    comp = rec.of("compensation_started")[0]
    assert comp["step"] == "a" and comp["idempotency_key"] == "u-a"
    assert rec.types()[-1] == "saga_failed"
    assert rec.events[-1]["status"] == "compensated"
    json.dumps(rec.events)  # plain JSON data


def test_store_holds_the_journal_and_the_report(factory):
    plan, _ = factory.plan(HEAD + "steps:" + step("a"), ACTIONS)
    store = MemoryStore()
    report, rec = run(plan, {"n": 1}, store=store)

    async def check():
        record = await store.get_run(report.run_id)
        assert record.status == "succeeded" and record.report == report.to_json_dict()
        assert record.definition_hash == plan.hash
        assert await store.load_events(report.run_id) == rec.events
        assert [r.run_id for r in await store.list_runs(status="succeeded")] == [report.run_id]

    asyncio.run(check())


def test_keep_filters_the_journal_and_later_templates(factory):
    text = (
        HEAD
        + "steps:"
        + step("a", extra="\n    keep: [name]")
        + """
  - id: b
    action: work
    with: {name: "{{ steps.a.result | tojson }}"}
"""
    )
    plan, mod = factory.plan(text, ACTIONS)
    _report, rec = run(plan, {"n": 1})
    assert rec.of("step_completed")[0]["result"] == {"name": "a"}
    assert calls(mod)[1] == '{"name": "a"}'


def test_a_result_over_64_kib_fails_with_a_hint(factory):
    text = """
saga: j
actions:
  huge: {python: "MOD:huge"}
steps:
  - {id: h, action: huge}
  - {id: h2, action: huge, keep: [id]}
"""
    plan, _ = factory.plan(text, ACTIONS)
    report, _ = run(plan)
    assert report.failure.step == "h" and report.failure.code == "RESULT_TOO_LARGE"
    assert "keep" in report.failure.message
    report, _ = run(plan, fail=None)  # same again: nothing cached between runs
    assert report.status == "failed"


def test_secrets_never_reach_events_or_report(factory):
    text = """
saga: s
secrets: [API_TOKEN]
actions:
  leak: {python: "MOD:leak"}
  work: {python: "MOD:work"}
steps:
  - id: a
    action: leak
    with: {secret: "{{ secrets.API_TOKEN }}"}
    idempotency_key: "idem-{{ run.id }}"
  - {id: b, action: work, with: {name: "n-{{ secrets.API_TOKEN }}", fail: X}}
output: "{{ secrets.API_TOKEN }}"
"""
    plan, _ = factory.plan(text, ACTIONS)
    report, rec = run(plan, secrets={"API_TOKEN": "s3cr3t-value"})
    blob = json.dumps(rec.events) + report.model_dump_json()
    assert "s3cr3t-value" not in blob
    assert rec.of("step_completed")[0]["result"] == {"echo": "***", "ok": True}


def test_replay_reconstructs_the_state(factory):
    text = (
        HEAD
        + "steps:"
        + step("a")
        + """
  - {id: skip_me, action: work, with: {name: s}, when: "{{ false }}"}
"""
        + step("b", fail="BAD")
    )
    plan, _ = factory.plan(text, ACTIONS)
    _report, rec = run(plan, {"n": 2})
    state = replay(rec.events)
    assert state.completed()[("a", None)].result["name"] == "a"
    assert state.steps[("skip_me", None)].status == "skipped"
    assert state.steps[("b", None)].status == "failed"
    assert state.steps[("b", None)].idempotency_key == "k-b-2"
    assert state.compensations[("a", None)].status == "ok"
    assert state.failure["code"] == "BAD" and state.finished
    assert state.input == {"n": 2} and state.definition_hash == plan.hash


def _resume(plan, run_id, store, **kw):
    return asyncio.run(aresume(plan, run_id, store, **kw))


def test_resume_after_a_crash_between_steps(factory):
    plan, mod = factory.plan(HEAD + "steps:" + step("a") + step("b") + step("c"), ACTIONS)
    store = MemoryStore()
    run_id, _ = asyncio.run(
        run_until(
            plan, {"n": 1}, store, lambda e: e["type"] == "step_completed" and e["step"] == "b"
        )
    )
    # The cancel lands at the next suspension point: c's action had just begun.
    assert calls(mod)[:2] == ["a", "b"]
    report = _resume(plan, run_id, store)
    assert report.status == "succeeded"
    assert calls(mod).count("a") == 1 and calls(mod).count("b") == 1 and calls(mod)[-1] == "c"
    types = [e["type"] for e in asyncio.run(store.load_events(run_id))]
    assert types.count("saga_started") == 1 and "saga_resumed" in types


def test_resume_reruns_an_interrupted_step_with_the_same_key(factory):
    plan, mod = factory.plan(HEAD + "steps:" + step("a") + step("b") + step("c"), ACTIONS)
    store = MemoryStore()
    run_id, _ = asyncio.run(
        run_until(plan, {"n": 5}, store, lambda e: e["type"] == "step_started" and e["step"] == "b")
    )
    report = _resume(plan, run_id, store)
    assert report.status == "succeeded"
    b_calls = [f for name, f in mod.LOG if name == "call" and f["step"] == "b"]
    assert [(f["attempt"], f["key"]) for f in b_calls] == [(1, "k-b-5"), (2, "k-b-5")]
    assert calls(mod).count("a") == 1 and calls(mod).count("c") == 1


def test_keys_are_journaled_verbatim_and_a_resume_sends_the_same_one(factory):
    # A key never reads `secrets` (E024), so it is journaled as it is: even when its text
    # happens to contain a secret's value, a resume must send the key the first attempt sent.
    plan, mod = factory.plan(HEAD + "steps:" + step("a") + step("b") + step("c"), ACTIONS)
    store = MemoryStore()
    secrets = {"API_TOKEN": "acme-7"}
    run_id, rec = asyncio.run(
        run_until(
            plan,
            {"n": "acme-7"},
            store,
            lambda e: e["type"] == "step_started" and e["step"] == "b",
            secrets=secrets,
        )
    )
    assert rec.of("step_started")[0]["idempotency_key"] == "k-a-acme-7"
    report = _resume(plan, run_id, store, secrets=secrets)
    assert report.status == "succeeded"
    b_keys = [f["key"] for name, f in mod.LOG if name == "call" and f["step"] == "b"]
    assert b_keys == ["k-b-acme-7", "k-b-acme-7"]


def test_resume_continues_an_interrupted_compensation(factory):
    text = HEAD + "steps:" + step("a") + step("b") + step("c") + step("d", fail="BAD")
    plan, mod = factory.plan(text, ACTIONS)
    store = MemoryStore()
    # Crash after c was undone, while b's undo has started (and not ended).
    run_id, _ = asyncio.run(
        run_until(
            plan,
            {"n": 1},
            store,
            lambda e: e["type"] == "compensation_started" and e["step"] == "b",
        )
    )
    assert calls(mod, "undo") == ["c", "b"]
    report = _resume(plan, run_id, store)
    assert report.status == "compensated"
    assert calls(mod, "undo") == ["c", "b", "b", "a"]  # b again (same key), c never twice
    assert [c.step for c in report.compensations] == ["c", "b", "a"]
    assert calls(mod) == ["a", "b", "c", "d"]
    assert report.failure.step == "d"


def test_resume_in_a_parallel_group(factory):
    text = (
        HEAD
        + """
steps:
  - parallel:
      id: g
      branches:
        - [{id: x, action: work, with: {name: x}, compensate: {action: undo, with: {name: x}}}]
        - [{id: y, action: work, with: {name: y, delay: 0.05}}]
  - {id: z, action: work, with: {name: "z-{{ steps.g.result[1].name }}"}}
"""
    )
    plan, mod = factory.plan(text, ACTIONS)
    store = MemoryStore()
    run_id, _ = asyncio.run(
        run_until(plan, {}, store, lambda e: e["type"] == "step_completed" and e["step"] == "x")
    )
    report = _resume(plan, run_id, store)
    assert report.status == "succeeded"
    # x completed before the crash and is not called again; y was in flight (journaled as
    # started, its action perhaps not yet called) and runs again as attempt 2.
    assert calls(mod).count("x") == 1 and calls(mod)[-1] == "z-y"
    y_calls = [f["attempt"] for name, f in mod.LOG if f["step"] == "y"]
    assert y_calls[-1] == 2 and len(y_calls) <= 2


def test_resume_of_a_finished_run_returns_its_report(factory):
    plan, mod = factory.plan(HEAD + "steps:" + step("a"), ACTIONS)
    store = MemoryStore()
    report = sagac.run(plan, {"n": 1}, store=store)
    again = _resume(plan, report.run_id, store)
    assert again == report and calls(mod) == ["a"]


GATE = (
    HEAD
    + "steps:"
    + step("a")
    + """
  - approval:
      id: gate
      key: "approve-{{ input.n }}"
      approvers: [alice]
      message: "please {{ steps.a.result.name }}"
      timeout: 1h
  - id: after
    action: work
    with: {name: "{{ steps.gate.result.by }}"}
"""
)


def _decide(store, run_id, approved, **fields):
    async def go():
        events = await store.load_events(run_id)
        await store.append(
            run_id,
            [
                {
                    "type": "approval_decided",
                    "run_id": run_id,
                    "seq": events[-1]["seq"] + 1,
                    "at": "2024-01-01T00:00:00.000Z",
                    "step": "gate",
                    "approved": approved,
                    "by": "alice",
                    "comment": "ok",
                    "value": None,
                    **fields,
                }
            ],
        )

    asyncio.run(go())


def test_approval_gate_waits_then_resumes_approved(factory):
    plan, mod = factory.plan(GATE, ACTIONS)
    store = MemoryStore()
    report, rec = run(plan, {"n": 9}, store=store)
    assert report.status == "waiting_approval" and report.exit_code == 3
    (req,) = rec.of("approval_requested")
    assert req["key"] == "approve-9" and req["message"] == "please a"
    assert req["approvers"] == ["alice"] and req["deadline"].endswith("Z")
    assert asyncio.run(store.get_run(report.run_id)).status == "waiting_approval"
    assert calls(mod) == ["a"]
    # Resuming without a decision waits again, without a second request.
    again = _resume(plan, report.run_id, store)
    assert again.status == "waiting_approval"
    events = asyncio.run(store.load_events(report.run_id))
    assert [e["type"] for e in events].count("approval_requested") == 1
    _decide(store, report.run_id, True)
    done = _resume(plan, report.run_id, store)
    assert done.status == "succeeded" and calls(mod) == ["a", "alice"]


def test_approval_rejected_fails_and_compensates(factory):
    plan, mod = factory.plan(GATE, ACTIONS)
    store = MemoryStore()
    report, _ = run(plan, {"n": 9}, store=store)
    _decide(store, report.run_id, False, comment="too much")
    done = _resume(plan, report.run_id, store)
    assert done.status == "compensated"
    assert done.failure.code == "APPROVAL_REJECTED" and done.failure.step == "gate"
    assert calls(mod, "undo") == ["a"]


def test_resume_refuses_a_changed_definition(factory):
    plan, _ = factory.plan(GATE, ACTIONS)
    other, _ = factory.plan(HEAD + "steps:" + step("a"), ACTIONS)
    store = MemoryStore()
    report, _ = run(plan, {"n": 9}, store=store)
    with pytest.raises(sagac.SagacError, match="definition"):
        _resume(other, report.run_id, store)


def _ev(seq, type_, at, **fields):
    return {"type": type_, "run_id": "r", "seq": seq, "at": f"2026-01-01T00:{at}Z", **fields}


def test_replay_counts_active_time_only():
    """Parked time (saga_waiting to saga_resumed) and a decision written by another process do
    not count; a crashed stretch counts up to its last event; a journal from before active time
    was journaled counts wall time up to its resume."""
    started = _ev(1, "saga_started", "00:00.000", saga="s", version=1, definition_hash="h")
    parked = [
        started,
        _ev(2, "saga_waiting", "00:02.000", status="waiting_approval", active_ms=1500),
        _ev(3, "approval_decided", "50:00.000", step="g", approved=True),
    ]
    assert replay(parked).active_seconds == 1.5
    resumed = [*parked, _ev(4, "saga_resumed", "59:00.000", from_seq=3, active_ms=1500)]
    crashed = [*resumed, _ev(5, "step_started", "59:03.250", step="x", attempt=1)]
    assert replay(crashed).active_seconds == 4.75
    old = [started, _ev(2, "saga_waiting", "00:02.000", status="waiting_approval")]
    old.append(_ev(3, "saga_resumed", "10:00.000", from_seq=2))
    assert replay(old).active_seconds == 600.0


def test_replay_keeps_the_process_groups_of_attempts_that_never_ended():
    """What a resume ends: a command attempt's group, until its attempt's end is journaled (a
    foreach item's completion: its index in a batch_progress)."""

    def ev(seq, type_, **fields):
        return {"type": type_, "run_id": "r", "seq": seq, "at": "", **fields}

    def group(seq, step, attempt, pgid, **extra):
        return ev(seq, "process_started", step=step, attempt=attempt, pgid=pgid, **extra)

    state = replay(
        [
            group(1, "a", 1, 101),
            ev(2, "step_retrying", step="a", attempt=1, delay_ms=0, error={}),
            group(3, "a", 2, 102),
            ev(4, "step_completed", step="a", attempt=2, result=None),
            group(5, "items", 1, 201, item_index=0),
            group(6, "items", 1, 202, item_index=1),
            ev(7, "batch_progress", step="items", batch=1, completed=[0]),
            group(8, "a", 1, 301, compensation=True),
            group(9, "b", 1, 401),
        ]
    )
    assert sorted(e["pgid"] for e in state.processes.values()) == [202, 301, 401]
