"""The SQLite journal store beyond the contract (that is `tests/store/`, for every store):
its connections, group commit (correct under concurrency, and after a crash), migrations."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sagac.compiler.pipeline import compile_text
from sagac.runtime import resume as durable
from sagac.runtime.api import arun
from sagac.runtime.clock import new_run_id
from sagac.runtime.store import MemoryStore, open_store
from sagac.runtime.store.base import AuditEntry, RunRecord
from sagac.runtime.store.migrations import PARKED_FROM, SCHEMA_VERSION, migrate
from sagac.runtime.store.sqlite import SqliteStore

from sagac.errors import RunNotFound, StoreError, UsageError


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def ev(run_id: str, seq: int, type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "run_id": run_id, "seq": seq, "at": "2026-01-01T00:00:00.000Z", **fields}


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory"), MemoryStore)
    s = open_store(f"sqlite:///{tmp_path}/sub/j.db")
    assert isinstance(s, SqliteStore) and (tmp_path / "sub" / "j.db").is_file()
    for bad in ("sqlite://", "mysql://x", "sqlite:///"):
        with pytest.raises(UsageError):
            open_store(bad)
    from sagac.runtime.store.postgres import PostgresStore

    for url in ("postgres://x", "postgresql://u@127.0.0.1:1/db"):
        assert isinstance(open_store(url), PostgresStore)  # connects on first use only


def test_wal_and_full_sync_on_every_connection(db: Path) -> None:
    store = SqliteStore(db)

    async def pragmas() -> tuple[Any, Any]:
        w = await store.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        r = await store.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        await store.close()
        return w, r

    assert run(pragmas()) == (2, "wal")  # 2 = FULL


def test_a_seq_used_twice_never_overwrites_the_journal(db: Path) -> None:
    async def go() -> None:
        store = SqliteStore(db)
        try:
            await store.create_run(RunRecord("r1", "s", 1, "sha256:x", None))
            await store.append("r1", [ev("r1", 1, "saga_started"), ev("r1", 2, "step_started")])
            with pytest.raises(StoreError):
                await store.append("r1", [ev("r1", 2, "step_completed", step="a")])
            assert [e["type"] for e in await store.load_events("r1")] == [
                "saga_started",
                "step_started",
            ]
        finally:
            await store.close()

    run(go())


def test_group_commit_shares_transactions_and_keeps_every_event_in_order(db: Path) -> None:
    """200 concurrent writers, 25 events each: far fewer commits than appends, and every
    run's journal complete and in order."""

    async def go() -> None:
        store = SqliteStore(db)
        runs = [f"r{i}" for i in range(200)]
        for r in runs:
            await store.create_run(RunRecord(r, "s", 1, "h", None))
        before = store.commits

        async def writer(r: str) -> None:
            for seq in range(1, 26):
                await store.append(r, [ev(r, seq, "step_started", step=f"s{seq}", attempt=1)])

        await asyncio.gather(*(writer(r) for r in runs))
        commits = store.commits - before
        assert commits < 200 * 25 / 5, commits  # appends really were grouped
        for r in runs:
            assert [e["seq"] for e in await store.load_events(r)] == list(range(1, 26))
        await store.close()

    run(go())


def test_one_bad_operation_in_a_group_commit_fails_alone(db: Path) -> None:
    async def go() -> None:
        store = SqliteStore(db)
        await store.create_run(RunRecord("ok", "s", 1, "h", None))
        good = store.append("ok", [ev("ok", 1, "saga_started")])
        bad = store.append("missing", [ev("missing", 1, "saga_started")])
        results = await asyncio.gather(good, bad, return_exceptions=True)
        assert results[0] is None and isinstance(results[1], RunNotFound)
        assert len(await store.load_events("ok")) == 1
        # Plain appends of known runs commit as one INSERT; a seq used twice among them
        # fails that INSERT, and then only its own append.
        await store.create_run(RunRecord("ok2", "s", 1, "h", None))
        await store.append("ok2", [ev("ok2", 1, "saga_started")])
        results = await asyncio.gather(
            store.append("ok", [ev("ok", 2, "step_started", step="a")]),
            store.append("ok2", [ev("ok2", 1, "step_started", step="a")]),
            store.append("ok2", [ev("ok2", 2, "step_started", step="b")]),
            return_exceptions=True,
        )
        assert results[0] is None and isinstance(results[1], StoreError) and results[2] is None
        assert [e["type"] for e in await store.load_events("ok2")] == [
            "saga_started",
            "step_started",
        ]
        assert [e["seq"] for e in await store.load_events("ok")] == [1, 2]
        await store.close()

    run(go())


THREE_STEPS = """
saga: three
actions:
  m: {mock: {result: {ok: true}}}
steps:
  - {id: a, action: m, idempotency_key: "a-{{ run.id }}"}
  - {id: b, action: m}
  - {id: c, action: m}
"""


def test_a_run_commits_once_a_step_and_its_end_stores_the_report_and_ends_the_lease(
    db: Path,
) -> None:
    """A lone run's commits: its lease, its row, one a step (each step's start, with the
    previous one's completion; `saga_started` with the first), and one for its end: the last
    completion, the final event, the report and the end of its lease together. Nothing of it
    is left in `leases`."""
    plan = compile_text(THREE_STEPS, "three.yaml").plan
    assert plan is not None

    async def go() -> tuple[Any, int, list[dict[str, Any]]]:
        store = SqliteStore(db)
        before = store.commits
        report = await arun(plan, {}, store=store)
        commits = store.commits - before
        steps = await store.steps(report.run_id)
        await store.close()
        return report, commits, steps

    report, commits, steps = run(go())
    assert report.status == "succeeded"
    assert commits == 2 + 3 + 1
    with sqlite3.connect(db) as c:
        status, stored = c.execute(
            "SELECT status, report FROM runs WHERE run_id = ?", (report.run_id,)
        ).fetchone()
        assert c.execute("SELECT COUNT(*) FROM leases").fetchone() == (0,)
        last = c.execute(
            "SELECT type FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 2", (report.run_id,)
        ).fetchall()
    assert status == "succeeded" and json.loads(stored)["run_id"] == report.run_id
    assert last == [("saga_completed",), ("step_completed",)]
    assert [(s["step"], s["status"], s["result"]) for s in steps] == [
        (step, "completed", {"ok": True}) for step in "abc"
    ]
    assert steps[0]["idempotency_key"] == f"a-{report.run_id}"


def test_a_run_that_crashed_before_its_first_commit_starts_over_on_resume(db: Path) -> None:
    """`saga_started` waits for the first step's commit: a crash in between leaves the run's
    row and no event. Resuming it journals the start, then runs every step."""
    plan = compile_text(THREE_STEPS, "three.yaml").plan
    assert plan is not None

    async def go() -> tuple[Any, list[str]]:
        store = SqliteStore(db)
        await store.create_run(RunRecord("early", plan.saga, plan.version, plan.hash, {}))
        report = await durable.aresume(plan, "early", store)
        types = [e["type"] for e in await store.load_events("early")]
        await store.close()
        return report, types

    report, types = run(go())
    assert report.status == "succeeded"
    assert types[0] == "saga_started" and types.count("step_completed") == 3


# The schema as the first release wrote it, frozen here: a file like this must still open.
V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT);
INSERT INTO schema_version VALUES (1, '2026-01-01T00:00:00.000Z');
CREATE TABLE runs (run_id TEXT PRIMARY KEY, saga TEXT NOT NULL, version INTEGER NOT NULL,
  definition_hash TEXT NOT NULL, file TEXT, input TEXT, status TEXT NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, report TEXT, meta TEXT);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_saga ON runs (saga, created_at);
CREATE TABLE events (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, seq INTEGER NOT NULL,
  type TEXT NOT NULL, at TEXT NOT NULL, step TEXT, body TEXT NOT NULL);
CREATE UNIQUE INDEX events_by_run ON events (run_id, seq);
CREATE TABLE steps (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step TEXT NOT NULL,
  item_index INTEGER NOT NULL DEFAULT -1, status TEXT NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0, idempotency_key TEXT, result TEXT, error TEXT,
  started_seq INTEGER, ended_seq INTEGER);
CREATE UNIQUE INDEX steps_by_run ON steps (run_id, step, item_index);
INSERT INTO runs VALUES ('old', 's', 1, 'sha256:h', NULL, '{"n":1}', 'running',
  '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', NULL, '{}');
INSERT INTO events (run_id, seq, type, at, step, body) VALUES ('old', 1, 'saga_started',
  '2026-01-01T00:00:00.000Z', NULL,
  '{"type":"saga_started","run_id":"old","seq":1,"at":"2026-01-01T00:00:00.000Z"}');
INSERT INTO events (run_id, seq, type, at, step, body) VALUES ('old', 2, 'step_started',
  '2026-01-01T00:00:00.000Z', 'a', '{"type":"step_started","run_id":"old","seq":2,'
  || '"at":"2026-01-01T00:00:00.000Z","step":"a","attempt":1,"idempotency_key":"k"}');
INSERT INTO steps (run_id, step, status, attempt) VALUES ('old', 'a', 'started', 1);
"""


def test_an_older_schema_is_migrated_and_its_data_kept(db: Path) -> None:
    with sqlite3.connect(db) as c:
        c.executescript(V1_SCHEMA)
    store = SqliteStore(db)
    assert store.migrated_from == 1

    async def go() -> None:
        assert (await store.get_run("old")).input == {"n": 1}
        assert len(await store.load_events("old")) == 2
        (step,) = await store.steps("old")  # the view (migration 5) agrees with the old table
        assert (step["step"], step["status"], step["attempt"]) == ("a", "started", 1)
        assert (step["idempotency_key"], step["started_seq"]) == ("k", 2)
        assert step["compensation_attempt"] == 0  # a column added by migration 2
        await store.acquire_lease("old", "me@h:1/x", 5)  # tables added by migration 3
        assert await store.claim_key("s", "k", "old", "sha256:i") == ("old", "sha256:i")
        assert await store.request_cancel("old", "me", "because")
        await store.close()

    run(go())
    with sqlite3.connect(db) as c:
        versions = [v for (v,) in c.execute("SELECT version FROM schema_version ORDER BY version")]
        kind = c.execute("SELECT type FROM sqlite_master WHERE name = 'steps'").fetchone()
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert kind == ("view",)  # migration 5: step states read from the journal
    assert SqliteStore(db).migrated_from == SCHEMA_VERSION  # opening again changes nothing


def test_new_run_ids_are_hex_and_sort_by_creation() -> None:
    ids = [new_run_id() for _ in range(3)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == 3
    assert ids[0][:12] <= ids[1][:12] <= ids[2][:12]


def test_a_newer_schema_or_a_foreign_file_is_refused(db: Path, tmp_path: Path) -> None:
    SqliteStore(db).close_sync()
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO schema_version VALUES (99, 'future')")
    with pytest.raises(StoreError, match="newer than this sagac knows"):
        SqliteStore(db)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError):
        SqliteStore(junk)


def test_concurrent_sagas_after_a_crash_every_event_present_and_in_order(
    driver: Any, tmp_path: Path
) -> None:
    """30 sagas in one process share group commits; SIGKILL after 400 delivered events. Every
    event that was delivered (so acted upon) is in the file, every journal is gap-free, and
    every run resumes to success."""
    db, delivered = tmp_path / "j.db", tmp_path / "delivered.txt"
    saga = tmp_path / "many.yaml"
    steps = "\n".join(f"  - {{id: s{i}, action: m}}" for i in range(20))
    saga.write_text(
        f"saga: many\nactions:\n  m: {{mock: {{result: {{ok: true}}}}}}\nsteps:\n{steps}\n"
    )
    answer = driver.run(
        db=str(db),
        saga=str(saga),
        input={},
        run_id="m",
        kill_at=400,
        concurrent=30,
        out=str(delivered),
    )
    assert answer["signal"] == signal.SIGKILL
    seen: dict[str, set[int]] = {}
    for line in delivered.read_text().splitlines():
        r, seq = line.split()
        seen.setdefault(r, set()).add(int(seq))
    with sqlite3.connect(db) as c:
        stored: dict[str, list[int]] = {}
        for r, seq in c.execute("SELECT run_id, seq FROM events ORDER BY run_id, seq"):
            stored.setdefault(r, []).append(seq)
    assert sum(map(len, seen.values())) == 400
    for r, seqs in stored.items():
        assert seqs == list(range(1, len(seqs) + 1)), r
    for r, seqs in seen.items():
        assert seqs <= set(stored[r]), f"{r}: delivered but not durable"

    async def finish() -> list[Any]:
        store = SqliteStore(db)
        try:
            return await durable.resume_all(store)
        finally:
            await store.close()

    outcomes = run(finish())
    assert sorted(r for r, _ in outcomes) == sorted(stored)
    assert {o.status for _, o in outcomes} == {"succeeded"}
    with sqlite3.connect(db) as c:
        for (r,) in c.execute("SELECT run_id FROM runs"):
            body = [
                json.loads(b)
                for (b,) in c.execute("SELECT body FROM events WHERE run_id = ? ORDER BY seq", (r,))
            ]
            assert [e["seq"] for e in body] == list(range(1, len(body) + 1))
            completed = [e["step"] for e in body if e["type"] == "step_completed"]
            assert completed == [f"s{i}" for i in range(20)], r  # each step exactly once


def test_the_cli_refuses_a_missing_journal(tmp_path: Path) -> None:
    from .durable_support import sagac

    out = sagac("runs", "--store", f"sqlite:///{tmp_path}/none.db")
    assert out.returncode == 64 and "there is no journal at" in out.stderr
    assert not (tmp_path / "none.db").exists()


def test_a_sqlite_without_json_arrows_is_refused_with_a_hint(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `steps` view needs SQLite 3.38: an older library is named, not a parse error."""
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(StoreError, match=r"needs SQLite 3\.38 or newer; this Python uses 3\.31\.1"):
        SqliteStore(db)


def test_keys_claimed_before_they_were_scoped_keep_their_runs(db: Path) -> None:
    """A journal of schema 5 (keys global): each claimed key moves to its run's saga; a claim
    whose run never started is adopted by the first saga to claim the key again."""
    c = sqlite3.connect(db, isolation_level=None)
    migrate(c, str(db), target=5)
    c.execute(
        "INSERT INTO runs (run_id, saga, version, definition_hash, input, status, created_at,"
        " updated_at) VALUES ('r1', 'checkout', 1, 'sha256:h', '{}', 'succeeded', 't', 't')"
    )
    c.execute("INSERT INTO idempotency_keys VALUES ('k1', 'r1', 'sha256:a', 't')")
    c.execute("INSERT INTO idempotency_keys VALUES ('k2', 'never-started', 'sha256:b', 't')")
    c.close()
    store = SqliteStore(db)
    assert store.migrated_from == 5

    async def go() -> None:
        try:
            assert await store.claim_key("checkout", "k1", "new", "sha256:a") == ("r1", "sha256:a")
            assert await store.claim_key("other", "k1", "new", "sha256:a") == ("new", "sha256:a")
            adopted = await store.claim_key("refund", "k2", "x", "sha256:b")
            assert adopted == ("never-started", "sha256:b")
            assert await store.claim_key("other", "k2", "y", "sha256:b") == ("y", "sha256:b")
            assert (await store.get_run("r1")).meta["idempotency_key"] == "k1"
        finally:
            await store.close()

    run(go())


def _v9_file(db: Path) -> None:
    """A journal of schema 9 (before parking): a run waiting at a gate whose deadline passed,
    and its stored definition."""
    c = sqlite3.connect(db, isolation_level=None)
    migrate(c, str(db), target=PARKED_FROM - 1)
    c.execute(
        "INSERT INTO runs (run_id, saga, version, definition_hash, input, status, created_at,"
        " updated_at, wake_at) VALUES ('gate', 's', 1, 'sha256:h', '{}', 'waiting_approval',"
        " 't', 't', 1.0)"
    )
    c.execute("INSERT INTO definitions VALUES ('sha256:h', 's', '{}', NULL, 't')")
    c.close()


def test_a_journal_before_parking_migrates_and_a_read_only_look_sees_nothing_parked(
    db: Path,
) -> None:
    _v9_file(db)

    async def look() -> None:
        store = SqliteStore(db, readonly=True)  # reads it as it is: no upgrade
        try:
            assert store.migrated_from == PARKED_FROM - 1
            record = await store.get_run("gate")
            assert (record.parent_run_id, record.parent_step) == (None, None)
            assert await store.parked("gate") == [] and await store.signals("gate") == []
            assert await store.callback("sha256:t") is None and await store.children("gate") == []
        finally:
            await store.close()

    async def upgrade() -> None:
        store = SqliteStore(db)
        try:
            assert store.migrated_from == PARKED_FROM - 1
            assert (await store.get_run("gate")).parent_run_id is None
            sleeping = RunRecord("nap", "s", 1, "sha256:h", {}, parent_run_id="gate")
            sleeping.parent_step = "call"
            await store.create_run(sleeping)
            await store.append(
                "nap",
                [
                    ev("nap", 1, "sleep_started", step="s", until="2000-01-01T00:00:00Z"),
                    ev("nap", 2, "saga_waiting", status="waiting"),
                ],
                report={"status": "waiting"},
            )
            # The claim index covers `waiting` now: both are due.
            assert sorted(await store.claim_runs("w@h:1/x", 60, 10)) == ["gate", "nap"]
            assert [r.run_id for r in await store.children("gate")] == ["nap"]
        finally:
            await store.close()

    run(look())
    run(upgrade())


def test_parked_rows_signals_outcomes_and_parents_outlive_the_store(db: Path) -> None:
    """Everything of issue 13's tables is in the file: a new store on it reads it all back."""
    token = "sha256:" + "0" * 64

    async def write() -> None:
        store = SqliteStore(db)
        try:
            await store.create_run(RunRecord("p", "s", 1, "sha256:h", {}))
            await store.create_run(RunRecord("c", "s", 1, "sha256:h", {}, parent_run_id="p"))
            await store.append(
                "c",
                [
                    ev("c", 1, "wait_started", step="w", signal="go", deadline=None),
                    ev(
                        "c",
                        2,
                        "callback_issued",
                        step="t",
                        attempt=1,
                        token_sha256=token,
                        deadline=None,
                    ),
                ],
            )
            entry = AuditEntry(action="signal", outcome="accepted", actor="bob")
            sent = await store.send_signal("c", "go", {"x": 1}, entry, limit=1)
            await store.append(
                "c",
                [ev("c", 3, "wait_ended", step="w", reason="signal", signal_id=sent["signal_id"])],
            )
            done = AuditEntry(action="callback", outcome="accepted", actor="api")
            await store.complete_callback(token, {"result": [1]}, done)
        finally:
            await store.close()

    async def read() -> list[Any]:
        store = SqliteStore(db)
        try:
            return [
                [(r["step"], r["state"], r["outcome"]) for r in await store.parked("c")],
                [
                    (s["data"], s["consumed_step"], s["consumed_seq"])
                    for s in await store.signals("c")
                ],
                (await store.get_run("c")).parent_run_id,
                [r.run_id for r in await store.children("p")],
                [a["action"] for a in await store.audit_log("c")],
            ]
        finally:
            await store.close()

    run(write())
    assert run(read()) == [
        [("w", "done", None), ("t", "pending", {"result": [1]})],
        [({"x": 1}, "w", 3)],
        "p",
        ["c"],
        ["signal", "callback"],
    ]


def test_a_journal_before_api_tokens_migrates_and_a_read_only_look_lists_none(db: Path) -> None:
    from sagac.runtime.store.base import ApiToken
    from sagac.runtime.store.migrations import API_TOKENS_FROM

    c = sqlite3.connect(db, isolation_level=None)
    migrate(c, str(db), target=API_TOKENS_FROM - 1)
    c.close()

    async def look() -> None:
        store = SqliteStore(db, readonly=True)
        try:
            assert store.migrated_from == API_TOKENS_FROM - 1
            assert await store.api_tokens() == [] and await store.api_token("sha256:x") is None
        finally:
            await store.close()

    async def upgrade() -> None:
        store = SqliteStore(db)
        try:
            assert store.migrated_from == API_TOKENS_FROM - 1
            await store.create_api_token(ApiToken("0123456789ab", "sha256:x", "alice"))
            assert (await store.api_token("sha256:x")) is not None
        finally:
            await store.close()

    run(look())
    run(upgrade())
    assert SqliteStore(db).migrated_from == SCHEMA_VERSION == API_TOKENS_FROM
