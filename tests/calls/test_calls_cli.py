"""`call` through the CLI in real processes: a `sagac run` SIGKILLed inside its child run (in a
step, in an undo) and `sagac resume PARENT`; `sagac show` of a parent and of a child."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sagac.runtime.store.sqlite import SqliteStore

from .support import CHECKOUT, ledger_lines

ROOT = Path(__file__).resolve().parents[2]


def sagac(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagac", *args],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def runs_of(db: Path) -> dict[str, Any]:
    """saga -> its run record, and the events of each run, read back from the file."""

    async def go() -> dict[str, Any]:
        store = SqliteStore(db)
        try:
            out: dict[str, Any] = {}
            for r in await store.list_runs(limit=10):
                out[r.saga] = r
                out[f"{r.saga} events"] = await store.load_events(r.run_id)
            return out
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("data", "kill_in", "status", "expected"),
    [
        (
            {},
            "pick",
            "succeeded",
            ["charge", "hold", "pick", "pick", "ship"],
        ),
        (
            {"fail_ship": True},
            "unpick",
            "compensated",
            ["charge", "hold", "pick", "unpick", "unpick", "unhold", "refund"],
        ),
    ],
    ids=["in-a-child-step", "in-a-child-undo"],
)
def test_a_run_killed_inside_its_child_resumes_with_nothing_done_or_undone_twice(
    tmp_path: Path,
    ledger: Path,
    data: dict[str, Any],
    kill_in: str,
    status: str,
    expected: list[str],
) -> None:
    db = tmp_path / "journal.db"
    store = f"sqlite:///{db}"
    given = json.dumps({"order_id": "o", **data})
    killed = sagac("run", str(CHECKOUT), "--input", given, "--store", store, "--json",
                   env={"SAGAC_TEST_KILL_IN": kill_in})  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    before = runs_of(db)
    parent, child = before["checkout"], before["reserve"]
    assert (parent.status, child.status) == ("running", "running")
    assert child.parent_run_id == parent.run_id

    resumed = sagac("resume", parent.run_id, "--store", store, "--json")
    assert resumed.returncode == (0 if status == "succeeded" else 1), resumed.stderr
    assert json.loads(resumed.stdout)["status"] == status
    after = runs_of(db)
    assert after["reserve"].status == ("succeeded" if status == "succeeded" else "compensated")
    lines = ledger_lines(ledger)
    # The killed action ran again with its journaled key (at-least-once, one key): every other
    # action, and every undo, exactly once.
    assert [action for action, _ in lines] == expected
    assert len(set(lines)) == len(expected) - 1
    assert len(after["reserve events"]) > len(before["reserve events"])
    assert after["checkout"].run_id == parent.run_id  # no second parent, no second child
    assert len([e for e in after["checkout events"] if e["type"] == "call_started"]) == 1


def test_show_lists_the_children_of_a_run_and_the_parent_of_a_child(
    tmp_path: Path, ledger: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    ran = sagac("run", str(CHECKOUT), "--input", '{"order_id": "o"}', "--store", store, "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    parent_id = report["run_id"]
    child_id = report["children"]["reserve_stock"]

    shown = json.loads(sagac("show", parent_id, "--store", store, "--json").stdout)
    assert shown["parent"] is None
    assert shown["children"] == [
        {"run_id": child_id, "saga": "reserve", "status": "succeeded", "step": "reserve_stock"}
    ]
    assert shown["report"]["children"] == {"reserve_stock": child_id}
    shown = json.loads(sagac("show", child_id, "--store", store, "--json").stdout)
    assert shown["parent"] == {"run_id": parent_id, "step": "reserve_stock"}
    assert shown["children"] == []

    text = sagac("show", parent_id, "--store", store).stdout
    assert f"reserve_stock                {child_id}  reserve  succeeded" in text
    assert f"reserve_stock calls reserve: child run {child_id}" in text
    text = sagac("show", child_id, "--store", store).stdout
    assert f"child of run {parent_id} (its call reserve_stock)" in text


def test_a_childs_gate_is_decided_through_its_parent_and_the_resume_finishes_both(
    tmp_path: Path, ledger: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    given = '{"order_id": "o", "gate": true}'
    ran = sagac("run", str(CHECKOUT), "--input", given, "--store", store, "--json")
    assert ran.returncode == 3, ran.stderr
    report = json.loads(ran.stdout)
    assert report["status"] == "waiting_approval"
    (gate,) = report["waiting"]
    assert gate["id"] == "reserve_stock/manager" and gate["token"]
    decided = sagac("approve", report["run_id"], "--gate", gate["id"], "--as", "alice",
                    "--token", gate["token"], "--resume", "--json", "--store", store)  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    assert json.loads(decided.stdout)["status"] == "succeeded"
    assert runs_of(tmp_path / "journal.db")["reserve"].status == "succeeded"
    assert [a for a, _ in ledger_lines(ledger)] == ["charge", "hold", "pick", "ship"]


def test_a_worker_runs_a_decided_child_by_itself_and_its_end_wakes_the_parent(
    tmp_path: Path, ledger: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    given = '{"order_id": "o", "gate": true}'
    ran = sagac("run", str(CHECKOUT), "--input", given, "--store", store, "--json")
    assert ran.returncode == 3, ran.stderr
    report = json.loads(ran.stdout)
    (gate,) = report["waiting"]
    decided = sagac("approve", report["run_id"], "--gate", gate["id"], "--as", "alice",
                    "--token", gate["token"], "--store", store)  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    worked = sagac("worker", "--store", store, "--exit-when-idle", "--poll", "0.2s")
    assert worked.returncode == 0, worked.stderr
    after = runs_of(tmp_path / "journal.db")
    assert (after["checkout"].status, after["reserve"].status) == ("succeeded", "succeeded")
    assert [a for a, _ in ledger_lines(ledger)] == ["charge", "hold", "pick", "ship"]
