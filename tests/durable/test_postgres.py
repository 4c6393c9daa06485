"""The PostgreSQL store beyond the contract suite (`tests/store/` runs that on it): the real
`sagac` in a subprocess running a saga into PostgreSQL and reading it back, what a server
that is down or a database of a newer sagac says, the schema's migrations and `sagac store
migrate`, `SAGAC_STORE`, wake-ups by NOTIFY, concurrent claims, and a server restarted under
an open store. Every test runs on the session's throw-away server (`pg_server`,
`tests/throwaway_pg.py`), but the restart, which takes down a server of its own."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from sagac.runtime.store.base import Definition, RunRecord
from sagac.runtime.store.postgres import PostgresStore
from sagac.runtime.store.postgres_migrations import SCHEMA_VERSION
from throwaway_pg import PgServer

from sagac.errors import StoreError

from .durable_support import gated_saga, read_ledger, sagac


def ev(run_id: str, seq: int, type_: str, **fields: object) -> dict[str, object]:
    return {"type": type_, "run_id": run_id, "seq": seq, "at": "2026-01-01T00:00:00Z", **fields}


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


def test_reject_cancel_report_and_diagram_work_against_postgres(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """The rest of the CLI on a PostgreSQL store, each command its own process: a gate
    rejected (the run compensates), another run cancelled while it waits, then the first
    run's HTML report and its diagram with the run's state drawn on it."""
    url = pg_server.database()
    env = {"SAGAC_TEST_LEDGER": str(tmp_path / "l.jsonl")}
    saga = gated_saga(tmp_path)
    waiting = []
    for order in ("o1", "o2"):
        ran = sagac("run", str(saga), "--input", f'{{"order_id": "{order}"}}', "--store", url,
                    env=env)  # fmt: skip
        assert ran.returncode == 3, ran.stderr
        found = re.search(r"sagac approve (\w+) --gate (\w+) --as USER --token (\S+)", ran.stderr)
        assert found is not None, ran.stderr
        waiting.append(found.groups())
    (rejected, gate, token), (cancelled, _, _) = waiting
    no = sagac("reject", rejected, "--gate", gate, "--as", "alice", "--token", token,
               "--reason", "no", "--resume", "--store", url, env=env)  # fmt: skip
    assert no.returncode == 1, no.stderr  # rejected: compensated
    stop = sagac("cancel", cancelled, "--store", url, "--reason", "not needed")
    assert stop.returncode == 0, stop.stderr
    resumed = sagac("resume", cancelled, "--store", url, env=env)
    assert resumed.returncode == 1, resumed.stderr
    shown = {
        r["run_id"]: r["status"] for r in json.loads(sagac("runs", "--store", url, "--json").stdout)
    }
    assert shown == {rejected: "compensated", cancelled: "compensated"}
    page = tmp_path / "report.html"
    report = sagac("report", rejected, "--store", url, "-o", str(page))
    assert report.returncode == 0, report.stderr
    html = page.read_text()
    assert rejected in html and "APPROVAL_REJECTED" in html
    drawn = sagac("diagram", "--run", rejected, "--store", url)
    assert drawn.returncode == 0, drawn.stderr
    assert "flowchart TD" in drawn.stdout, drawn.stdout
    assert "failed APPROVAL_REJECTED" in drawn.stdout and "compensated" in drawn.stdout


def test_a_server_that_is_down_is_one_clear_line_without_the_password() -> None:
    r = sagac("runs", "--store", "postgresql://u:secret@127.0.0.1:1/x")
    assert r.returncode == 69, r.stderr
    assert "error[STORE_UNAVAILABLE]" in r.stderr, r.stderr
    assert "PostgreSQL store postgresql://u:***@127.0.0.1:1/x" in r.stderr, r.stderr
    assert "secret" not in r.stderr and "Traceback" not in r.stderr
    migrate = sagac("store", "migrate", "--store", "postgresql://u:secret@127.0.0.1:1/x")
    assert migrate.returncode == 69 and "secret" not in migrate.stderr, migrate.stderr


def test_a_database_that_does_not_exist_is_a_store_error_not_an_outage(
    pg_server: PgServer,
) -> None:
    r = sagac("runs", "--store", f"postgresql://postgres@127.0.0.1:{pg_server.port}/missing")
    assert r.returncode == 70, r.stderr
    assert 'database "missing" does not exist' in r.stderr and "Traceback" not in r.stderr


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


# -- sagac store migrate and SAGAC_STORE ----------------------------------------------------


def test_store_migrate_creates_upgrades_says_current_and_refuses_a_newer_database(
    pg_server: PgServer,
) -> None:
    url = pg_server.database()
    first = sagac("store", "migrate", "--store", url)
    assert first.returncode == 0, first.stderr
    assert f"from schema version 0 to {SCHEMA_VERSION}" in first.stdout, first.stdout
    again = sagac("store", "migrate", env={"SAGAC_STORE": url})
    assert again.returncode == 0, again.stderr
    assert f"already at schema version {SCHEMA_VERSION}" in again.stdout, again.stdout

    older = pg_server.database()  # a database a sagac of schema version 1 wrote a run into

    async def at_version_one() -> None:
        import psycopg
        from sagac.runtime.store.postgres_migrations import migrate

        async with await psycopg.AsyncConnection.connect(older, autocommit=True) as c:
            await migrate(c, older, target=1)
            await c.execute(
                "INSERT INTO runs (run_id, saga, version, definition_hash, input, status,"
                " created_at, updated_at, meta) VALUES ('r', 's', 1, 'h', '{}', 'running',"
                " '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', '{}')"
            )
            await c.execute(
                "INSERT INTO events VALUES ('r', 1, 'saga_started', 't', NULL, %s)",
                ('{"type":"saga_started","run_id":"r","seq":1,"at":"t"}',),
            )

    asyncio.run(at_version_one())
    upgraded = sagac("store", "migrate", "--store", older)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"from schema version 1 to {SCHEMA_VERSION}" in upgraded.stdout, upgraded.stdout
    events = sagac("events", "r", "--store", older)
    assert events.returncode == 0 and "saga_started" in events.stdout, events.stderr

    async def claimed_once_its_definition_is_stored() -> list[str]:
        store = PostgresStore(older)
        try:
            await store.create_run(*_queued("h"))  # saves the definition of hash "sha256:h"
            return await store.claim_runs("w", 60, 10)
        finally:
            await store.close()

    # the old run got the wake time it would have had (its creation): oldest first
    asyncio.run(_rehash(older))
    assert asyncio.run(claimed_once_its_definition_is_stored()) == ["r", "h"]

    async def newer() -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            await c.execute(
                "INSERT INTO sagac_schema_version VALUES (%s, 'later')", (SCHEMA_VERSION + 1,)
            )

    asyncio.run(newer())
    refused = sagac("store", "migrate", "--store", url)
    assert refused.returncode == 70, refused.stderr
    assert "newer than this sagac knows" in refused.stderr and "Traceback" not in refused.stderr


def test_a_database_before_parking_migrates_and_claims_waiting_runs(pg_server: PgServer) -> None:
    """Schema 3 to 4 (issue 13): runs already there keep everything and have no parent; the
    claim index covers `waiting` runs; a finished child wakes its parked parent by NOTIFY."""
    url = pg_server.database()

    async def at_version_three() -> None:
        import psycopg
        from sagac.runtime.store.postgres_migrations import migrate

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            await migrate(c, url, target=3)
            await c.execute(
                "INSERT INTO runs (run_id, saga, version, definition_hash, input, status,"
                " created_at, updated_at, meta, wake_at) VALUES ('gate', 's', 1, 'sha256:gate',"
                " '{}', 'waiting_approval', '2026-01-01T00:00:00.000Z',"
                " '2026-01-01T00:00:00.000Z', '{}', 1.0)"
            )
            await c.execute("INSERT INTO definitions VALUES ('sha256:gate', 's', '{}', NULL, 't')")

    async def upgraded() -> None:
        store, waiter = PostgresStore(url), PostgresStore(url)
        try:
            assert (await store.get_run("gate")).parent_run_id is None
            assert store.migrated_from == 3  # opened by that first use
            child, definition = _queued("nap")
            child.parent_run_id, child.parent_step = "gate", "call"
            await store.create_run(child, definition)
            await store.append(
                "nap",
                [
                    ev("nap", 1, "saga_started"),
                    ev("nap", 2, "sleep_started", step="s", until="2000-01-01T00:00:00Z"),
                    ev("nap", 3, "saga_waiting", status="waiting"),
                ],
                report={"status": "waiting"},
            )
            assert sorted(await store.claim_runs("w", 60, 10)) == ["gate", "nap"]
            assert [r.run_id for r in await store.children("gate")] == ["nap"]
            await waiter.wait_for_work(0)
            waiting = asyncio.ensure_future(waiter.wait_for_work(30))
            await asyncio.sleep(0.2)
            await store.append(
                "nap", [ev("nap", 4, "saga_completed")], report={"status": "succeeded"}
            )
            assert await asyncio.wait_for(waiting, 10) is True  # well before its timeout
        finally:
            await store.close()
            await waiter.close()

    asyncio.run(at_version_three())
    asyncio.run(upgraded())


def test_sagac_store_selects_postgres_for_run_and_runs_and_store_beats_it(
    pg_server: PgServer, tmp_path: Path
) -> None:
    url = pg_server.database()
    (tmp_path / "tiny.yaml").write_text(TINY)
    env = {"SAGAC_STORE": url}
    ran = sagac("run", "tiny.yaml", "--json", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    assert not (tmp_path / ".sagac").exists()  # nothing went to the default SQLite file
    runs = sagac("runs", "--json", env=env, cwd=tmp_path)
    assert runs.returncode == 0, runs.stderr
    assert [r["run_id"] for r in json.loads(runs.stdout)] == [run_id]
    other = sagac("runs", "--store", f"sqlite:///{tmp_path}/none.db", env=env, cwd=tmp_path)
    assert other.returncode == 64 and "there is no journal at" in other.stderr, other.stderr


# -- wake-ups, claims, connection loss ------------------------------------------------------


async def _rehash(url: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
        await c.execute("UPDATE runs SET definition_hash = 'sha256:h' WHERE run_id = 'r'")


def _queued(run_id: str) -> tuple[RunRecord, Definition]:
    definition = Definition(f"sha256:{run_id}", "s", '{"saga": "s"}')
    return RunRecord(run_id, "s", 1, definition.hash, {}, status="queued"), definition


def test_notify_wakes_a_waiting_worker_of_another_store_at_once(pg_server: PgServer) -> None:
    """Each kind of news (a queued run, a cancel request, a released lease; decisions in
    `test_a_decision_wakes_a_worker`) wakes `wait_for_work` on another store at once, long
    before its timeout, also after a wait was cancelled, and every wait of a store at once."""
    url = pg_server.database()

    async def body() -> None:
        waiter, writer = PostgresStore(url), PostgresStore(url)
        try:
            assert await waiter.wait_for_work(0.2) is False  # listening now; nothing came
            await writer.create_run(RunRecord("plain", "s", 1, "h", {}))  # not queued
            assert await waiter.wait_for_work(0.2) is False
            await writer.append("plain", [ev("plain", 1, "step_started", step="a")])
            await writer.acquire_lease("plain", "me", 60)
            news = [
                lambda: writer.create_run(*_queued("q")),
                lambda: writer.request_cancel("plain", "bob", None),
                lambda: writer.release_lease("plain", "me"),
            ]
            cancelled = asyncio.ensure_future(waiter.wait_for_work(10))  # as a worker's is
            await asyncio.sleep(0.05)  # when a slot frees: the next wait still hears news
            cancelled.cancel()
            for make in news:
                loop = asyncio.get_running_loop()
                started = loop.time()
                waiting = asyncio.ensure_future(waiter.wait_for_work(10))
                await asyncio.sleep(0.05)
                await make()
                assert await waiting is True
                assert loop.time() - started < 2  # woken at once: the timeout is 10 s
            both = [asyncio.ensure_future(waiter.wait_for_work(10)) for _ in range(2)]
            await asyncio.sleep(0.05)  # two waits of one store at once: both hear the news
            await writer.create_run(*_queued("q2"))
            assert await asyncio.wait_for(asyncio.gather(*both), 5) == [True, True]
            # The listening connection dropped (the server is up): the next wait reconnects and
            # says so at once, since news may have been missed meanwhile.
            import psycopg

            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query LIKE 'LISTEN%%' AND datname = current_database()"
                )
            assert await asyncio.wait_for(waiter.wait_for_work(10), 5) is True
            assert await waiter.wait_for_work(0.1) is False
        finally:
            await waiter.close()
            await writer.close()

    asyncio.run(body())


def test_a_decision_wakes_a_worker_and_makes_the_parked_run_claimable(
    pg_server: PgServer,
) -> None:
    from sagac.runtime.approvals import inject_decision

    url = pg_server.database()

    async def body() -> None:
        waiter, writer = PostgresStore(url), PostgresStore(url)
        try:
            assert await waiter.wait_for_work(0) is False  # listening from now on
            record, definition = _queued("w")
            await writer.create_run(record, definition)
            asked = ev("w", 1, "approval_requested", step="g", approvers=["bob"], key="k")
            parked = ev("w", 2, "saga_waiting", status="waiting_approval", waiting=["g"])
            await writer.append("w", [asked, parked])
            assert (await writer.get_run("w")).status == "waiting_approval"
            assert await waiter.wait_for_work(0) is True  # the queued run's creation
            assert await waiter.claim_runs("me", 60, 5) == []  # parked with no deadline
            waiting = asyncio.ensure_future(waiter.wait_for_work(10))
            await asyncio.sleep(0.05)
            await inject_decision(writer, "w", "g", by="bob")
            assert await asyncio.wait_for(waiting, 5) is True
            assert await waiter.claim_runs("me", 60, 5) == ["w"]
            # A claim listens before it looks: what is made after it wakes the first wait.
            fresh = PostgresStore(url)
            try:
                assert await fresh.claim_runs("you", 60, 5) == []
                await writer.create_run(*_queued("after"))
                assert await fresh.wait_for_work(5) is True
            finally:
                await fresh.close()
        finally:
            await waiter.close()
            await writer.close()

    asyncio.run(body())


def test_concurrent_claims_never_hand_out_a_run_twice(pg_server: PgServer) -> None:
    url = pg_server.database()

    async def body() -> None:
        stores = [PostgresStore(url) for _ in range(4)]
        try:
            for i in range(40):
                await stores[0].create_run(*_queued(f"r{i:02}"))
            await stores[0].create_run(RunRecord("no-def", "s", 1, "sha256:none", {}, "queued"))

            async def drain(store: PostgresStore, n: int) -> list[str]:
                got: list[str] = []
                while batch := await store.claim_runs(f"w{n}", 60, 3):
                    got += batch
                    await asyncio.sleep(0)
                return got

            claimed = await asyncio.gather(*(drain(s, n) for n, s in enumerate(stores)))
            every = [run_id for got in claimed for run_id in got]
            assert sorted(every) == [f"r{i:02}" for i in range(40)]  # each once, none without
            leases = [await stores[1].get_lease(r) for r in every]
            assert all(lease is not None for lease in leases)
        finally:
            for store in stores:
                await store.close()

    asyncio.run(body())


def test_a_restarted_server_loses_no_event_doubles_none_and_the_store_goes_on(
    tmp_path: Path,
) -> None:
    """An open store (appending, and waiting for work) while its server restarts: the
    operation during the outage is StoreUnavailable (exit 69), the same store object works
    once the server is back (the first operation too, when the restart happened while it was
    idle), the listener reconnects (and says so: news may have been missed), and the journal
    has every event once."""
    from sagac.runtime.api import arun

    from sagac.errors import StoreUnavailable

    server = PgServer()
    try:
        url = server.database()

        async def body() -> None:
            store, waiter = PostgresStore(url), PostgresStore(url)
            try:
                await store.create_run(RunRecord("r", "s", 1, "h", {}))
                await store.append("r", [ev("r", 1, "saga_started"), ev("r", 2, "step_started")])
                assert await waiter.wait_for_work(0.1) is False
                server.halt()
                with pytest.raises(StoreUnavailable) as down:
                    await store.append("r", [ev("r", 3, "step_completed")])
                assert down.value.exit_code == 69
                with pytest.raises(StoreUnavailable):
                    await store.get_run("r")
                with pytest.raises(StoreUnavailable):
                    await waiter.wait_for_work(0.5)
                server.start()
                await store.append("r", [ev("r", 3, "step_completed")])
                await store.append("r", [ev("r", 4, "saga_completed", status="succeeded")])
                assert [e["seq"] for e in await store.load_events("r")] == [1, 2, 3, 4]
                assert (await store.get_run("r")).status == "succeeded"
                assert await waiter.wait_for_work(5) is True  # reconnected
                assert await waiter.wait_for_work(0.1) is False  # and listening again
                server.halt()  # a restart while nobody uses the store: its pooled
                server.start()  # connections are dead, and none is handed out
                assert (await store.get_run("r")).status == "succeeded"
                assert await waiter.wait_for_work(5) is True
                saga = tmp_path / "tiny.yaml"
                saga.write_text(TINY)
                report = await arun(saga, {}, store=store)
                assert report.status == "succeeded"
                assert len(await store.load_events(report.run_id)) == len(
                    {e["seq"] for e in await store.load_events(report.run_id)}
                )
            finally:
                await store.close()
                await waiter.close()

        asyncio.run(body())
    finally:
        server.stop()


def test_a_run_an_outage_stopped_is_told_to_resume_once_the_server_is_back() -> None:
    from sagac.commands._store import explain_interruption
    from sagac.errors import StoreUnavailable

    url = "postgresql://u@127.0.0.1:1/x"
    told = explain_interruption(StoreUnavailable("PostgreSQL store is unavailable"), "r1", url)
    assert told.hint == (
        "run r1 stopped: its journal could not be written. Once it can be (the store's server"
        f" is back), continue the run with: sagac resume r1 --store {url}"
    )
