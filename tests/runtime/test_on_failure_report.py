"""`on_failure` nodes see the whole report as it stands after compensation (spec 2.6)."""

from __future__ import annotations

from .fixtures_sagas import SagaFactory, run

SAGA = """
saga: after_failure
actions:
  ok: {mock: {result: {id: p1}}}
  broken_undo: {mock: {fail: REFUND_DOWN}}
  fine_undo: {mock: {result: {}}}
  boom: {mock: {fail: BOOM}}
  notice: {python: "MOD:notice"}
steps:
  - id: charge
    action: ok
    compensate: {action: broken_undo, retry: {max_attempts: 1}}
  - id: reserve
    action: ok
    compensate: {action: fine_undo, retry: {max_attempts: 1}}
  - {id: ship, action: boom}
on_failure:
  - id: tell
    action: notice
    with:
      status: "{{ report.status }}"
      needs: "{{ report.needs_attention }}"
      undone: "{{ report.compensations | map(attribute='step') | list }}"
      code: "{{ report.failure.code }}"
      run: "{{ report.run_id }}"
"""

ACTIONS = """
def notice(status, needs, undone, code, run):
    record("notice", status=status, needs=needs, undone=undone, code=code, run=run)
"""


def test_on_failure_reads_the_report_after_compensation(tmp_path):
    plan, mod = SagaFactory(tmp_path).plan(SAGA, ACTIONS)
    report, _ = run(plan)
    assert report.status == "compensation_failed"
    assert report.errors[-1].phase != "on_failure"  # the notice itself did not fail
    expected = [
        (
            "notice",
            {
                "status": "compensation_failed",
                "needs": ["charge"],
                "undone": ["reserve", "charge"],
                "code": "BOOM",
                "run": report.run_id,
            },
        )
    ]
    log = mod.LOG
    assert log == expected


def test_a_failure_with_nothing_to_undo_is_reported_as_failed(tmp_path):
    saga = SAGA.replace("  - id: charge", "  - id: charge\n    when: 'false'").replace(
        "  - id: reserve", "  - id: reserve\n    when: 'false'"
    )
    plan, mod = SagaFactory(tmp_path).plan(saga, ACTIONS)
    report, _ = run(plan)
    assert report.status == "failed"
    assert mod.LOG[0][1]["status"] == "failed" and mod.LOG[0][1]["needs"] == []
