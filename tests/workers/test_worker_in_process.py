"""The worker and submit in one process, on a MemoryStore: what needs no second process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sagac.runtime.resume import stored_plan
from sagac.runtime.store.base import Definition
from sagac.runtime.store.memory import MemoryStore
from sagac.runtime.worker import BACKOFF_CAP, BACKOFF_FIRST, backoff

import sagac
from sagac.errors import DefinitionUnavailable, IdempotencyConflict, InputError

SAGA = """\
saga: tiny
input:
  type: object
  required: [n]
  properties: {n: {type: integer}}
actions:
  ok: {mock: {result: {done: true}}}
  undo: {mock: {result: {}}}
steps:
  - id: first
    action: ok
    compensate: {action: undo}
  - id: second
    action: ok
output: {n: "{{ input.n }}"}
"""


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    for failures in range(1, 30):
        top = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (failures - 1))
        for _ in range(20):
            assert top / 2 <= backoff(failures) <= top
    assert backoff(100) <= BACKOFF_CAP


def test_a_stored_definition_compiles_to_its_hash_or_is_refused() -> None:
    plan = _plan()
    assert plan.source
    again = stored_plan(Definition(plan.hash, plan.saga, plan.source, None))
    assert again.hash == plan.hash
    with pytest.raises(DefinitionUnavailable, match="compiles to"):
        stored_plan(Definition("sha256:" + "0" * 64, plan.saga, plan.source, None))


def _plan() -> Any:
    c = sagac.compile_text(SAGA)
    assert c.plan is not None, c.diagnostics
    return c.plan


def test_submit_then_an_in_process_worker_drains_the_queue() -> None:
    async def go() -> tuple[int, list[dict[str, Any]], list[Any]]:
        store = MemoryStore()
        plan = _plan()
        ids = [(await sagac.asubmit(plan, {"n": i}, store=store)).run_id for i in range(5)]
        assert {(await store.get_run(i)).status for i in ids} == {"queued"}
        with pytest.raises(InputError):
            await sagac.asubmit(plan, {"n": "x"}, store=store)
        first = await sagac.asubmit(plan, {"n": 9}, store=store, idempotency_key="k")
        keyed = first.run_id
        assert not first.existing and first.approval_token is None  # no gate, no token
        again = await sagac.asubmit(plan, {"n": 9}, store=store, idempotency_key="k")
        assert (again.run_id, again.existing, again.approval_token) == (keyed, True, None)
        with pytest.raises(IdempotencyConflict):
            await sagac.asubmit(plan, {"n": 8}, store=store, idempotency_key="k")
        lines: list[dict[str, Any]] = []
        code = await sagac.arun_worker(
            store, concurrency=2, lease_ttl=2.0, exit_when_idle=True, log=lines.append
        )
        records = [await store.get_run(i) for i in [*ids, keyed]]
        return code, lines, records

    code, lines, records = asyncio.run(go())
    assert code == 0
    assert [r.status for r in records] == ["succeeded"] * 6
    assert [r.report["output"] for r in records if r.report] == [
        {"n": i} for i in (0, 1, 2, 3, 4, 9)
    ]
    finished = [x for x in lines if x["event"] == "finished"]
    assert len(finished) == 6 and {x["status"] for x in finished} == {"succeeded"}
    assert lines[0]["event"] == "worker_started" and lines[-1]["event"] == "worker_stopped"
