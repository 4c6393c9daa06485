"""The report's JSON a run builds by hand (`finish.report_data`) is what its model dumps: the
same JSON stored, returned and journaled, for every way a run ends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sagac.compiler.pipeline import compile_text
from sagac.runtime.report import RunReport
from sagac.runtime.store.memory import MemoryStore

from sagac import arun

SAGAS = {
    "succeeded": """
saga: ok
steps:
  - {id: a, action: {mock: {result: {n: 1, items: [1, 2]}}}}
output: {n: "{{ steps.a.result.n }}"}
""",
    "compensation_failed": """
saga: undo_fails
steps:
  - id: a
    action: {mock: {result: {}}}
    compensate: {action: {mock: {fail: UNDO_BROKEN}}, retry: {max_attempts: 2, initial_delay: 1ms}}
  - id: b
    action: {mock: {result: {}}}
    compensate: {action: {mock: {result: {}}}, retry: {max_attempts: 2}}
  - {id: c, action: {mock: {fail: BOOM}}}
on_failure:
  - {id: tell, action: {mock: {result: {}}}, with: {status: "{{ report.status }}"}}
""",
    "failed": """
saga: plain_fail
steps:
  - fail: {id: stop, code: NOPE, message: "no {{ input.why }}"}
""",
    "waiting_approval": """
saga: gate
steps:
  - {id: a, action: {mock: {result: {}}}}
  - approval: {id: ok, approvers: [alice], message: "approve {{ input.why }}", timeout: 1h}
""",
}


@pytest.mark.parametrize("status", sorted(SAGAS))
def test_the_stored_report_is_what_the_model_dumps(status: str) -> None:
    compiled = compile_text(SAGAS[status])
    assert compiled.plan is not None, compiled.diagnostics
    store = MemoryStore()
    events: list[dict[str, Any]] = []

    async def go() -> RunReport:
        return await arun(compiled.plan, {"why": "x"}, store=store, on_event=events.append)

    report = asyncio.run(go())
    assert report.status == status
    stored = asyncio.run(store.get_run(report.run_id)).report
    assert stored is not None
    revalidated = RunReport.model_validate(stored)
    assert revalidated.model_dump() == report.model_dump()  # tokens are private: never stored
    assert report.to_json_dict() == stored == revalidated.to_json_dict()
    assert events[-1]["type"] in {"saga_completed", "saga_failed", "saga_waiting"}
    if status == "compensation_failed":
        assert [c.status for c in report.compensations] == ["ok", "failed"]
        assert report.compensations[1].error is not None
        assert {e.phase for e in report.errors} == {"run", "compensation"}
    if status == "waiting_approval":
        assert [w.id for w in report.waiting] == ["ok"]
        assert "waiting" in stored
    else:
        assert "waiting" not in stored
