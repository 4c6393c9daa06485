"""The PostgreSQL store beyond the contract suite (`tests/store/` runs that on it): the real
`sagac` in a subprocess running a saga into PostgreSQL and reading it back, what a server
that is down or a database of a newer sagac says, and the schema's migrations. Every test
runs on the session's throw-away server (`pg_server`, `tests/throwaway_pg.py`)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from sagac.runtime.store.postgres import PostgresStore
from sagac.runtime.store.postgres_migrations import SCHEMA_VERSION
from throwaway_pg import PgServer

from sagac.errors import StoreError

from .durable_support import gated_saga, read_ledger, sagac

TINY = "saga: tiny\nactions:\n  m: {mock: {result: {ok: true}}}\nsteps:\n  - {id: a, action: m}\n"


def test_a_saga_runs_into_postgres_and_the_cli_reads_it_back(
    pg_server: PgServer, tmp_path: Path
) -> None:
    url = pg_server.database()
    saga = tmp_path / "tiny.yaml"
    saga.write_text(TINY)
    ran = sagac("run", str(saga), "--store", url, "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    run_id = report["run_id"]
    assert report["status"] == "succeeded"
    shown = sagac("show", run_id, "--store", url, "--json")
    assert shown.returncode == 0, shown.stderr
    assert run_id in shown.stdout and "succeeded" in shown.stdout
    runs = sagac("runs", "--store", url, "--json")
    assert runs.returncode == 0, runs.stderr
    assert [r["run_id"] for r in json.loads(runs.stdout)] == [run_id]
    events = sagac("events", run_id, "--store", url)
    assert events.returncode == 0, events.stderr
    assert "saga_started" in events.stdout and "saga_completed" in events.stdout


def test_a_gate_is_approved_and_the_run_resumed_through_postgres(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """run (waits at its gate) -> approve --resume -> show and audit, each its own process."""
    url = pg_server.database()
    ledger = tmp_path / "l.jsonl"
    env = {"SAGAC_TEST_LEDGER": str(ledger)}
    saga = gated_saga(tmp_path)
    ran = sagac("run", str(saga), "--input", '{"order_id": "o1"}', "--store", url, env=env)
    assert ran.returncode == 3, ran.stderr
    found = re.search(r"sagac approve (\w+) --gate (\w+) --as USER --token (\S+)", ran.stderr)
    assert found is not None, ran.stderr
    run_id, gate, token = found.groups()
    decided = sagac(
        "approve",
        run_id,
        "--gate",
        gate,
        "--as",
        "alice",
        "--token",
        token,
        "--resume",
        "--store",
        url,
        env=env,
    )
    assert decided.returncode == 0, decided.stderr
    shown = sagac("show", run_id, "--store", url)
    assert shown.returncode == 0 and "succeeded" in shown.stdout, shown.stderr
    audit = sagac("audit", "--store", url)
    assert "alice" in audit.stdout and "approve accepted" in audit.stdout, audit.stdout
    again = sagac(
        "approve", run_id, "--gate", gate, "--as", "alice", "--token", token, "--store", url
    )
    assert again.returncode != 0, again.stdout
    assert read_ledger(ledger)


def test_a_server_that_is_down_is_one_clear_line_without_the_password() -> None:
    r = sagac("runs", "--store", "postgresql://u:secret@127.0.0.1:1/x")
    assert r.returncode == 70, r.stderr
    assert "PostgreSQL store postgresql://u:***@127.0.0.1:1/x" in r.stderr, r.stderr
    assert "secret" not in r.stderr and "Traceback" not in r.stderr


def test_inspecting_a_database_without_a_journal_creates_nothing(pg_server: PgServer) -> None:
    url = pg_server.database()
    r = sagac("runs", "--store", url)
    assert r.returncode == 70 and "is not a sagac journal" in r.stderr, r.stderr

    async def version() -> int:
        import psycopg

        async with await psycopg.AsyncConnection.connect(url) as c:
            cur = await c.execute("SELECT to_regclass('sagac_schema_version') IS NOT NULL")
            row = await cur.fetchone()
            return int(bool(row and row[0]))

    assert asyncio.run(version()) == 0


def test_migrations_run_once_and_a_newer_database_is_refused(pg_server: PgServer) -> None:
    url = pg_server.database()

    async def body() -> None:
        first, second = PostgresStore(url), PostgresStore(url)
        try:
            await asyncio.gather(first.list_runs(), second.list_runs())
            assert sorted([first.migrated_from, second.migrated_from]) == [0, SCHEMA_VERSION]
        finally:
            await first.close()
            await second.close()
        import psycopg

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            await c.execute(
                "INSERT INTO sagac_schema_version VALUES (%s, 'later')", (SCHEMA_VERSION + 1,)
            )
        for readonly in (False, True):
            newer = PostgresStore(url, readonly=readonly)
            with pytest.raises(StoreError, match="newer than this sagac knows"):
                await newer.list_runs()
            await newer.close()

    asyncio.run(body())


def test_the_journal_reads_back_as_sqlite_reads_it_and_a_seq_is_written_once(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """The same appends give the same `load_events` (key order, text, numbers) in both
    stores; appending an event at a seq the run already has is a StoreError and writes
    nothing of its append."""
    from sagac.runtime.store.base import RunRecord
    from sagac.runtime.store.sqlite import SqliteStore

    journal = [
        {"type": "saga_started", "run_id": "r", "seq": 1, "at": "t", "input": {"z": 1, "a": "é"}},
        {
            "type": "step_completed",
            "run_id": "r",
            "seq": 2,
            "at": "t",
            "step": "a",
            "result": {"n": 2.5, "big": 2**70, "list": [None, True, "x\u0000y"]},
        },
    ]

    async def read(store: PostgresStore | SqliteStore) -> list[dict[str, object]]:
        try:
            await store.create_run(RunRecord("r", "s", 1, "sha256:d", {"k": [1]}))
            await store.append("r", journal)
            with pytest.raises(StoreError):
                await store.append("r", [{**journal[1], "seq": 3}, {**journal[1], "seq": 2}])
            return await store.load_events("r")
        finally:
            await store.close()

    got = asyncio.run(read(PostgresStore(pg_server.database())))
    expected = asyncio.run(read(SqliteStore(tmp_path / "j.db")))
    assert got == expected and [list(e) for e in got] == [list(e) for e in expected]
    assert [e["seq"] for e in got] == [1, 2]
