"""The contract's runs and journal: run rows, appends read back in order, concurrent appends,
the steps view, run-level idempotency keys, and everything read back after reopening."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sagac.compiler.pipeline import compile_text
from sagac.runtime import resume
from sagac.runtime.store import Store
from sagac.runtime.store.base import RunRecord

from sagac.errors import RunNotFound, StoreError

from .conftest import Stores, ev, new_run


def test_run_rows_are_created_updated_listed_and_filtered(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await store.create_run(RunRecord("r1", "checkout", 2, "sha256:x", {"a": [1, "é"]}))
        with pytest.raises(StoreError, match="already exists"):
            await store.create_run(RunRecord("r1", "checkout", 2, "sha256:x", {}))
        got = await store.get_run("r1")
        assert (got.saga, got.version, got.definition_hash, got.input, got.status) == (
            "checkout",
            2,
            "sha256:x",
            {"a": [1, "é"]},
            "running",
        )
        assert got.created_at and got.updated_at and got.report is None
        await store.update_run("r1", "compensated", {"status": "compensated", "n": 1})
        got = await store.get_run("r1")
        assert (got.status, got.report) == ("compensated", {"status": "compensated", "n": 1})
        await store.update_run("r1", "interrupted")  # no report: the stored one stays
        assert (await store.get_run("r1")).report == {"status": "compensated", "n": 1}
        await store.create_run(RunRecord("r2", "refund", 1, "sha256:y", None))
        await store.create_run(RunRecord("r3", "refund", 1, "sha256:y", None))
        assert [r.run_id for r in await store.list_runs()] == ["r3", "r2", "r1"]
        assert [r.run_id for r in await store.list_runs(saga="checkout")] == ["r1"]
        assert [r.run_id for r in await store.list_runs(status="running")] == ["r3", "r2"]
        assert [r.run_id for r in await store.list_runs(saga="refund", limit=1)] == ["r3"]
        assert await store.list_runs(saga="nope") == []
        with pytest.raises(RunNotFound):
            await store.get_run("nope")
        with pytest.raises(RunNotFound):
            await store.update_run("nope", "failed")

    stores.run(body)


def test_runs_are_listed_in_pages_and_time_ranges(stores: Stores) -> None:
    """`before` (a run id) lists the runs after that run in the newest-first order, whatever
    runs were created since; `since` and `until` bound `created_at`; an unknown `before` lists
    nothing."""

    async def body(s: Stores) -> None:
        store = s.open()
        for i in range(7):
            await store.create_run(RunRecord(f"p{i}", "paged", 1, "sha256:p", None))
        order = [r.run_id for r in await store.list_runs(saga="paged")]
        assert order == [f"p{i}" for i in reversed(range(7))]
        first = await store.list_runs(saga="paged", limit=3)
        await store.create_run(RunRecord("p7", "paged", 1, "sha256:p", None))
        rest = await store.list_runs(saga="paged", before=first[-1].run_id)
        assert [r.run_id for r in first + rest] == order
        assert await store.list_runs(before="nope") == []
        oldest = (await store.get_run("p0")).created_at
        newest = (await store.get_run("p7")).created_at
        since = await store.list_runs(saga="paged", since=newest)
        assert "p7" in [r.run_id for r in since] and all(r.created_at >= newest for r in since)
        until = await store.list_runs(saga="paged", until=oldest)
        assert until == []
        assert len(await store.list_runs(since=oldest, until="9999-12-31T00:00:00.000Z")) == 8

    stores.run(body)


def test_appends_are_read_back_in_order_with_their_payloads(stores: Stores) -> None:
    """Events come back as written (nested JSON, text, a foreach's checkpoint block), in seq
    order, from any seq on; the final append stores the report and the status with it."""
    block = {"step": "f", "completed": [2, 0, 1], "cursors": ["c2", "c0", "c1"], "results": None}

    async def body(s: Stores) -> None:
        store = s.open()
        await new_run(store)
        await store.append("r1", [ev("r1", 1, "saga_started", input={"x": "ü", "n": None})])
        await store.append(
            "r1",
            [
                ev("r1", 2, "step_started", step="a", attempt=1, idempotency_key="k"),
                ev("r1", 3, "step_completed", step="a", attempt=1, result={"id": [1, 2.5]}),
                ev("r1", 4, "batch_progress", **block),
            ],
        )
        report = {"status": "succeeded", "output": {"ok": True}}
        await store.append("r1", [ev("r1", 5, "saga_completed", status="succeeded")], report)
        events = await store.load_events("r1")
        assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
        assert events[0]["input"] == {"x": "ü", "n": None}
        assert events[2]["result"] == {"id": [1, 2.5]}
        assert {k: events[3][k] for k in block} == block
        assert [e["seq"] for e in await store.load_events("r1", after_seq=3)] == [4, 5]
        assert await store.load_events("r1", after_seq=5) == []
        record = await store.get_run("r1")
        assert (record.status, record.report) == ("succeeded", report)
        events[0]["input"]["x"] = "changed"  # what a reader holds is its own copy
        assert (await store.load_events("r1"))[0]["input"]["x"] == "ü"
        with pytest.raises(RunNotFound):
            await store.append("nope", [ev("nope", 1, "saga_started")])
        with pytest.raises(RunNotFound):
            await store.load_events("nope")

    stores.run(body)


def test_concurrent_appends_from_many_tasks_and_handles_keep_every_journal_whole(
    stores: Stores,
) -> None:
    """60 runs written at once by 60 tasks through two handles on the store (two processes'
    worth for SQLite; one store for memory), each in appends of one to three events: every
    journal complete and in order, through either handle."""

    async def body(s: Stores) -> None:
        first, second = s.open(), s.open()
        runs = [f"r{i}" for i in range(60)]
        for r in runs:
            await new_run(first, r)

        async def writer(store: Store, r: str) -> None:
            seq = 1
            while seq <= 30:
                size = 1 + seq % 3
                batch = [
                    ev(r, n, "step_started", step=f"s{n}", attempt=1)
                    for n in range(seq, min(seq + size, 31))
                ]
                await store.append(r, batch)
                seq += len(batch)

        await asyncio.gather(*(writer(first if i % 2 else second, r) for i, r in enumerate(runs)))
        for store in (first, second):
            for r in runs:
                events = await store.load_events(r)
                assert [e["seq"] for e in events] == list(range(1, 31)), r
                assert [e["step"] for e in events] == [f"s{n}" for n in range(1, 31)]

    stores.run(body)


def _journal(r: str) -> list[dict[str, Any]]:
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("saga_started", {}),
        ("step_started", {"step": "a", "attempt": 1, "idempotency_key": "ka"}),
        ("step_retrying", {"step": "a", "attempt": 1, "error": {"code": "E"}}),
        ("step_started", {"step": "a", "attempt": 2, "idempotency_key": "ka"}),
        ("step_completed", {"step": "a", "attempt": 2, "result": {"id": 1}}),
        ("step_started", {"step": "b", "attempt": 1, "idempotency_key": "kb"}),
        ("step_failed", {"step": "b", "attempt": 1, "error": {"code": "X"}, "cancelled": True}),
        ("step_started", {"step": "b", "attempt": 2, "idempotency_key": "kb"}),
        ("step_completed", {"step": "b", "attempt": 2, "result": [1, 2]}),
        ("step_skipped", {"step": "c"}),
        ("step_started", {"step": "f", "item_index": 0, "attempt": 1, "idempotency_key": "f0"}),
        ("step_started", {"step": "f", "item_index": 1, "attempt": 1, "idempotency_key": "f1"}),
        ("step_completed", {"step": "f", "item_index": 1, "attempt": 1, "result": None}),
        ("step_failed", {"step": "f", "item_index": 0, "attempt": 1, "error": {"code": "Y"}}),
        ("group_completed", {"step": "g", "result": [None]}),
        ("approval_requested", {"step": "w", "approvers": ["x"], "definition_hash": "h"}),
        ("step_started", {"step": "d", "attempt": 1, "idempotency_key": "kd"}),
        ("step_failed", {"step": "d", "attempt": 1, "error": {"code": "Z"}, "final": True}),
        ("compensation_started", {"step": "a", "attempt": 1}),
        ("compensation_completed", {"step": "a", "attempt": 1}),
        ("compensation_started", {"step": "b", "attempt": 1}),
        ("compensation_failed", {"step": "b", "attempt": 1, "error": {"code": "U"}}),
        ("compensation_only", {"step": "q"}),
        ("step_started", {"step": "z", "attempt": 1, "idempotency_key": None}),
    ]
    return [ev(r, i, t, **f) for i, (t, f) in enumerate(kinds, 1)]


# The steps view of `_journal`, as every store must show it.
_STEPS = [
    ("a", None, "completed", 2, "ka", {"id": 1}, None, 2, 5, "ok", 1),
    ("b", None, "completed", 2, "kb", [1, 2], None, 6, 9, "started", 1),
    ("c", None, "skipped", 0, None, None, None, None, 10, None, 0),
    ("f", 0, "failed", 1, "f0", None, {"code": "Y"}, 11, 14, None, 0),
    ("f", 1, "completed", 1, "f1", None, None, 12, 13, None, 0),
    ("g", None, "completed", 0, None, [None], None, None, 15, None, 0),
    ("w", None, "waiting", 0, None, None, None, 16, None, None, 0),
    ("d", None, "failed", 1, "kd", None, {"code": "Z"}, 17, 18, None, 0),
    ("z", None, "started", 1, None, None, None, 24, None, None, 0),
]
_STEP_KEYS = (
    "step",
    "item_index",
    "status",
    "attempt",
    "idempotency_key",
    "result",
    "error",
    "started_seq",
    "ended_seq",
    "compensation",
    "compensation_attempt",
)


def test_the_steps_view_is_the_same_in_every_store_however_events_are_grouped(
    stores: Stores,
) -> None:
    """One append of everything, one append per event, or many runs' appends at once (in
    SQLite, shared group commits): the same `steps` rows, in start order."""

    async def body(s: Stores) -> list[list[dict[str, Any]]]:
        store = s.open()
        runs = [f"r{i}" for i in range(8)]
        for r in runs:
            await new_run(store, r)
        await store.append("r0", _journal("r0"))
        for e in _journal("r1"):
            await store.append("r1", [e])

        async def in_pairs(r: str) -> None:
            events = _journal(r)
            for i in range(0, len(events), 2):
                await store.append(r, events[i : i + 2])

        await asyncio.gather(*(in_pairs(r) for r in runs[2:]))
        assert await store.steps("nope") == []
        return [await store.steps(r) for r in runs]

    views = stores.run(body)
    expected = [dict(zip(_STEP_KEYS, row, strict=True)) for row in _STEPS]
    for view in views:
        assert view == expected


def test_idempotency_keys_are_claimed_once_per_saga(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        assert await store.claim_key("checkout", "k1", "r1", "sha256:a") == ("r1", "sha256:a")
        assert await store.claim_key("checkout", "k1", "r2", "sha256:b") == ("r1", "sha256:a")
        assert await store.claim_key("refund", "k1", "r3", "sha256:a") == ("r3", "sha256:a")
        await new_run(store, "r1", saga="checkout")
        assert (await store.get_run("r1")).meta["idempotency_key"] == "k1"
        assert "idempotency_key" not in (await new_run(store, "r9")).meta

    stores.run(body)


_SAGA = """
saga: keyed
version: 1
input:
  type: object
  properties: {n: {type: integer}}
steps:
  - id: a
    action: {mock: {result: {ok: true}}}
output:
  n: "{{ input.n }}"
"""


def test_the_same_key_gives_the_same_run_and_another_input_a_conflict(stores: Stores) -> None:
    """`resume.start` with a run-level key: a repeat returns the first run's report (nothing
    runs again), another input is IdempotencyConflict, and another saga's key is its own."""
    plan = compile_text(_SAGA).plan
    other = compile_text(_SAGA.replace("saga: keyed", "saga: other")).plan
    assert plan is not None and other is not None

    async def body(s: Stores) -> None:
        store = s.open()
        first = await resume.start(plan, {"n": 1}, store=store, idempotency_key="K")
        again = await resume.start(plan, {"n": 1}, store=store, idempotency_key="K")
        assert (first.status, again.run_id, again.output) == ("succeeded", first.run_id, {"n": 1})
        assert len(await store.list_runs(saga="keyed")) == 1
        with pytest.raises(resume.IdempotencyConflict):
            await resume.start(plan, {"n": 2}, store=store, idempotency_key="K")
        elsewhere = await resume.start(other, {"n": 2}, store=store, idempotency_key="K")
        assert elsewhere.run_id != first.run_id and elsewhere.output == {"n": 2}
        assert (await store.get_run(first.run_id)).meta["idempotency_key"] == "K"

    stores.run(body)


def test_everything_written_is_read_back_after_reopening(stores: Stores) -> None:
    """Close the store and open it again (memory: the same store, as it lives in the
    process): runs, journals, steps, keys, cancel requests, approvals, groups and audit."""

    async def write(s: Stores) -> Any:
        store = s.open()
        await new_run(store, "r1")
        await new_run(store, "r2", saga="other")
        await store.append("r1", _journal("r1"))
        await store.update_run("r1", "waiting_approval", {"status": "waiting_approval"})
        await store.claim_key("s", "key", "r1", "sha256:i")
        await store.request_cancel("r2", "alice", "why not")
        await store.add_group_members("fin", ["bob", "ann"])
        return (
            await store.get_run("r1"),
            await store.load_events("r1"),
            await store.steps("r1"),
            await store.approvals(),
            await store.audit_log(),
            await store.cancel_request("r2"),
        )

    before = stores.run(write)

    async def read(s: Stores) -> Any:
        store = s.open()
        assert await store.claim_key("s", "key", "r3", "sha256:j") == ("r1", "sha256:i")
        assert await store.group_members() == {"fin": ["ann", "bob"]}
        assert [r.run_id for r in await store.list_runs()] == ["r2", "r1"]
        return (
            await store.get_run("r1"),
            await store.load_events("r1"),
            await store.steps("r1"),
            await store.approvals(),
            await store.audit_log(),
            await store.cancel_request("r2"),
        )

    after = stores.run(read)
    assert before[1:] == after[1:]
    record = after[0]
    assert (record.status, record.report, record.input) == (
        "waiting_approval",
        {"status": "waiting_approval"},
        {"amount": 1},
    )
    assert before[3][0]["gate"] == "w" and before[5]["by"] == "alice"
