"""Approver groups live in the journal, changed by `sagac groups` (audited with the OS user),
never in the decider's environment: through the real CLI on a real SQLite journal."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest
from sagac.runtime import resume as durable
from sagac.runtime.store import open_store
from sagac.runtime.store.sqlite import SqliteStore

from .durable_support import gated_saga, sagac

OS_USER = pwd.getpwuid(os.geteuid()).pw_name


def waiting_run(tmp_path: Path, monkeypatch: Any) -> tuple[str, str, str]:
    """(store URL, run id, token) of a run waiting at gate `sign_off` (alice, group:finance)."""
    saga, db = gated_saga(tmp_path), tmp_path / "j.db"
    monkeypatch.setenv("SAGAC_TEST_LEDGER", str(tmp_path / "ledger.jsonl"))

    async def go() -> Any:
        store = SqliteStore(db)
        try:
            return await durable.start(saga, {"order_id": "o1", "amount": 5}, store=store)
        finally:
            await store.close()

    report = asyncio.run(go())
    assert report.status == "waiting_approval"
    return f"sqlite:///{db}", report.run_id, report.approval_tokens["sign_off"]


def approve(store: str, run_id: str, user: str, token: str, **env: str) -> Any:
    return sagac(
        "approve", run_id, "--gate", "sign_off", "--as", user, "--token", token,
        "--store", store, env=env,
    )  # fmt: skip


def test_groups_from_the_environment_no_longer_approve(tmp_path: Path, monkeypatch: Any) -> None:
    store, run_id, token = waiting_run(tmp_path, monkeypatch)
    tried = approve(store, run_id, "mallory", token, SAGAC_GROUPS="finance=mallory")
    assert tried.returncode == 77, tried.stderr
    assert "error[NOT_AN_APPROVER]" in tried.stderr
    assert "SAGAC_GROUPS is no longer read" in tried.stderr
    assert "sagac groups add finance USER" in tried.stderr
    shown = sagac("audit", run_id, "--json", "--store", store)
    assert shown.returncode == 0, shown.stderr
    (entry,) = json.loads(shown.stdout)
    assert (entry["actor"], entry["os_user"], entry["outcome"], entry["code"]) == (
        "mallory",
        OS_USER,
        "refused",
        "NOT_AN_APPROVER",
    )


def test_a_member_added_with_the_command_may_decide_and_removal_revokes(
    tmp_path: Path, monkeypatch: Any
) -> None:
    store, run_id, token = waiting_run(tmp_path, monkeypatch)
    added = sagac("groups", "add", "finance", "bob", "carol", "--store", store)
    assert added.returncode == 0 and "bob, carol added to group:finance" in added.stdout
    removed = sagac("groups", "remove", "group:finance", "carol", "--store", store)
    assert removed.returncode == 0 and "carol removed from group:finance" in removed.stdout

    revoked = approve(store, run_id, "carol", token)
    assert revoked.returncode == 77 and "error[NOT_AN_APPROVER]" in revoked.stderr
    ok = approve(store, run_id, "bob", token)
    assert ok.returncode == 0, ok.stderr
    assert f"approved: gate sign_off of run {run_id} by bob" in ok.stdout

    trail = sagac("audit", "--store", store)
    assert trail.returncode == 0, trail.stderr
    lines = trail.stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines[:2]] == [
        f"{OS_USER} group_add accepted: group:finance + bob, carol",
        f"{OS_USER} group_remove accepted: group:finance - carol",
    ]
    assert f"carol (os user {OS_USER}) approve refused [NOT_AN_APPROVER] {run_id}" in lines[2]
    assert f"bob (os user {OS_USER}) approve accepted {run_id} sign_off" in lines[3]


def test_group_command_mistakes_are_usage_errors(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'j.db'}"
    for args in (
        ("list", "--store", store),  # no journal yet: listing never creates one
        ("add", "fin ance", "bob", "--store", store),
    ):
        done = sagac("groups", *args)
        assert done.returncode == 64 and "Traceback" not in done.stderr, (args, done.stderr)
    assert not (tmp_path / "j.db").exists()
    assert sagac("groups", "add", "finance", "bob", "alice", "--store", store).returncode == 0
    listed = sagac("groups", "list", "--json", "--store", store)
    assert json.loads(listed.stdout) == {"finance": ["alice", "bob"]}
    unknown = sagac("groups", "list", "ops", "--store", store)
    assert unknown.returncode == 64 and "no group 'ops'" in unknown.stderr


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_every_store_keeps_groups_the_same_way(kind: str, tmp_path: Path) -> None:
    async def go() -> list[Any]:
        store = open_store("memory" if kind == "memory" else f"sqlite:///{tmp_path / 'j.db'}")
        try:
            return [
                await store.add_group_members("finance", ["bob", "alice", "bob"]),
                await store.add_group_members("finance", ["alice", "carol"]),
                await store.add_group_members("ops", ["dave"]),
                await store.remove_group_members("finance", ["carol", "zed"]),
                await store.group_members(),
                await store.group_members("ops"),
                await store.remove_group_members("ops", ["dave"]),
                await store.group_members("ops"),
            ]
        finally:
            await store.close()

    assert asyncio.run(go()) == [
        ["bob", "alice"],
        ["carol"],
        ["dave"],
        ["carol"],
        {"finance": ["alice", "bob"], "ops": ["dave"]},
        {"ops": ["dave"]},
        ["dave"],
        {},
    ]
