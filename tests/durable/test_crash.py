"""Crash at every journal write, and inside every action, then resume: the run ends right.

A fork server (driver.py) runs each saga in a real child process that SIGKILLs itself at the
N-th event (delivered only once its journal write is durable), for every N, or in the middle of
an action (after the outside world acted, before the result came back). The run is then resumed
from the SQLite file. For each crash point: the final status is right; steps completed in the
journal before the crash are never called again; no idempotency key takes effect twice; every
completed compensable step is compensated exactly once, in LIFO order. Set SAGAC_SOAK=1 to
also crash the resume itself at every point.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sagac.runtime import resume as durable
from sagac.runtime.store.sqlite import SqliteStore

from .durable_support import LEDGER_SAGA, ROOT, read_ledger, sagac

SOAK = os.environ.get("SAGAC_SOAK") == "1"
CHECKOUT = ROOT / "sagas" / "checkout_compensated.yaml"
INPUTS = ROOT / "sagas" / "inputs"
# checkout_compensated's steps and compensations, as the demo ledger names their actions.
DO = {"charge_payment": "payments.charge", "reserve_inventory": "inventory.reserve"}
UNDO = {"charge_payment": "payments.refund", "reserve_inventory": "inventory.release"}


def journal(db: Path, run_id: str) -> list[dict[str, Any]]:
    """The run's events, read straight from the file (not through the store under test)."""
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT body FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
    events = [json.loads(r[0]) for r in rows]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "gap in the journal"
    return events


def resume_here(db: Path, run_id: str) -> Any:
    async def go() -> Any:
        store = SqliteStore(db)
        try:
            return await durable.resume(run_id, store=store)
        finally:
            await store.close()

    return asyncio.run(go())


def effective(ledger: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(action, key) in the order they first took effect: a repeated key is a replay."""
    seen: list[tuple[str, str]] = []
    for line in ledger:
        pair = (line["action"], line["key"])
        if pair not in seen:
            seen.append(pair)
    return seen


@pytest.mark.parametrize(
    ("input_file", "expected"),
    [("checkout_compensated.json", "succeeded"), ("checkout_compensated.fail.json", "compensated")],
)
def test_checkout_survives_a_crash_at_every_journal_write(
    input_file: str, expected: str, driver: Any, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    data = json.loads((INPUTS / input_file).read_text())
    base = driver.run(
        db=str(tmp_path / "base.db"),
        saga=str(CHECKOUT),
        input=data,
        run_id="base",
        out=str(tmp_path / "base.json"),
        env={"SAGAC_DEMO_LEDGER": str(tmp_path / "base.ledger")},
    )
    assert base["exit"] == 0
    baseline = json.loads((tmp_path / "base.json").read_text())
    assert baseline["status"] == expected
    points = range(1, baseline["events"] + 1)
    for n in points:
        db, ledger = tmp_path / f"{n}.db", tmp_path / f"{n}.ledger"
        env = {"SAGAC_DEMO_LEDGER": str(ledger)}
        answer = driver.run(
            db=str(db), saga=str(CHECKOUT), input=data, run_id="r", kill_at=n, env=env
        )
        assert answer["signal"] == signal.SIGKILL, f"crash point {n}: {answer}"
        before = journal(db, "r")
        assert len(before) >= n
        done_steps = {e["step"] for e in before if e["type"] == "step_completed"}
        undone = {e["step"] for e in before if e["type"] == "compensation_completed"}
        calls_before = len(read_ledger(ledger))

        monkeypatch.setenv("SAGAC_DEMO_LEDGER", str(ledger))
        report = resume_here(db, "r")
        assert report.status == expected, f"crash point {n}"
        calls = read_ledger(ledger)
        again = [c["action"] for c in calls[calls_before:]]
        for step in done_steps & DO.keys():
            assert DO[step] not in again, f"crash point {n}: completed {step} was called again"
        for step in undone:
            assert UNDO[step] not in again, f"crash point {n}: {step} was undone twice"
        _check_ledger(effective(calls), expected, f"crash point {n}")
        after = journal(db, "r")
        assert after[: len(before)] == before  # the journal only grows
        assert sum(e["type"] in ("saga_completed", "saga_failed") for e in after) == 1
    with capsys.disabled():
        print(f"\n{CHECKOUT.name} {input_file}: crash points tried: {len(points)}")


def _check_ledger(eff: list[tuple[str, str]], expected: str, where: str) -> None:
    actions = [a for a, _ in eff]
    assert actions.count("payments.charge") == 1, f"{where}: {eff}"
    if expected == "succeeded":
        assert actions == ["payments.charge", "inventory.reserve"], f"{where}: {eff}"
    else:
        # The reservation failed (on: attempted still undoes it): release, then refund (LIFO).
        assert actions == ["payments.charge", "inventory.release", "payments.refund"], where


@pytest.mark.parametrize("fail", [False, True])
def test_a_crash_inside_any_action_reruns_it_with_the_same_key(
    fail: bool, driver: Any, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    """The outside world acted, the process died before hearing back: the resume calls again
    with the same key (at-least-once), which the API recognises as a replay."""
    killable = ["charge", "reserve"] + (["release", "refund"] if fail else ["ship"])
    expected = "compensated" if fail else "succeeded"
    for action in killable:
        db, ledger = tmp_path / f"{action}.db", tmp_path / f"{action}.ledger"
        env = {"SAGAC_TEST_LEDGER": str(ledger), "SAGAC_TEST_KILL_IN": action}
        answer = driver.run(
            db=str(db),
            saga=str(LEDGER_SAGA),
            input={"order_id": "o1", "fail": fail},
            run_id="r",
            kill_at=None,
            env=env,
        )
        assert answer["signal"] == signal.SIGKILL, action
        monkeypatch.setenv("SAGAC_TEST_LEDGER", str(ledger))
        monkeypatch.delenv("SAGAC_TEST_KILL_IN", raising=False)
        report = resume_here(db, "r")
        assert report.status == expected, action
        lines = read_ledger(ledger)
        replays = [line for line in lines if not line["effective"]]
        assert [r["action"] for r in replays] == [action], f"{action}: {lines}"
        eff = [line["action"] for line in lines if line["effective"]]
        want = ["charge", "reserve", "release", "refund"] if fail else ["charge", "reserve", "ship"]
        assert eff == want, f"killed in {action}: {eff}"
    with capsys.disabled():
        print(f"\nledger_checkout fail={fail}: action crash points tried: {len(killable)}")


def test_resume_through_the_cli_after_a_crash(driver: Any, tmp_path: Path) -> None:
    db, ledger = tmp_path / "cli.db", tmp_path / "cli.ledger"
    env = {"SAGAC_TEST_LEDGER": str(ledger), "SAGAC_TEST_KILL_IN": "reserve"}
    answer = driver.run(
        db=str(db),
        saga=str(LEDGER_SAGA),
        input={"order_id": "o2", "fail": True},
        run_id="cli-run",
        env=env,
    )
    assert answer["signal"] == signal.SIGKILL
    listed = sagac("runs", "--store", f"sqlite:///{db}", "--status", "running", "--json")
    assert [r["run_id"] for r in json.loads(listed.stdout)] == ["cli-run"]
    done = sagac(
        "resume", "--all", "--store", f"sqlite:///{db}", env={"SAGAC_TEST_LEDGER": str(ledger)}
    )
    assert done.returncode == 1, done.stderr  # compensated
    assert "cli-run  compensated" in done.stdout
    again = sagac("resume", "cli-run", "--store", f"sqlite:///{db}", "--json")
    assert again.returncode == 1 and json.loads(again.stdout)["status"] == "compensated"
    assert [x["action"] for x in read_ledger(ledger) if x["effective"]] == [
        "charge",
        "reserve",
        "release",
        "refund",
    ]


@pytest.mark.skipif(not SOAK, reason="SAGAC_SOAK=1: crash the resume too, at every point")
def test_a_crash_during_the_resume_is_survived_too(
    driver: Any, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    data = json.loads((INPUTS / "checkout_compensated.fail.json").read_text())
    tried = 0
    for n in range(2, 12):
        for m in range(1, 8):
            db, ledger = tmp_path / f"{n}-{m}.db", tmp_path / f"{n}-{m}.ledger"
            env = {"SAGAC_DEMO_LEDGER": str(ledger)}
            driver.run(db=str(db), saga=str(CHECKOUT), input=data, run_id="r", kill_at=n, env=env)
            driver.run(
                db=str(db),
                saga=str(CHECKOUT),
                input=data,
                run_id="r",
                kill_at=m,
                resume=True,
                env=env,
            )
            monkeypatch.setenv("SAGAC_DEMO_LEDGER", str(ledger))
            assert resume_here(db, "r").status == "compensated", (n, m)
            _check_ledger(effective(read_ledger(ledger)), "compensated", f"{n}/{m}")
            tried += 1
    with capsys.disabled():
        print(f"\ndouble crash points tried: {tried}")
