"""Callbacks through real processes: `sagac callback` (outcomes, refusals, usage), a `sagac
run` killed with SIGKILL after its action returned and resumed once the callback came (the
action is not called again; the clear token is nowhere in the store's files, the events or the
report), and a `sagac worker` that fires CALLBACK_TIMEOUT on time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sagac.runtime.clock import parse_rfc3339
from sagac.runtime.store.sqlite import SqliteStore

from .support import HERE, calls, sagac, tokens


def journal(db: Path) -> tuple[str, list[dict[str, Any]]]:
    """The only run of the SQLite store at `db` and its events ("", [] before it exists)."""

    async def go() -> tuple[str, list[dict[str, Any]]]:
        store = SqliteStore(db)
        try:
            runs = await store.list_runs()
            if not runs:
                return "", []
            return runs[0].run_id, await store.load_events(runs[0].run_id)
        finally:
            await store.close()

    return asyncio.run(go())


def until(check: Any, seconds: float = 20.0) -> Any:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out = check()
        if out:
            return out
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_command_records_refuses_and_explains(cb_dir: Path) -> None:
    db = cb_dir / "journal.db"
    store = f"sqlite:///{db}"
    ran = sagac("run", str(HERE / "pay.yaml"), "--input", '{"amount": 4}', "--store", store)
    assert ran.returncode == 3, ran.stderr
    assert "waits at 'charge' for its callback" in ran.stderr and "sagac callback" in ran.stderr
    (token,) = tokens(cb_dir)
    run_id, _ = journal(db)

    for bad in (
        ["--error", "declined"],
        ["--error", "DECLINED", "--result", "1"],
        ["--message", "why"],
        [],
    ):
        out = sagac("callback", token, *bad, "--store", store)
        assert out.returncode == 64, (bad, out.stderr)
        assert "Traceback" not in out.stderr
    not_json = sagac("callback", token, "--result", "not json", "--store", store)
    assert not_json.returncode == 4, not_json.stderr  # as `run --input` and `signal --data`
    assert "the result is not JSON" in not_json.stderr and "Traceback" not in not_json.stderr
    empty = sagac("callback", "-", "--result", "1", "--store", store, stdin="")
    assert empty.returncode == 64 and "no token given" in empty.stderr, empty.stderr
    unknown = sagac("callback", "no-such-token", "--result", "1", "--store", store)
    assert unknown.returncode == 77 and "UNKNOWN_CALLBACK_TOKEN" in unknown.stderr

    ok = sagac(
        "callback", "-", "--error", "DECLINED", "--message", "no funds", "--as", "psp",
        "--store", store, "--json", stdin=token + "\n",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    shown = json.loads(ok.stdout)
    assert (shown["run_id"], shown["step"], shown["attempt"]) == (run_id, "charge", 1)
    assert shown["outcome"] == {"error": {"code": "DECLINED", "message": "no funds"}}
    assert shown["worker_continues"] is False
    again = sagac("callback", token, "--result", '{"payment_id": "p"}', "--store", store)
    assert again.returncode == 77 and "CALLBACK_TOKEN_USED" in again.stderr

    audit = sagac("audit", run_id, "--store", store, "--json")
    assert audit.returncode == 0, audit.stderr
    rows = [r for r in json.loads(audit.stdout) if r["action"] == "callback"]
    assert [(r["outcome"], r["code"]) for r in rows] == [
        ("accepted", "DECLINED"),
        ("refused", "CALLBACK_TOKEN_USED"),
    ]
    assert rows[0]["actor"] == "psp" and rows[1]["actor"]  # `--as`, else the caller's name
    # The text form says what happened and how the run goes on.
    resumed = sagac("resume", run_id, "--store", store)
    assert resumed.returncode == 3, resumed.stderr  # retried: a new attempt waits
    (_, token2) = tokens(cb_dir)
    text = sagac("callback", token2, "--result", '{"payment_id": "p2"}', "--store", store)
    assert text.returncode == 0, text.stderr
    assert f"for step 'charge' (attempt 2) of run {run_id}" in text.stdout
    assert f"sagac resume {run_id}" in text.stdout


def test_sigkill_after_the_action_then_resume_calls_it_once(cb_dir: Path) -> None:
    db = cb_dir / "journal.db"
    store = f"sqlite:///{db}"
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagac", "run", str(HERE / "kill.yaml"), "--store", store],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # The action returned and the step waits (journaled); the other branch keeps the run busy.
        run_id, _ = until(
            lambda: (lambda j: j if any(e["type"] == "callback_waiting" for e in j[1]) else None)(
                journal(db)
            )
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    (token,) = tokens(cb_dir)

    called = sagac("callback", token, "--result", '{"payment_id": "p7"}', "--store", store)
    assert called.returncode == 0, called.stderr
    (cb_dir / "release").touch()  # the busy branch ends when run again
    resumed = sagac("resume", run_id, "--store", store, "--json")
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["status"] == "succeeded" and report["output"] == {"payment": "p7"}
    assert len(calls(cb_dir, "start_payment")) == 1

    events = sagac("events", run_id, "--store", store)
    assert events.returncode == 0, events.stderr
    shown = sagac("show", run_id, "--store", store, "--json")
    assert "callback_issued" in events.stdout
    for text in (events.stdout, shown.stdout, resumed.stdout):
        assert token not in text
    for f in cb_dir.iterdir():
        if f.name.startswith("journal.db"):
            assert token.encode() not in f.read_bytes(), f.name


def test_a_worker_fires_callback_timeout_on_time(cb_dir: Path) -> None:
    db = cb_dir / "journal.db"
    store = f"sqlite:///{db}"
    saga = cb_dir / "timeout.yaml"
    saga.write_text((HERE / "late.yaml").read_text().replace("timeout: 300ms", "timeout: 2s"))
    (cb_dir / "cb_provider.py").write_text((HERE / "cb_provider.py").read_text())
    ran = sagac("run", str(saga), "--store", store)
    assert ran.returncode == 3, ran.stderr
    _, events = journal(db)
    deadline = parse_rfc3339(next(e for e in events if e["type"] == "callback_issued")["deadline"])
    worker = subprocess.Popen(
        [sys.executable, "-m", "sagac", "worker", "--store", store, "--poll", "30s"],
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, events = until(
            lambda: (lambda j: j if any(e["type"] == "saga_failed" for e in j[1]) else None)(
                journal(db)
            ),
            seconds=15,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    ended = next(e for e in events if e["type"] == "wait_ended")
    assert (ended["reason"], ended["attempt"]) == ("timeout", 1)
    assert parse_rfc3339(ended["at"]) >= deadline
    failed = events[-1]
    assert failed["status"] == "compensated"
    assert failed["failure"]["code"] == "CALLBACK_TIMEOUT"
    assert len(calls(cb_dir, "start_payment")) == 1


def test_a_crash_before_the_action_returned_issues_a_new_token(cb_dir: Path) -> None:
    db = cb_dir / "journal.db"
    store = f"sqlite:///{db}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagac", "run", str(HERE / "hang.yaml"), "--store", store],
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until(lambda: tokens(cb_dir))  # the action has the token and hangs
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    run_id, _ = journal(db)
    (cb_dir / "release").touch()
    again = sagac("resume", run_id, "--store", store)
    assert again.returncode == 3, again.stderr  # attempt 2 ran, with a new token, and waits
    token1, token2 = tokens(cb_dir)
    assert token1 != token2
    # The other system may hold either token: the first one to come completes the step.
    first = sagac("callback", token1, "--result", '{"payment_id": "p1"}', "--store", store)
    assert first.returncode == 0, first.stderr
    other = sagac("callback", token2, "--result", '{"payment_id": "p2"}', "--store", store)
    assert other.returncode == 77 and "CALLBACK_NOT_PENDING" in other.stderr
    done = sagac("resume", run_id, "--store", store, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == {"payment": "p1"}
    assert len(calls(cb_dir, "start_payment")) == 2
    _, events = journal(db)
    ended = [(e["reason"], e["attempt"]) for e in events if e["type"] == "wait_ended"]
    assert sorted(ended) == [("callback", 1), ("cancelled", 2)]
    completed = next(e for e in events if e["type"] == "step_completed")
    assert completed["attempt"] == 2


def test_a_callback_wakes_a_run_parked_on_postgresql(pg_server: Any, cb_dir: Path) -> None:
    store = pg_server.database()
    sent = sagac("submit", str(HERE / "pay.yaml"), "--input", '{"amount": 6}', "--store", store)
    assert sent.returncode == 0, sent.stderr
    log = (cb_dir / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "sagac", "worker", "--store", store, "--poll", "30s"],
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        (token,) = until(lambda: tokens(cb_dir))
        until(lambda: "parked" in (cb_dir / "worker.log").read_text())
        called = sagac("callback", token, "--result", '{"payment_id": "pg"}', "--store", store)
        assert called.returncode == 0, called.stderr
        assert "a live worker continues the run" in called.stdout

        def finished() -> Any:
            runs = sagac("runs", "--store", store, "--json")
            rows = json.loads(runs.stdout) if runs.returncode == 0 else []
            return rows and rows[0]["status"] == "succeeded" and rows[0]

        row = until(finished, seconds=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        log.close()
    shown = sagac("show", row["run_id"], "--store", store, "--json")
    assert json.loads(shown.stdout)["report"]["output"] == {"payment": "pg"}
    assert len(calls(cb_dir, "start_payment")) == 1
