"""The SQLite store's side of workers beyond the contract (`tests/store/test_claims.py`): the
migration that adds definitions, wake times and the worker registry to an existing file, and
the index a claim reads."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sagac.runtime.clock import parse_rfc3339
from sagac.runtime.store.base import Definition, RunRecord
from sagac.runtime.store.migrations import SCHEMA_VERSION, migrate
from sagac.runtime.store.sqlite import CLAIM_SQL, SqliteStore
from sagac.runtime.store.sqlite_writer import connect

CREATED = "2026-01-01T00:00:00.000Z"
DEADLINE = 1_800_000_000.0


def _v7_file(db: Path) -> None:
    """A journal as the previous sagac wrote it: a running run, one waiting at a gate with a
    deadline, one waiting with a cancel requested, one decided since it parked (its other
    gate has the same deadline), a finished one."""
    c = connect(str(db))
    try:
        migrate(c, str(db), target=7)
        for run_id, status, cancel in [
            ("running", "running", None),
            ("gate", "waiting_approval", None),
            ("cancelled", "waiting_approval", CREATED),
            ("decided", "waiting_approval", None),
            ("done", "succeeded", None),
        ]:
            c.execute(
                "INSERT INTO runs (run_id, saga, version, definition_hash, input, status,"
                " created_at, updated_at, cancel_requested_at) VALUES (?, 's', 1, 'sha256:old',"
                " '{}', ?, ?, ?, ?)",
                (run_id, status, CREATED, CREATED, cancel),
            )
        for run_id in ("gate", "cancelled", "decided"):
            c.execute(
                "INSERT INTO approvals (run_id, gate, approvers, deadline_epoch, definition_hash,"
                " status, requested_at, requested_seq) VALUES (?, 'g', '[]', ?, 'sha256:old',"
                " 'pending', ?, 1)",
                (run_id, DEADLINE, CREATED),
            )
        for seq, type_ in [(1, "saga_waiting"), (2, "approval_decided"), (3, "saga_resumed")]:
            c.execute(  # a parked run resumed, parked again, then decided
                "INSERT INTO events (run_id, seq, type, at, body) VALUES ('decided', ?, ?, ?,"
                " '{}')",
                (seq, type_, CREATED),
            )
        c.execute(
            "INSERT INTO events (run_id, seq, type, at, body) VALUES ('decided', 4,"
            " 'saga_waiting', ?, '{}'), ('decided', 5, 'approval_decided', ?, '{}'),"
            " ('gate', 1, 'saga_waiting', ?, '{}')",
            (CREATED, CREATED, CREATED),
        )
    finally:
        c.close()


def test_a_file_of_the_previous_schema_migrates_and_keeps_its_runs(db: Path) -> None:
    _v7_file(db)
    before = time.time()
    store = SqliteStore(db)
    assert store.migrated_from == 7

    async def go() -> None:
        assert {r.approval_token_sha256 for r in await store.list_runs()} == {None}
        assert [r.run_id for r in await store.list_runs()] == [
            "done",
            "decided",
            "cancelled",
            "gate",
            "running",
        ]
        wake = dict(
            await store.read(lambda c: c.execute("SELECT run_id, wake_at FROM runs").fetchall())
        )
        assert wake["running"] == parse_rfc3339(CREATED)  # waiting since it was created
        assert wake["gate"] == DEADLINE
        assert before - 1 <= wake["cancelled"] <= time.time()  # the cancel: now
        assert before - 1 <= wake["decided"] <= time.time()  # the decision: now
        assert wake["done"] is None
        # No definition was stored with them: no worker takes them, until one is saved.
        assert await store.claim_runs("w@h:1/x", 60, 10) == []
        assert await store.next_wake() is None
        old = Definition("sha256:old", "s", "{}")
        await store.create_run(RunRecord("new", "s", 1, "sha256:old", {}, "succeeded"), old)
        assert await store.next_wake() == DEADLINE  # the others are runnable now
        claimed = await store.claim_runs("w@h:1/x", 60, 10)
        assert claimed[0] == "running" and sorted(claimed[1:]) == ["cancelled", "decided"]
        await store.close()

    asyncio.run(go())
    assert SqliteStore(db).migrated_from == SCHEMA_VERSION  # opening again changes nothing


def test_a_read_only_look_at_the_previous_schema_sees_no_workers(db: Path) -> None:
    _v7_file(db)

    async def go() -> None:
        store = SqliteStore(db, readonly=True)  # reads it as it is: no upgrade
        assert store.migrated_from == 7
        assert await store.workers(60) == []
        assert await store.definition("sha256:old") is None
        assert await store.next_wake() is None
        runs = await store.list_runs()  # the columns it lacks read as not set
        assert len(runs) == 5 and {r.approval_token_sha256 for r in runs} == {None}
        assert not any("wake_at" in r.meta for r in runs)
        assert (await store.get_run("gate")).approval_token_sha256 is None
        await store.close()

    asyncio.run(go())


def test_a_claim_reads_the_unfinished_runs_in_order_from_their_index(db: Path) -> None:
    """In claim order, and only up to a horizon: not the runs parked until a later deadline."""
    store = SqliteStore(db)

    async def plan() -> str:
        rows = await store.read(
            lambda c: c.execute("EXPLAIN QUERY PLAN " + CLAIM_SQL, (1, 1, 1, 1)).fetchall()
        )
        await store.close()
        return " | ".join(str(r[-1]) for r in rows)

    text = asyncio.run(plan())
    assert "USING INDEX runs_to_claim (" in text and "wake_at<?)" in text, text  # bounded
    assert "TEMP B-TREE" not in text, text  # no sort: the index gives the order


@pytest.mark.parametrize("readonly", [False, True])
def test_wait_for_work_sees_another_store_on_the_file_commit(db: Path, readonly: bool) -> None:
    SqliteStore(db).close_sync()

    async def go() -> None:
        waiter, writer = SqliteStore(db, readonly=readonly), SqliteStore(db)
        assert await waiter.wait_for_work(0.1) is False
        waiting = asyncio.ensure_future(waiter.wait_for_work(30))
        await asyncio.sleep(0.1)
        await writer.create_run(RunRecord("q", "s", 1, "sha256:d", {}, "queued"))
        assert await asyncio.wait_for(waiting, 10) is True
        for store in (waiter, writer):
            await store.close()

    asyncio.run(go())


def test_every_wait_that_began_before_a_commit_wakes(db: Path) -> None:
    """Several tasks waiting on one store all wake on one commit of another (the first to see
    it does not hide it from the others)."""

    async def go() -> None:
        waiter, writer = SqliteStore(db), SqliteStore(db)
        await waiter.wait_for_work(0)
        waits = [asyncio.ensure_future(waiter.wait_for_work(30)) for _ in range(3)]
        await asyncio.sleep(0.1)
        await writer.create_run(RunRecord("q", "s", 1, "sha256:d", {}, "queued"))
        assert await asyncio.wait_for(asyncio.gather(*waits), 10) == [True, True, True]
        for store in (waiter, writer):
            await store.close()

    asyncio.run(go())


def test_a_run_resumed_by_its_journal_stays_claimable(db: Path) -> None:
    """`saga_resumed` makes a parked run `running` (SQLite's appends set the status from the
    journal): its wake time becomes now, whatever it was, so a worker takes it should its
    driver die."""

    async def go() -> None:
        store = SqliteStore(db)
        definition = Definition("sha256:d", "s", "{}")
        await store.create_run(RunRecord("r", "s", 1, "sha256:d", {}), definition)
        waiting = {"type": "saga_waiting", "run_id": "r", "seq": 1, "at": CREATED}
        await store.append(
            "r", [waiting | {"status": "waiting_approval"}], {"status": "waiting_approval"}
        )
        assert await store.claim_runs("w@h:1/x", 60, 10) == []  # no gate, no deadline
        resumed = {"type": "saga_resumed", "run_id": "r", "seq": 2, "at": CREATED}
        await store.append("r", [resumed])
        assert (await store.get_run("r")).status == "running"
        assert await store.claim_runs("w@h:1/x", 60, 10) == ["r"]
        await store.close()

    asyncio.run(go())
