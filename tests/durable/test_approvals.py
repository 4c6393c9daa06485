"""Approval gates: the round trip through the CLI, every refusal (exit 77, audited), deadlines
on stored time across processes, and the Python API (`sagac.approve/reject/resume`)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from sagac.runtime import approvals
from sagac.runtime import resume as durable
from sagac.runtime.store.sqlite import SqliteStore

import sagac as api

from .durable_support import gated_saga, read_ledger, sagac

TOKEN = re.compile(r"--token (\S+)")


def start(db: Path, saga: Path, order: str, ledger: Path, monkeypatch: Any) -> Any:
    monkeypatch.setenv("SAGAC_TEST_LEDGER", str(ledger))

    async def go() -> Any:
        store = SqliteStore(db)
        try:
            return await durable.start(saga, {"order_id": order, "amount": 12}, store=store)
        finally:
            await store.close()

    return asyncio.run(go())


def audit(db: Path, run_id: str | None = None) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        store = SqliteStore(db)
        try:
            return await store.audit_log(run_id)
        finally:
            await store.close()

    return asyncio.run(go())


def test_round_trip_through_the_cli(tmp_path: Path) -> None:
    saga, db, ledger = gated_saga(tmp_path), tmp_path / "j.db", tmp_path / "l.jsonl"
    env = {"SAGAC_TEST_LEDGER": str(ledger)}
    store = f"sqlite:///{db}"
    ran = sagac(
        "run", str(saga), "--input", '{"order_id": "o1", "amount": 12}', "--store", store, env=env
    )
    assert ran.returncode == 3, ran.stderr
    token = TOKEN.search(ran.stderr).group(1)  # type: ignore[union-attr]
    run_id = re.search(r"run (\w+) waits for approval at gate 'sign_off'", ran.stderr).group(1)  # type: ignore[union-attr]
    assert f"sagac approve {run_id} --gate sign_off --as USER --token {token}" in ran.stderr

    wrong = sagac(
        "approve",
        run_id,
        "--gate",
        "sign_off",
        "--as",
        "alice",
        "--token",
        "guess",
        "--store",
        store,
    )
    assert wrong.returncode == 77 and "error[BAD_TOKEN]" in wrong.stderr

    ok = sagac(
        "approve",
        run_id,
        "--gate",
        "sign_off",
        "--as",
        "alice",
        "--token",
        token,
        "--comment",
        "fine",
        "--value",
        '{"priority": 2}',
        "--resume",
        "--json",
        "--store",
        store,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    shown, _, _ = ok.stderr.partition("approved: gate sign_off")  # with --json: on stderr
    assert "Ship order o1 for 12 EUR?" in shown and "input.order_id = 'o1'" in shown
    report = json.loads(ok.stdout)  # stdout is the report alone
    assert report["status"] == "succeeded"
    assert report["output"] == {"approved_by": "alice", "value": {"priority": 2}}
    assert [x["action"] for x in read_ledger(ledger)] == ["charge", "ship"]

    again = sagac(
        "approve", run_id, "--gate", "sign_off", "--as", "alice", "--token", token, "--store", store
    )
    assert again.returncode == 77 and "error[TOKEN_USED]" in again.stderr
    trail = [(a["actor"], a["action"], a["outcome"], a["code"]) for a in audit(db, run_id)]
    assert trail == [
        ("alice", "approve", "refused", "BAD_TOKEN"),
        ("alice", "approve", "accepted", None),
        ("alice", "approve", "refused", "TOKEN_USED"),
    ]
    # The clear token was printed once and is nowhere in the journal, nor in what it shows.
    for f in tmp_path.glob("j.db*"):
        assert token.encode() not in f.read_bytes()
    for cmd in (("events", run_id, "--json"), ("show", run_id, "--json"), ("audit", "--json")):
        out = sagac(*cmd, "--store", store)
        assert out.returncode == 0 and token not in out.stdout


def test_every_refusal_is_refused_and_audited(tmp_path: Path, monkeypatch: Any) -> None:
    saga, db, ledger = gated_saga(tmp_path), tmp_path / "j.db", tmp_path / "l.jsonl"
    first = start(db, saga, "o1", ledger, monkeypatch)
    other = start(db, saga, "o2", ledger, monkeypatch)
    assert first.status == other.status == "waiting_approval"
    token, other_token = first.approval_tokens["sign_off"], other.approval_tokens["sign_off"]

    async def add_members() -> None:
        store = SqliteStore(db)
        try:
            await store.add_group_members("finance", ["bob", "carol"])
            await store.add_group_members("ops", ["dave"])
        finally:
            await store.close()

    asyncio.run(add_members())

    def decide(by: str, tok: str, gate: str = "sign_off", **kw: Any) -> Any:
        async def go() -> Any:
            store = SqliteStore(db)
            try:
                return await approvals.decide(
                    store, first.run_id, gate, approved=True, by=by, token=tok, **kw
                )
            finally:
                await store.close()

        return asyncio.run(go())

    refusals = [
        (("mallory", token), "NOT_AN_APPROVER"),
        (("dave", token), "NOT_AN_APPROVER"),  # in a group, not in the listed one
        (("bob", "not-the-token"), "BAD_TOKEN"),
        (("bob", other_token), "BAD_TOKEN"),  # another run's token never applies here
        (("bob", token, "no_such_gate"), "GATE_NOT_PENDING"),
    ]
    for args, code in refusals:
        with pytest.raises(api.ApprovalRefused) as refused:
            decide(*args)
        assert refused.value.code == code and refused.value.exit_code == 77, args
    with pytest.raises(api.ApprovalRefused) as changed:
        decide("bob", token, definition_hash="sha256:something-else")
    assert changed.value.code == "DEFINITION_CHANGED"
    event = decide("bob", token)  # a member of group:finance, with the right token
    assert event["type"] == "approval_decided" and event["by"] == "bob"
    with pytest.raises(api.ApprovalRefused) as used:
        decide("alice", token)
    assert used.value.code == "TOKEN_USED"
    with pytest.raises(api.ApprovalRefused) as decided:
        decide("alice", "whatever")
    assert decided.value.code == "GATE_NOT_PENDING"
    codes = [(a["actor"], a["outcome"], a["code"]) for a in audit(db, first.run_id)]
    assert codes == [
        ("mallory", "refused", "NOT_AN_APPROVER"),
        ("dave", "refused", "NOT_AN_APPROVER"),
        ("bob", "refused", "BAD_TOKEN"),
        ("bob", "refused", "BAD_TOKEN"),
        ("bob", "refused", "GATE_NOT_PENDING"),
        ("bob", "refused", "DEFINITION_CHANGED"),
        ("bob", "accepted", None),
        ("alice", "refused", "TOKEN_USED"),
        ("alice", "refused", "GATE_NOT_PENDING"),
    ]
    report = api.resume(first.run_id, store=f"sqlite:///{db}")
    assert report.status == "succeeded" and report.output["approved_by"] == "bob"
    # The other run is untouched by all of this: still waiting, and its token still works.
    assert (
        api.reject(
            other.run_id,
            "sign_off",
            store=f"sqlite:///{db}",
            by="alice",
            token=other_token,
            reason="no stock",
            resume=True,
        ).status
        == "compensated"
    )


@pytest.mark.parametrize(
    ("on_timeout", "code"), [("reject", "APPROVAL_REJECTED"), ("fail", "APPROVAL_TIMEOUT")]
)
def test_a_deadline_is_kept_across_processes_by_stored_time(
    on_timeout: str, code: str, tmp_path: Path
) -> None:
    """Requested in one process; a decision in a new process 2 s later, after the 1 s deadline,
    is refused and audited; the next resume applies on_timeout and compensates."""
    saga, db, ledger = (
        gated_saga(tmp_path, "1s", on_timeout),
        tmp_path / "j.db",
        tmp_path / "l.jsonl",
    )
    env, store = {"SAGAC_TEST_LEDGER": str(ledger)}, f"sqlite:///{db}"
    ran = sagac("run", str(saga), "--input", '{"order_id": "o9"}', "--store", store, env=env)
    assert ran.returncode == 3
    token = TOKEN.search(ran.stderr).group(1)  # type: ignore[union-attr]
    run_id = re.search(r"run (\w+) waits", ran.stderr).group(1)  # type: ignore[union-attr]
    time.sleep(max(0.0, 2.0 - 0.5))  # the CLI's own start-up takes the rest of the 2 s
    late = sagac(
        "approve", run_id, "--gate", "sign_off", "--as", "alice", "--token", token, "--store", store
    )
    assert late.returncode == 77 and "error[APPROVAL_EXPIRED]" in late.stderr
    done = sagac("resume", run_id, "--json", "--store", store, env=env)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "compensated" and report["failure"]["code"] == code
    assert [x["action"] for x in read_ledger(ledger)] == ["charge", "refund"]
    actions = [(a["action"], a["outcome"], a["code"]) for a in audit(db, run_id)]
    assert actions == [("approve", "refused", "APPROVAL_EXPIRED"), ("timeout", "accepted", code)]


def test_the_test_helper_injects_a_decision_without_a_person(
    tmp_path: Path, monkeypatch: Any
) -> None:
    saga, db, ledger = gated_saga(tmp_path), tmp_path / "j.db", tmp_path / "l.jsonl"
    first = start(db, saga, "o3", ledger, monkeypatch)

    async def go() -> Any:
        store = SqliteStore(db)
        try:
            await approvals.inject_decision(store, first.run_id, "sign_off", by="ci", value=7)
            return await durable.resume(first.run_id, store=store)
        finally:
            await store.close()

    report = asyncio.run(go())
    assert report.output == {"approved_by": "ci", "value": 7}
    assert [(a["actor"], a["action"]) for a in audit(db, first.run_id)] == [("ci", "inject")]


def test_a_token_never_begins_with_a_dash_so_the_printed_command_works() -> None:
    """`--token -x...` reads as a missing value: one urlsafe token in 64 began with `-`, and the
    command `sagac run` printed then failed with a usage error."""
    tokens = [approvals.new_token() for _ in range(5_000)]
    assert not [t for t, _ in tokens if t.startswith("-")]
    assert len({t for t, _ in tokens}) == 5_000
    assert all(h == approvals.token_hash(t) for t, h in tokens[:10])


def test_json_report_of_a_waiting_run_carries_the_gate_and_its_token_once(tmp_path: Path) -> None:
    saga, db, ledger = gated_saga(tmp_path), tmp_path / "j.db", tmp_path / "l.jsonl"
    env, store = {"SAGAC_TEST_LEDGER": str(ledger)}, f"sqlite:///{db}"
    ran = sagac(
        "run", str(saga), "--input", '{"order_id": "o7", "amount": 30}', "--json",
        "--store", store, env=env,
    )  # fmt: skip
    assert ran.returncode == 3, ran.stderr
    report = json.loads(ran.stdout)
    (gate,) = report["waiting"]
    token = gate.pop("token")
    assert token and f"--token {token}" in ran.stderr  # the one the terminal shows
    deadline = gate.pop("deadline")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", deadline)
    assert gate == {
        "id": "sign_off",
        "key": f"gated:{report['run_id']}:sign_off",
        "message": "Ship order o7 for 30 EUR?",
        "approvers": ["alice", "group:finance"],
    }
    # Shown once: the journal keeps a hash; later outputs show the gate without the token.
    for f in tmp_path.glob("j.db*"):
        assert token.encode() not in f.read_bytes()
    shown = sagac("show", report["run_id"], "--json", "--store", store)
    assert shown.returncode == 0 and token not in shown.stdout
    assert json.loads(shown.stdout)["report"]["waiting"][0]["token"] is None
    again = sagac("resume", report["run_id"], "--json", "--store", store, env=env)
    assert again.returncode == 3 and token not in again.stdout + again.stderr
    assert json.loads(again.stdout)["waiting"][0]["id"] == "sign_off"
    page = tmp_path / "r.html"
    assert sagac("report", report["run_id"], "-o", str(page), "--store", store).returncode == 0
    assert token not in page.read_text()
