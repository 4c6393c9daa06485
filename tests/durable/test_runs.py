"""Cancel, run-level idempotency keys, secrets, definition changes and the inspection commands,
through the real CLI against one journal file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .durable_support import LEDGER_SAGA, ROOT, SAGAS, gated_saga, read_ledger, sagac

SLOW_CHECKOUT = """\
saga: slow_checkout
actions:
  charge: {python: "ledger_shop:charge"}
  refund: {python: "ledger_shop:refund"}
  slow: {python: "ledger_shop:slow"}
steps:
  - id: charge
    action: charge
    with: {order_id: c1}
    idempotency_key: c1-charge
    compensate: {action: refund, with: {payment_id: x}, idempotency_key: c1-refund}
  - id: wait
    action: slow
    with: {order_id: c1, seconds: 60}
    idempotency_key: c1-slow
  - id: never
    action: charge
    with: {order_id: c1-never}
    idempotency_key: c1-never
"""


def _events(db: Path, run_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as c:
        return [
            json.loads(b)
            for (b,) in c.execute(
                "SELECT body FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
            )
        ]


def test_cancel_stops_a_running_process_and_compensates(tmp_path: Path) -> None:
    (tmp_path / "ledger_shop.py").write_text((SAGAS / "ledger_shop.py").read_text())
    saga = tmp_path / "slow_checkout.yaml"
    saga.write_text(SLOW_CHECKOUT)
    db, ledger = tmp_path / "j.db", tmp_path / "l.jsonl"
    env = {**os.environ, "SAGAC_TEST_LEDGER": str(ledger), "NO_COLOR": "1"}
    store = f"sqlite:///{db}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagac", "run", str(saga), "--store", store, "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not any(x["action"] == "slow" for x in read_ledger(ledger)):  # in the slow step
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    run_id = json.loads(sagac("runs", "--json", "--store", store).stdout)[0]["run_id"]
    asked = time.monotonic()
    cancel = sagac("cancel", run_id, "--reason", "customer called", "--as", "ops", "--store", store)
    assert cancel.returncode == 0 and "recorded" in cancel.stdout
    # The step sleeps 60 s, so even a slow machine's CLI start-up cannot let it finish first.
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - asked < 10, "the in-flight step was not cancelled"
    assert proc.returncode == 1, err
    report = json.loads(out)
    assert report["status"] == "compensated"
    assert report["failure"]["code"] == "CANCELLED"
    assert "customer called" in report["failure"]["message"]
    assert [x["action"] for x in read_ledger(ledger)] == ["charge", "slow", "refund"]
    types = [e["type"] for e in _events(db, run_id)]
    assert "cancel_requested" in types and types.index("cancel_requested") < types.index(
        "compensation_started"
    )
    audit = json.loads(sagac("audit", run_id, "--json", "--store", store).stdout)
    assert [(a["actor"], a["action"], a["message"]) for a in audit] == [
        ("ops", "cancel", "customer called")
    ]


def test_cancel_of_a_waiting_run_is_carried_out_by_the_resume(tmp_path: Path) -> None:
    saga, db, ledger = gated_saga(tmp_path), tmp_path / "j.db", tmp_path / "l.jsonl"
    env, store = {"SAGAC_TEST_LEDGER": str(ledger)}, f"sqlite:///{db}"
    ran = sagac("run", str(saga), "--input", '{"order_id": "w1"}', "--store", store, env=env)
    assert ran.returncode == 3
    run_id = json.loads(sagac("runs", "--json", "--store", store).stdout)[0]["run_id"]
    out = sagac("cancel", run_id, "--store", store, "--resume", "--json", env=env)
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)  # with --json, stdout is the report alone
    assert report["status"] == "compensated" and report["failure"]["code"] == "CANCELLED"
    assert [x["action"] for x in read_ledger(ledger)] == ["charge", "refund"]


def test_one_run_per_idempotency_key(tmp_path: Path) -> None:
    db, ledger = tmp_path / "j.db", tmp_path / "l.jsonl"
    env, store = {"SAGAC_TEST_LEDGER": str(ledger)}, f"sqlite:///{db}"
    args = ("run", str(LEDGER_SAGA), "--store", store, "--json", "--idempotency-key", "order-7")
    first = sagac(*args, "--input", '{"order_id": "o7"}', env=env)
    second = sagac(*args, "--input", '{"order_id": "o7"}', env=env)
    assert first.returncode == second.returncode == 0
    assert json.loads(first.stdout)["run_id"] == json.loads(second.stdout)["run_id"]
    assert len(read_ledger(ledger)) == 3  # the second call ran nothing
    clash = sagac(*args, "--input", '{"order_id": "o8"}', env=env)
    assert clash.returncode == 64 and "error[IDEMPOTENCY_CONFLICT]" in clash.stderr
    assert "was first used by run" in clash.stderr


def test_idempotency_keys_are_scoped_to_the_saga(tmp_path: Path) -> None:
    db, ledger = tmp_path / "j.db", tmp_path / "l.jsonl"
    env, store = {"SAGAC_TEST_LEDGER": str(ledger)}, f"sqlite:///{db}"
    other = tmp_path / "other_checkout.yaml"
    (tmp_path / "ledger_shop.py").write_text((SAGAS / "ledger_shop.py").read_text())
    other.write_text(LEDGER_SAGA.read_text().replace("saga: ledger_checkout", "saga: other"))
    common = ("--store", store, "--json", "--idempotency-key", "k", "--input", '{"order_id": "o"}')
    first = sagac("run", str(LEDGER_SAGA), *common, env=env)
    second = sagac("run", str(other), *common, env=env)
    assert first.returncode == second.returncode == 0, second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert (a["saga"], b["saga"]) == ("ledger_checkout", "other")  # not the first saga's report
    assert a["run_id"] != b["run_id"]
    again = sagac("run", str(other), *common, env=env)
    assert json.loads(again.stdout)["run_id"] == b["run_id"]  # still one run per saga and key


def test_an_idempotency_key_with_the_memory_store_is_a_usage_error(tmp_path: Path) -> None:
    ledger = tmp_path / "l.jsonl"
    r = sagac(
        "run",
        str(LEDGER_SAGA),
        "--store",
        "memory",
        "--idempotency-key",
        "k",
        "--input",
        '{"order_id": "o"}',
        env={"SAGAC_TEST_LEDGER": str(ledger)},
    )
    assert r.returncode == 64
    assert "--idempotency-key" in r.stderr and "--store memory" in r.stderr
    assert "Traceback" not in r.stderr and not ledger.exists()  # nothing ran


def test_a_crashed_keyed_run_is_resumed_by_the_same_call(driver: Any, tmp_path: Path) -> None:
    db, ledger = tmp_path / "j.db", tmp_path / "l.jsonl"
    env = {"SAGAC_TEST_LEDGER": str(ledger)}
    # The driver has no key: claim it for run "r" the way `start` would, then crash "r".
    answer = driver.run(
        db=str(db),
        saga=str(LEDGER_SAGA),
        input={"order_id": "k1"},
        run_id="r",
        kill_at=4,
        env=env,
    )
    assert answer["signal"] == signal.SIGKILL
    import hashlib

    digest = "sha256:" + hashlib.sha256(b'{"order_id":"k1"}').hexdigest()
    with sqlite3.connect(db) as c:
        c.execute(
            "INSERT INTO idempotency_keys (saga, key, run_id, input_hash, created_at)"
            " VALUES ('ledger_checkout', 'key-k1', 'r', ?, 'now')",
            (digest,),
        )
    again = sagac(
        "run",
        str(LEDGER_SAGA),
        "--store",
        f"sqlite:///{db}",
        "--json",
        "--idempotency-key",
        "key-k1",
        "--input",
        '{"order_id": "k1"}',
        env=env,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["run_id"] == "r"
    assert [x["action"] for x in read_ledger(ledger) if x["effective"]] == [
        "charge",
        "reserve",
        "ship",
    ]


def test_resume_under_a_changed_definition_is_refused_unless_forced(tmp_path: Path) -> None:
    saga, db, ledger = gated_saga(tmp_path), tmp_path / "j.db", tmp_path / "l.jsonl"
    env, store = {"SAGAC_TEST_LEDGER": str(ledger)}, f"sqlite:///{db}"
    ran = sagac("run", str(saga), "--input", '{"order_id": "d1"}', "--store", store, env=env)
    run_id = json.loads(sagac("runs", "--json", "--store", store).stdout)[0]["run_id"]
    assert ran.returncode == 3
    saga.write_text(saga.read_text().replace("EUR?", "EUR, please?"))
    refused = sagac("resume", run_id, "--store", store, env=env)
    assert refused.returncode == 65 and "error[DEFINITION_CHANGED]" in refused.stderr
    assert "--force" in refused.stderr
    forced = sagac("resume", run_id, "--store", store, "--force", env=env)
    assert forced.returncode == 3  # still waiting at its gate, now under the new definition
    audit = json.loads(sagac("audit", run_id, "--json", "--store", store).stdout)
    assert [a["action"] for a in audit] == ["force_resume"]


def test_secrets_never_reach_the_journal_file_or_any_output(tmp_path: Path) -> None:
    secret = "s3cr3t-Value-4711"
    saga, db, ledger = gated_saga(tmp_path), tmp_path / "j.db", tmp_path / "l.jsonl"
    env = {"SAGAC_TEST_LEDGER": str(ledger), "API_TOKEN": secret}
    store = f"sqlite:///{db}"
    ran = sagac(
        "run",
        str(saga),
        "--input",
        '{"order_id": "s1"}',
        "--store",
        store,
        "--json",
        "--events",
        str(tmp_path / "ev.jsonl"),
        env=env,
    )
    assert ran.returncode == 3
    run_id = json.loads(ran.stdout)["run_id"]
    outputs = [ran.stdout, ran.stderr, (tmp_path / "ev.jsonl").read_text()]
    for cmd in (
        ("show", run_id),
        ("show", run_id, "--json"),
        ("events", run_id, "--json"),
        ("runs", "--json"),
        ("audit", "--json"),
    ):
        out = sagac(*cmd, "--store", store)
        assert out.returncode == 0
        outputs.append(out.stdout)
    assert all(secret not in text for text in outputs)
    assert any("Bearer ***" in text for text in outputs)  # the result was there, redacted
    for f in tmp_path.glob("j.db*"):  # the file itself, its WAL and shared memory
        assert secret.encode() not in f.read_bytes(), f.name
    with sqlite3.connect(db) as c:
        for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            rows = c.execute(f'SELECT * FROM "{table}"').fetchall()
            assert secret not in repr(rows), table


def test_inspection_commands(tmp_path: Path) -> None:
    db, ledger = tmp_path / "j.db", tmp_path / "l.jsonl"
    env, store = {"SAGAC_TEST_LEDGER": str(ledger)}, f"sqlite:///{db}"
    ok = sagac("run", str(LEDGER_SAGA), "--input", '{"order_id": "i1"}', "--store", store, env=env)
    bad = sagac(
        "run",
        str(LEDGER_SAGA),
        "--input",
        '{"order_id": "i2", "fail": true}',
        "--store",
        store,
        env=env,
    )
    assert (ok.returncode, bad.returncode) == (0, 1)
    runs = json.loads(sagac("runs", "--json", "--store", store).stdout)
    assert [r["status"] for r in runs] == ["compensated", "succeeded"]  # newest first
    only = json.loads(sagac("runs", "--status", "succeeded", "--json", "--store", store).stdout)
    assert len(only) == 1
    assert sagac("runs", "--saga", "nope", "--json", "--store", store).stdout.strip() == "[]"
    failed_id = runs[0]["run_id"]
    show = sagac("show", failed_id, "--store", store)
    assert "compensated" in show.stdout and "undo: ok" in show.stdout
    assert "ship" in show.stdout and "failed" in show.stdout
    text = sagac("events", failed_id, "--store", store).stdout.splitlines()
    lines = sagac("events", failed_id, "--json", "--store", store).stdout.splitlines()
    assert len(text) == len(lines) and json.loads(lines[0])["type"] == "saga_started"
    assert [json.loads(x)["seq"] for x in lines] == list(range(1, len(lines) + 1))
    missing = sagac("show", "no-such-run", "--store", store)
    assert missing.returncode == 64 and "error[RUN_NOT_FOUND]" in missing.stderr
    assert "Traceback" not in missing.stderr
