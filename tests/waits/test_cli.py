"""The CLI of parked runs, as real processes on a SQLite journal: `sagac run` parks (exit 3)
and says how the run goes on, `sagac resume` before the due time changes nothing, `sagac
signal` refuses (exit 77, audited) or keeps, and a SIGKILL during an in-process sleep resumes
with only the time that was left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sagac.runtime.clock import parse_rfc3339

ROOT = Path(__file__).resolve().parents[2]

SAGA = """
saga: order
steps:
  - {id: reserve, action: {mock: {result: {id: r1}}}, compensate: {action: {mock: {result: {}}}}}
  - sleep: {id: cool_off, for: SLEEP}
  - wait:
      id: paid
      signal: payment_confirmed
      schema: {type: object, required: [payment_id]}
      timeout: 1h
output: {payment: "{{ steps.paid.result.payment_id }}"}
"""


def sagac(*args: str, cwd: Path, stdin: str = "") -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAC_")}
    return subprocess.run(
        [sys.executable, "-m", "sagac", *args],
        cwd=cwd,
        env={**env, "NO_COLOR": "1"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def events(cwd: Path, run_id: str) -> list[dict[str, Any]]:
    done = sagac("events", run_id, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def run_id_of(stdout: str) -> str:
    run_id: str = json.loads(stdout)["run_id"]
    return run_id


def test_run_parks_resume_before_due_changes_nothing_and_signals_are_checked(
    tmp_path: Path,
) -> None:
    (tmp_path / "order.yaml").write_text(SAGA.replace("SLEEP", "1h"))
    ran = sagac("run", "order.yaml", "--json", cwd=tmp_path)
    assert ran.returncode == 3, ran.stderr
    run_id = run_id_of(ran.stdout)
    assert json.loads(ran.stdout)["parked"][0]["id"] == "cool_off"
    assert f"run {run_id} sleeps at 'cool_off' until" in ran.stderr
    before = events(tmp_path, run_id)

    early = sagac("resume", run_id, cwd=tmp_path)
    assert early.returncode == 3, early.stderr
    assert "sleeps at 'cool_off' until" in early.stderr
    assert events(tmp_path, run_id) == before  # nothing changed

    # A signal sent while the run sleeps is kept for its wait; checked first.
    unknown = sagac("signal", run_id, "refund", cwd=tmp_path)
    assert unknown.returncode == 77
    assert "error[UNKNOWN_SIGNAL]" in unknown.stderr
    invalid = sagac("signal", run_id, "payment_confirmed", "--data", "{}", cwd=tmp_path)
    assert invalid.returncode == 77
    assert "error[INVALID_SIGNAL_DATA]" in invalid.stderr and "payment_id" in invalid.stderr
    not_json = sagac("signal", run_id, "payment_confirmed", "--data", "{", cwd=tmp_path)
    assert not_json.returncode == 4
    assert "signal data is not JSON" in not_json.stderr
    (tmp_path / "data.json").write_text('{"payment_id": "P-1"}')
    sent = sagac(
        "signal", run_id, "payment_confirmed", "--data", "@data.json", "--as", "psp", cwd=tmp_path
    )
    assert sent.returncode == 0, sent.stderr
    assert f"signal payment_confirmed sent to run {run_id}" in sent.stdout
    again = sagac(
        "signal",
        run_id,
        "payment_confirmed",
        "--data",
        "-",
        cwd=tmp_path,
        stdin='{"payment_id": "P-2"}',
    )
    assert again.returncode == 77
    assert "error[SIGNAL_ALREADY_SENT]" in again.stderr
    assert events(tmp_path, run_id) == before  # signals are kept beside the journal

    audit = sagac("audit", run_id, "--json", cwd=tmp_path)
    rows = [a for a in json.loads(audit.stdout) if a["action"] == "signal"]
    assert [(a["outcome"], a["code"]) for a in rows] == [
        ("refused", "UNKNOWN_SIGNAL"),
        ("refused", "INVALID_SIGNAL_DATA"),
        ("accepted", None),
        ("refused", "SIGNAL_ALREADY_SENT"),
    ]


def test_sigkill_during_an_in_process_sleep_then_resume_waits_only_the_rest(
    tmp_path: Path,
) -> None:
    (tmp_path / "order.yaml").write_text(SAGA.replace("SLEEP", "6s"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAC_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagac", "run", "order.yaml"],
        cwd=tmp_path,
        env={**env, "NO_COLOR": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        run_id = ""
        for line in proc.stderr:  # the progress lines, as they come
            if line.startswith("▶"):
                run_id = line.split(" run ")[1].split()[0]
            if "cool_off sleeps until" in line:
                break
        time.sleep(2.0)  # a third of the sleep, in the process
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    resumed = sagac("resume", run_id, cwd=tmp_path)
    assert resumed.returncode == 3, resumed.stderr  # on to the wait
    journal = events(tmp_path, run_id)
    [started] = [e for e in journal if e["type"] == "sleep_started"]
    assert len([e for e in journal if e["type"] == "sleep_started"]) == 1
    [back] = [e for e in journal if e["type"] == "saga_resumed"]
    [due] = [e for e in journal if e["type"] == "wait_ended"]
    until = parse_rfc3339(started["until"])
    assert parse_rfc3339(started["at"]) + 2 < parse_rfc3339(back["at"]) < until
    # It woke at the journaled due time: the rest of the sleep, not 4 s more.
    assert until <= parse_rfc3339(due["at"]) < until + 0.5
    assert [e["step"] for e in journal if e["type"] == "step_started"] == ["reserve"]
