"""Retries and timeouts: backoff sequences (fake clock), jitter bounds, deadlines."""
# ruff: noqa: E501  (YAML sagas inline: long lines read better than split flow mappings)

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sagac.compiler.ir import RetryPolicy
from sagac.runtime.clock import FakeClock
from sagac.runtime.retry import RetryState, backoff_delay, base_delay

from .fixtures_sagas import SagaFactory, run

ACTIONS = """
async def flaky(code="UNAVAILABLE", times=100, delay=0.0, context=None):
    record("call", attempt=context.attempt, key=context.idempotency_key)
    await asyncio.sleep(delay)
    if context.attempt <= times:
        raise StepError(code, f"attempt {context.attempt}")
    return {"attempt": context.attempt}
"""


@pytest.fixture
def factory(tmp_path):
    return SagaFactory(tmp_path)


def saga(retry: str, extra: str = "", with_: str = "{}") -> str:
    return f"""
saga: r
actions:
  flaky: {{python: "MOD:flaky"}}
steps:
  - id: s
    action: flaky
    with: {with_}
    idempotency_key: "key-{{{{ input.n }}}}"
    retry: {retry}{extra}
"""


@pytest.mark.parametrize(
    ("retry", "delays"),
    [
        (
            "{max_attempts: 5, backoff: fixed, initial_delay: 100ms, jitter: none}",
            [0.1, 0.1, 0.1, 0.1],
        ),
        (
            "{max_attempts: 5, backoff: linear, initial_delay: 100ms, jitter: none}",
            [0.1, 0.2, 0.3, 0.4],
        ),
        (
            "{max_attempts: 6, backoff: exponential, initial_delay: 100ms, jitter: none}",
            [0.1, 0.2, 0.4, 0.8, 1.6],
        ),
        (
            "{max_attempts: 6, initial_delay: 100ms, multiplier: 3, max_delay: 1s, jitter: none}",
            [0.1, 0.3, 0.9, 1.0, 1.0],
        ),
    ],
)
def test_backoff_sequences_with_a_fake_clock(factory, retry, delays):
    plan, mod = factory.plan(saga(retry), ACTIONS)
    clock = FakeClock()
    report, rec = run(plan, {"n": 7}, clock=clock)
    assert report.status == "failed"
    assert clock.sleeps == pytest.approx(delays)
    assert [e["delay_ms"] for e in rec.of("step_retrying")] == [round(d * 1000) for d in delays]
    assert report.failure.attempts == len(delays) + 1
    # One idempotency key, rendered once, reused by every attempt and journaled with each.
    assert {f["key"] for _, f in mod.LOG} == {"key-7"}
    assert [e["idempotency_key"] for e in rec.of("step_started")] == ["key-7"] * len(mod.LOG)
    assert [e["attempt"] for e in rec.of("step_started")] == list(range(1, len(delays) + 2))


def test_full_jitter_stays_within_bounds(factory):
    plan, _ = factory.plan(
        saga("{max_attempts: 8, initial_delay: 100ms, max_delay: 2s, jitter: full}"), ACTIONS
    )
    clock = FakeClock(seed=3)
    run(plan, {"n": 1}, clock=clock)
    caps = [min(0.1 * 2**i, 2.0) for i in range(7)]
    assert len(clock.sleeps) == 7
    assert all(0 <= d <= cap for d, cap in zip(clock.sleeps, caps, strict=True))
    assert len(set(clock.sleeps)) > 1


@given(
    backoff=st.sampled_from(["fixed", "linear", "exponential"]),
    initial=st.floats(0.001, 10),
    multiplier=st.floats(1, 5),
    max_delay=st.floats(0.001, 60),
    n=st.integers(1, 40),
    r=st.floats(0, 0.999999),
)
def test_delays_never_exceed_max_delay(backoff, initial, multiplier, max_delay, n, r):
    p = RetryPolicy(
        backoff=backoff,
        initial_delay=initial,
        multiplier=multiplier,
        max_delay=max_delay,
        jitter="full",
    )
    d = backoff_delay(p, n, lambda: r)
    assert 0 <= d <= max_delay
    assert d <= base_delay(p, n) + 1e-12


def test_policies_match_by_code_in_order_and_count_separately():
    a = RetryPolicy(max_attempts=3, on=("TIMEOUT",), jitter="none", initial_delay=1)
    b = RetryPolicy(max_attempts=2, on=("UNAVAILABLE", "TIMEOUT"), jitter="none", initial_delay=5)
    state = RetryState((a, b))
    assert state.next_delay("TIMEOUT", lambda: 0) == (1, 3)
    assert state.next_delay("UNAVAILABLE", lambda: 0) == (5, 2)
    assert state.next_delay("UNAVAILABLE", lambda: 0) is None
    assert state.next_delay("TIMEOUT", lambda: 0) == (2, 3)
    assert state.next_delay("TIMEOUT", lambda: 0) is None
    assert state.next_delay("PAYMENT_DECLINED", lambda: 0) is None


def test_only_codes_in_on_are_retried(factory):
    plan, mod = factory.plan(
        saga(
            "{max_attempts: 5, initial_delay: 1ms}", "\n    errors: [DECLINED]", "{code: DECLINED}"
        ),
        ACTIONS,
    )
    report, rec = run(plan, {"n": 1}, clock=FakeClock())
    assert len(mod.LOG) == 1 and report.failure.code == "DECLINED"
    assert rec.of("step_retrying") == []


def test_a_retry_that_succeeds(factory):
    plan, _mod = factory.plan(
        saga("{max_attempts: 5, initial_delay: 10ms, jitter: none}", "", "{times: 2}"), ACTIONS
    )
    clock = FakeClock()
    report, rec = run(plan, {"n": 1}, clock=clock)
    assert report.status == "succeeded" and clock.sleeps == pytest.approx([0.01, 0.02])
    assert rec.of("step_completed")[0]["attempt"] == 3


def test_per_attempt_timeout_is_retried(factory):
    plan, _mod = factory.plan(
        saga(
            "{max_attempts: 3, initial_delay: 1ms, jitter: none}",
            "\n    timeout: 30ms",
            "{delay: 5}",
        ),
        ACTIONS,
    )
    report, rec = run(plan, {"n": 1}, clock=FakeClock())
    assert report.failure.code == "TIMEOUT" and report.failure.attempts == 3
    assert len(rec.of("step_retrying")) == 2


def test_step_deadline_across_attempts(factory):
    # Each retry waits 400ms (fake time); the deadline of 1s leaves room for two of them.
    plan, _mod = factory.plan(
        saga(
            "{max_attempts: 10, backoff: fixed, initial_delay: 400ms, jitter: none}",
            "\n    deadline: 1s",
        ),
        ACTIONS,
    )
    clock = FakeClock()
    report, _ = run(plan, {"n": 1}, clock=clock)
    assert report.failure.code == "TIMEOUT"
    assert "deadline" in report.failure.message
    assert report.failure.attempts == 3 and clock.sleeps == pytest.approx([0.4, 0.4])


def test_step_deadline_cuts_a_slow_attempt(factory):
    plan, _ = factory.plan(
        saga(
            "{max_attempts: 10, initial_delay: 1ms}",
            "\n    deadline: 50ms\n    timeout: 10s",
            "{delay: 5}",
        ),
        ACTIONS,
    )
    report, _ = run(plan, {"n": 1})
    assert report.failure.code == "TIMEOUT" and report.failure.attempts == 1


def test_saga_deadline(factory):
    text = """
saga: d
timeout: 100ms
actions:
  flaky: {python: "MOD:flaky"}
steps:
  - {id: a, action: flaky, with: {times: 0}, compensate: {action: flaky, with: {times: 0, delay: 0.2}}}
  - {id: b, action: flaky, with: {delay: 5}, timeout: 10s}
"""
    plan, _mod = factory.plan(text, ACTIONS)
    report, _ = run(plan)
    assert report.failure.code == "SAGA_TIMEOUT" and report.failure.step == "b"
    # Compensation is not bound by the saga's deadline (it takes 200ms here).
    assert report.status == "compensated"
    assert [(c.step, c.status) for c in report.compensations] == [("a", "ok")]


def test_saga_deadline_stops_waiting_retries(factory):
    text = """
saga: d
timeout: 1s
actions:
  flaky: {python: "MOD:flaky"}
steps:
  - {id: a, action: flaky, retry: {max_attempts: 10, backoff: fixed, initial_delay: 300ms, jitter: none}}
"""
    plan, _ = factory.plan(text, ACTIONS)
    clock = FakeClock()
    report, _ = run(plan, clock=clock)
    assert report.failure.code == "SAGA_TIMEOUT"
    assert clock.sleeps == pytest.approx([0.3, 0.3, 0.3])


def test_defaults_compensate_retries_and_bounds_a_compensation(factory):
    # The steps are not retried (`defaults.retry`); their undos are, under a tighter bound.
    text = """
saga: d
actions:
  flaky: {python: "MOD:flaky"}
defaults:
  timeout: 10s
  retry: {max_attempts: 1}
  compensate:
    timeout: 50ms
    retry: {max_attempts: 3, backoff: fixed, initial_delay: 1ms, jitter: none}
steps:
  - {id: a, action: flaky, with: {times: 0}, compensate: {action: flaky, with: {times: 2}, idempotency_key: ka}}
  - {id: b, action: flaky, with: {times: 0}, compensate: {action: flaky, with: {times: 0, delay: 5}, idempotency_key: kb}}
  - {id: c, action: flaky, with: {code: BOOM, times: 1}}
"""
    plan, mod = factory.plan(text, ACTIONS)
    started = time.monotonic()
    report, _ = run(plan)
    assert time.monotonic() - started < 3
    assert report.failure.code == "BOOM" and report.failure.step == "c"
    assert [(c.step, c.status, c.attempts) for c in report.compensations] == [
        ("b", "failed", 3),
        ("a", "ok", 3),
    ]
    assert report.compensations[0].error.code == "TIMEOUT"
    keys = [f["key"] for name, f in mod.LOG if name == "call"]
    assert keys == [None, None, None, "kb", "kb", "kb", "ka", "ka", "ka"]
