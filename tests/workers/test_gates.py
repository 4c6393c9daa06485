"""Approval gates of submitted runs: the token `submit` hands out decides each gate a worker
reaches, once; the clear token is kept nowhere; decided runs nothing moves are `stuck`; and
`approve`/`cancel` name who continues the run (a live worker, or `sagac resume`)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from durable.durable_support import gated_saga
from sagac.runtime.store.memory import MemoryStore
from throwaway_pg import PgServer

import sagac
from sagac.errors import BadToken, TokenUsed

from .workers_support import Worker, read_ledger, runs
from .workers_support import sagac as cli

TWO_GATES = """\
saga: twice
actions:
  ok: {mock: {result: {done: true}}}
steps:
  - approval: {id: first, approvers: [alice]}
  - approval: {id: second, approvers: [bob]}
  - id: after
    action: ok
output: {by: "{{ steps.second.result.by }}"}
"""


def test_the_submit_token_decides_each_gate_a_worker_reaches_once() -> None:
    async def go() -> None:
        store = MemoryStore()
        c = sagac.compile_text(TWO_GATES)
        assert c.plan is not None, c.diagnostics
        got = await sagac.asubmit(c.plan, {}, store=store)
        token, run_id = got.approval_token, got.run_id
        assert token and str(got) == run_id and token not in repr(got)

        async def drive() -> str:
            assert await sagac.arun_worker(store, lease_ttl=2.0, exit_when_idle=True) == 0
            return (await store.get_run(run_id)).status

        def decide(gate: str, by: str, token: str) -> Any:
            return sagac.adecide(store, run_id, gate, approved=True, by=by, token=token)

        assert await drive() == "waiting_approval"
        with pytest.raises(BadToken):
            await decide("first", "alice", token + "x")
        await decide("first", "alice", token)
        assert await drive() == "waiting_approval"  # at the second gate: the same token
        (row,) = await sagac.apending_approvals(store, run_id)
        assert row["gate"] == "second"
        assert row["token_sha256"] == (await store.get_run(run_id)).approval_token_sha256
        with pytest.raises(TokenUsed):  # each gate once
            await decide("first", "alice", token)
        await decide("second", "bob", token)
        assert await drive() == "succeeded"
        log = [(a["gate"], a["action"], a["outcome"]) for a in await store.audit_log(run_id)]
        assert log == [
            ("first", "approve", "refused"),
            ("first", "approve", "accepted"),
            ("first", "approve", "refused"),
            ("second", "approve", "accepted"),
        ]
        # A run started in the foreground still gets a fresh token per gate, handed to its
        # caller in the report.
        report = await sagac.arun(c.plan, {}, store=store)
        assert report.status == "waiting_approval" and set(report.approval_tokens) == {"first"}
        assert report.approval_tokens["first"] != token

    asyncio.run(go())


def _submit(store: str, saga: Path, order: str, ledger: Path) -> tuple[str, str]:
    """`sagac submit` (plain text): the run id alone on stdout, the token in a hint on stderr."""
    done = cli("submit", str(saga), "--input", json.dumps({"order_id": order}), "--store", store,
               ledger=ledger)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert re.fullmatch(r"\S+", run_id), done.stdout
    hint = re.search(rf"sagac approve {run_id} --gate GATE --as USER --token (\S+)", done.stderr)
    assert hint, done.stderr
    return run_id, hint.group(1)


def _approve(store: str, run_id: str, token: str, ledger: Path) -> Any:
    return cli("approve", run_id, "--gate", "sign_off", "--as", "alice", "--token", token,
               "--store", store, ledger=ledger)  # fmt: skip


def _stuck(store: str, ledger: Path) -> dict[str, str]:
    done = cli("runs", "--status", "stuck", "--lease-ttl", "100ms", "--store", store, "--json",
               ledger=ledger)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {r["run_id"]: r["why"] for r in json.loads(done.stdout)}


def test_a_gate_a_worker_reached_is_decided_with_the_submit_token(
    tmp_path: Path, ledger: Path
) -> None:
    db = tmp_path / "journal.db"
    store = f"sqlite:///{db}"
    saga = gated_saga(tmp_path, timeout="1h")
    approved, t_approved = _submit(store, saga, "o-1", ledger)
    done = cli("submit", str(saga), "--input", '{"order_id": "o-2"}', "--store", store, "--json",
               ledger=ledger)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    cancelled, t_cancelled = out["run_id"], out["approval_token"]
    assert out["existing"] is False and t_cancelled and t_cancelled not in done.stderr
    parker = Worker(store, tmp_path, ledger, "--lease-ttl", "2s", "--exit-when-idle")
    assert parker.wait() == 0, parker.log.read_text()
    assert {e["run_id"] for e in parker.events("parked")} == {approved, cancelled}
    assert _stuck(store, ledger) == {}  # waiting for a person: not stuck

    wrong = _approve(store, approved, t_cancelled, ledger)  # another run's token
    assert wrong.returncode == 77 and "not the one issued" in wrong.stderr, wrong.stderr
    ok = _approve(store, approved, t_approved, ledger)
    assert ok.returncode == 0, ok.stderr
    assert f"continue the run with: sagac resume {approved}" in ok.stdout  # no live worker
    audit = json.loads(cli("audit", approved, "--store", store, "--json", ledger=ledger).stdout)
    assert [(a["action"], a["outcome"], a["code"]) for a in audit] == [
        ("approve", "refused", "BAD_TOKEN"),
        ("approve", "accepted", None),
    ]
    stop = cli("cancel", cancelled, "--store", store, ledger=ledger)
    assert f"`sagac resume {cancelled}` carries it out" in stop.stdout, stop.stdout
    # Runnable since the decision and the cancel, and no worker took them: stuck.
    time.sleep(0.3)
    stuck = _stuck(store, ledger)
    assert stuck.keys() == {approved, cancelled}
    assert re.match(r"waiting_approval, gate sign_off decided \d+s ago; no lease; 0 workers alive",
                    stuck[approved]), stuck  # fmt: skip
    assert stuck[cancelled].startswith("waiting_approval, cancel requested "), stuck

    w = Worker(store, tmp_path, ledger, "--lease-ttl", "2s", "--poll", "30s")
    try:
        w.wait_for("finished", approved)
        w.wait_for("finished", cancelled)
        later, t_later = _submit(store, saga, "o-3", ledger)
        w.wait_for("parked", later)
        ok = _approve(store, later, t_later, ledger)
        assert ok.returncode == 0, ok.stderr
        assert "a live worker continues the run" in ok.stdout and "resume" not in ok.stdout
        w.wait_for("finished", later)
        dropped, _ = _submit(store, saga, "o-4", ledger)
        w.wait_for("parked", dropped)
        stop = cli("cancel", dropped, "--store", store, ledger=ledger)
        assert "a live worker carries it out" in stop.stdout, stop.stdout
        w.wait_for("finished", dropped)
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait() == 0, w.log.read_text()
    status = {r["run_id"]: r["status"] for r in runs(store, ledger)}
    assert status == {
        approved: "succeeded",
        cancelled: "compensated",
        later: "succeeded",
        dropped: "compensated",
    }
    assert [e["action"] for e in read_ledger(ledger)].count("ship") == 2
    # The clear tokens are nowhere: not in the store's files, not in the workers' logs.
    kept = b"".join(p.read_bytes() for p in tmp_path.glob("journal.db*"))
    logs = parker.log.read_text() + w.log.read_text()
    for token in (t_approved, t_cancelled, t_later):
        assert token.encode() not in kept and token not in logs


def test_a_repeated_submit_gets_no_token(tmp_path: Path, ledger: Path) -> None:
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    saga = gated_saga(tmp_path)
    args = ("submit", str(saga), "--input", '{"order_id": "o-1"}', "--store", store,
            "--idempotency-key", "k-1")  # fmt: skip
    first = json.loads(cli(*args, "--json", ledger=ledger).stdout)
    again = cli(*args, "--json", ledger=ledger)
    assert json.loads(again.stdout) == {
        "run_id": first["run_id"],
        "existing": True,
        "approval_token": None,
    }
    text = cli(*args, ledger=ledger)
    assert text.stdout.strip() == first["run_id"]
    assert "shown to that submit only" in text.stderr and "--token" not in text.stderr


def test_a_postgres_worker_continues_a_gate_decided_with_the_submit_token(
    pg_server: PgServer, tmp_path: Path, ledger: Path
) -> None:
    import psycopg

    store = pg_server.database()
    saga = gated_saga(tmp_path, timeout="1h")
    w = Worker(store, tmp_path, ledger, "--lease-ttl", "2s", "--poll", "30s")
    try:
        run_id, token = _submit(store, saga, "o-1", ledger)
        w.wait_for("parked", run_id)
        assert _approve(store, run_id, token + "x", ledger).returncode == 77
        ok = _approve(store, run_id, token, ledger)
        assert ok.returncode == 0 and "a live worker continues the run" in ok.stdout, ok.stderr
        w.wait_for("finished", run_id)
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait() == 0, w.log.read_text()
    assert [r["status"] for r in runs(store, ledger)] == ["succeeded"]
    assert token not in w.log.read_text()
    with psycopg.connect(store) as c:  # every text of every table
        tables = [r[0] for r in c.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]  # fmt: skip
        for table in tables:
            rows = c.execute(f"SELECT CAST(t.* AS text) FROM {table} t").fetchall()
            assert not any(token in r[0] for r in rows), table


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.jsonl"
