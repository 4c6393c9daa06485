"""`sagac submit`, `sagac worker` and `sagac workers` on one SQLite file, as real processes.

Workers run with a short lease (`--lease-ttl 2s`) so that a dead worker's runs move on within
seconds. What was executed, by which process and how often, is read from the ledger the
example actions write (one line per call: action, idempotency key, effective, pid).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
from pathlib import Path

import pytest
from sagac.runtime.store import open_store

from .workers_support import (
    Worker,
    check_ledger,
    read_ledger,
    runs,
    saga_folder,
    sagac,
    submit,
    submit_many,
    wait_until,
)

TTL = ("--lease-ttl", "2s", "--poll", "200ms")


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return saga_folder(tmp_path / "shop")


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'journal.db'}"


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.jsonl"


def status_of(store: str, ledger: Path) -> dict[str, str]:
    return {r["run_id"]: r["status"] for r in runs(store, ledger)}


def test_submit_records_a_queued_run_and_a_worker_runs_it(
    shop: Path, store: str, ledger: Path, tmp_path: Path
) -> None:
    run_id = submit(store, shop / "ledger_checkout.yaml", {"order_id": "o-1"}, ledger)
    assert status_of(store, ledger) == {run_id: "queued"}
    assert read_ledger(ledger) == []  # submitting runs nothing
    w = Worker(store, tmp_path, ledger, *TTL, "--exit-when-idle")
    assert w.wait() == 0, w.log.read_text()
    assert status_of(store, ledger) == {run_id: "succeeded"}
    events = [x["event"] for x in w.lines() if x.get("run_id") == run_id]
    assert events == ["claimed", "started", "finished", "released"]
    (finished,) = w.events("finished", run_id)
    assert finished["status"] == "succeeded" and finished["saga"] == "ledger_checkout"
    assert {"at", "worker", "duration_ms"} <= finished.keys()
    assert [(e["action"], e["key"]) for e in read_ledger(ledger)] == [
        ("charge", "o-1-charge"),
        ("reserve", "o-1-reserve"),
        ("ship", "o-1-ship"),
    ]
    assert w.lines()[-1]["event"] == "worker_stopped"


def test_invalid_input_submits_nothing(shop: Path, store: str, ledger: Path) -> None:
    done = sagac("submit", str(shop / "ledger_checkout.yaml"), "--input", '{"order": 1}',
                 "--store", store, ledger=ledger)  # fmt: skip
    assert done.returncode == 4 and "order_id" in done.stderr and "Traceback" not in done.stderr
    memory = sagac("submit", str(shop / "ledger_checkout.yaml"), "--store", "memory",
                   ledger=ledger)  # fmt: skip
    assert memory.returncode == 64 and "memory" in memory.stderr


def test_the_worker_runs_the_submitted_definition_not_the_file(
    shop: Path, store: str, ledger: Path, tmp_path: Path
) -> None:
    saga = shop / "ledger_checkout.yaml"
    changed = submit(store, saga, {"order_id": "o-changed"}, ledger)
    # The YAML changes after the submit: the ship step is gone from the file.
    text = saga.read_text()
    saga.write_text(text[: text.index("  - id: ship")] + "output: {}\n")
    gone_file = shop / "gone.yaml"
    shutil.copy(shop / "slow.yaml", gone_file)
    gone = submit(store, gone_file, {"order_id": "o-gone", "seconds": 0}, ledger)
    gone_file.unlink()
    # A folder that no longer exists here: python actions import from --sagas.
    moved = saga_folder(tmp_path / "moved")
    elsewhere = submit(store, moved / "ledger_checkout.yaml", {"order_id": "o-moved"}, ledger)
    shutil.rmtree(moved)
    here = saga_folder(tmp_path / "here")
    w = Worker(store, tmp_path, ledger, *TTL, "--exit-when-idle", "--sagas", str(here))
    assert w.wait() == 0, w.log.read_text()
    assert status_of(store, ledger) == {changed: "succeeded", gone: "succeeded",
                                        elsewhere: "succeeded"}  # fmt: skip
    keys = {e["key"] for e in read_ledger(ledger)}
    assert "o-changed-ship" in keys  # the submitted definition, with its ship step
    assert {"o-gone-charge", "o-gone-slow", "o-gone-reserve"} <= keys
    assert {"o-moved-charge", "o-moved-ship"} <= keys
    # `sagac resume` of a run whose file is gone runs the stored definition too.
    again = saga_folder(tmp_path / "again") / "slow.yaml"
    queued = submit(store, again, {"order_id": "o-again", "seconds": 0}, ledger)
    again.unlink()
    done = sagac("resume", queued, "--store", store, ledger=ledger)
    assert done.returncode == 0, done.stderr
    assert status_of(store, ledger)[queued] == "succeeded"


def test_submit_with_an_idempotency_key(shop: Path, store: str, ledger: Path) -> None:
    saga = shop / "ledger_checkout.yaml"
    key = ("--idempotency-key", "k-1")
    first = sagac("submit", str(saga), "--input", '{"order_id": "o-1"}', "--store", store,
                  "--json", *key, ledger=ledger)  # fmt: skip
    again = sagac("submit", str(saga), "--input", '{"order_id": "o-1"}', "--store", store,
                  "--json", *key, ledger=ledger)  # fmt: skip
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    one, two = json.loads(first.stdout), json.loads(again.stdout)
    assert one["existing"] is False
    assert one["approval_token"] is None  # a saga without gates gets no token to keep safe
    assert two == {"run_id": one["run_id"], "existing": True, "approval_token": None}
    other = sagac("submit", str(saga), "--input", '{"order_id": "o-2"}', "--store", store,
                  *key, ledger=ledger)  # fmt: skip
    assert other.returncode == 64 and "IDEMPOTENCY_CONFLICT" in other.stderr
    assert len(runs(store, ledger)) == 1

    # A submitter that died after claiming its key left no run: a repeat creates it.
    async def claim() -> None:
        s = open_store(store)
        try:
            from sagac.runtime.resume import input_hash

            await s.claim_key("ledger_checkout", "k-2", "dead-submitter-run", input_hash({
                "order_id": "o-3"}))  # fmt: skip
        finally:
            await s.close()

    asyncio.run(claim())
    repeat = sagac("submit", str(saga), "--input", '{"order_id": "o-3"}', "--store", store,
                   "--idempotency-key", "k-2", ledger=ledger)  # fmt: skip
    assert repeat.returncode == 0, repeat.stderr
    assert repeat.stdout.strip() == "dead-submitter-run"
    assert status_of(store, ledger)["dead-submitter-run"] == "queued"


def test_three_workers_share_one_sqlite_file(
    shop: Path, store: str, ledger: Path, tmp_path: Path
) -> None:
    saga = shop / "ledger_checkout.yaml"
    inputs = [{"order_id": f"o-{i}", "fail": i % 3 == 2} for i in range(12)]
    ids = dict(zip(submit_many(store, saga, inputs), range(12), strict=True))
    workers = [
        Worker(store, tmp_path, ledger, *TTL, "--exit-when-idle", "--concurrency", "2")
        for _ in range(3)
    ]
    for w in workers:
        assert w.wait() == 0, w.log.read_text()
    final = status_of(store, ledger)
    for run_id, i in ids.items():
        assert final[run_id] == ("compensated" if i % 3 == 2 else "succeeded")
    entries = read_ledger(ledger)
    check_ledger(entries)
    for i in range(12):
        calls = [e["action"] for e in entries if e["key"].startswith(f"o-{i}-")]
        expected = ["charge", "reserve", "release", "refund"] if i % 3 == 2 else [
            "charge", "reserve", "ship"]  # fmt: skip
        assert calls == expected  # each once: nobody ran a run twice
    finishers = [x["run_id"] for w in workers for x in w.events("finished")]
    assert sorted(finishers) == sorted(ids)


def test_a_killed_workers_runs_are_finished_by_another_with_the_same_keys(
    shop: Path, store: str, ledger: Path, tmp_path: Path
) -> None:
    run_id = submit(store, shop / "ledger_checkout.yaml", {"order_id": "o-1"}, ledger)
    doomed = Worker(store, tmp_path, ledger, *TTL, SAGAC_TEST_KILL_IN="reserve")
    assert doomed.wait() == -signal.SIGKILL
    (killed,) = doomed.events("started")
    assert killed["run_id"] == run_id
    # Stuck: no live lease once its 2 s ran out, no worker alive.
    stuck_args = ("runs", "--status", "stuck", "--lease-ttl", "2s", "--store", store)

    def stuck_rows() -> list[dict[str, str]]:
        rows: list[dict[str, str]] = json.loads(sagac(*stuck_args, "--json", ledger=ledger).stdout)
        return rows

    stuck = wait_until(stuck_rows, what="a stuck run")
    assert [r["run_id"] for r in stuck] == [killed["run_id"]]
    doomed_id = doomed.events("worker_started")[0]["worker"]
    why = stuck[0]["why"]
    assert why.startswith("running, last event step_started ") and "s ago; lease of " in why
    assert f"lease of {doomed_id} (no longer alive) expired " in why and "0 workers alive" in why
    text = sagac(*stuck_args, ledger=ledger)
    assert killed["run_id"] in text.stdout and "0 workers alive" in text.stdout
    survivor = Worker(store, tmp_path, ledger, *TTL, "--exit-when-idle")
    assert survivor.wait() == 0, survivor.log.read_text()
    assert status_of(store, ledger) == {run_id: "succeeded"}
    assert [x["run_id"] for x in survivor.events("resumed")] == [run_id]
    entries = read_ledger(ledger)
    assert check_ledger(entries) == {"o-1": [str(doomed.pid), str(survivor.pid)]}
    assert [(e["action"], e["key"], e["effective"]) for e in entries] == [
        ("charge", "o-1-charge", True),
        ("reserve", "o-1-reserve", True),  # the killed worker's call: acted, never answered
        ("reserve", "o-1-reserve", False),  # re-sent with the same key
        ("ship", "o-1-ship", True),
    ]


def test_sigterm_lets_a_run_finish_within_the_grace_period(
    shop: Path, store: str, ledger: Path, tmp_path: Path
) -> None:
    run_id = submit(store, shop / "slow.yaml", {"order_id": "o-1", "seconds": 3}, ledger)
    w = Worker(store, tmp_path, ledger, *TTL)
    w.wait_for("started", run_id)
    wait_until(lambda: any(e["action"] == "slow" for e in read_ledger(ledger)), what="slow")
    w.signal(signal.SIGTERM)
    w.wait_for("worker_stopping")
    (me,) = json.loads(sagac("workers", "--store", store, "--json", ledger=ledger).stdout)
    assert me["state"] == "stopping" and me["held"] == [run_id]
    assert w.wait() == 0, w.log.read_text()
    assert status_of(store, ledger) == {run_id: "succeeded"}
    events = [x["event"] for x in w.lines()]
    assert events.index("worker_stopping") < events.index("finished")
    assert not w.events("claimed", None)[1:]  # it claimed nothing after the signal


def test_sigterm_after_the_grace_period_leaves_the_run_for_another_worker(
    shop: Path, store: str, ledger: Path, tmp_path: Path
) -> None:
    run_id = submit(store, shop / "slow.yaml", {"order_id": "o-1", "seconds": 30}, ledger)
    w = Worker(store, tmp_path, ledger, *TTL, "--grace", "300ms")
    w.wait_for("started", run_id)
    wait_until(lambda: any(e["action"] == "slow" for e in read_ledger(ledger)), what="slow")
    w.signal(signal.SIGTERM)
    assert w.wait() == 0, w.log.read_text()
    assert [x["event"] for x in w.lines() if x.get("run_id") == run_id][-2:] == [
        "interrupted", "released"]  # fmt: skip
    assert status_of(store, ledger) == {run_id: "interrupted"}
    listed = sagac("workers", "--store", store, "--json", ledger=ledger)
    assert json.loads(listed.stdout) == []  # it said goodbye
    # Another worker finishes it at once (no lease to wait for), the slow step re-sent.
    (shop / "fast").touch()
    w2 = Worker(store, tmp_path, ledger, *TTL, "--exit-when-idle")
    assert w2.wait(timeout=60) == 0
    assert status_of(store, ledger) == {run_id: "succeeded"}
    slow = [e for e in read_ledger(ledger) if e["action"] == "slow"]
    assert [(e["effective"], e["pid"]) for e in slow] == [(True, w.pid), (False, w2.pid)]
    check_ledger(read_ledger(ledger))


def test_a_second_signal_stops_the_worker_at_once(
    shop: Path, store: str, ledger: Path, tmp_path: Path
) -> None:
    run_id = submit(store, shop / "slow.yaml", {"order_id": "o-1", "seconds": 30}, ledger)
    w = Worker(store, tmp_path, ledger, *TTL)  # the default grace: 30 s
    w.wait_for("started", run_id)
    wait_until(lambda: any(e["action"] == "slow" for e in read_ledger(ledger)), what="slow")
    w.signal(signal.SIGINT)
    w.wait_for("worker_stopping")
    w.signal(signal.SIGINT)
    assert w.wait(timeout=10) == 130, w.log.read_text()
    assert status_of(store, ledger) == {run_id: "interrupted"}


def test_an_approval_timeout_fires_on_time_with_nobody_resuming(
    tmp_path: Path, store: str, ledger: Path
) -> None:
    from durable.durable_support import gated_saga

    saga = gated_saga(tmp_path, timeout="2s", on_timeout="reject")
    w = Worker(store, tmp_path, ledger, *TTL, "--poll", "30s")
    try:
        run_id = submit(store, saga, {"order_id": "o-1"}, ledger)
        w.wait_for("parked", run_id)
        show = json.loads(sagac("show", run_id, "--store", store, "--json", ledger=ledger).stdout)
        (gate,) = show["pending_approvals"]
        w.wait_for("finished", run_id, timeout=20)
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait() == 0
    show = json.loads(sagac("show", run_id, "--store", store, "--json", ledger=ledger).stdout)
    assert show["status"] == "compensated"
    (decided,) = [e for e in show["events"] if e["type"] == "approval_decided"]
    assert decided["code"] == "APPROVAL_REJECTED" and decided["timed_out"] is True
    late = _epoch(decided["at"]) - gate["deadline_epoch"]
    assert 0 <= late <= 1.0, f"the timeout fired {late:.3f} s after the deadline"
    assert [e["action"] for e in read_ledger(ledger)] == ["charge", "refund"]


def _epoch(at: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def test_a_decision_or_a_cancel_wakes_the_worker(tmp_path: Path, store: str, ledger: Path) -> None:
    from durable.durable_support import gated_saga
    from sagac.runtime.approvals import inject_decision

    saga = gated_saga(tmp_path, timeout="1h")
    # A poll of 30 s: only a wake-up can move the runs within the test's time.
    w = Worker(store, tmp_path, ledger, *TTL, "--poll", "30s")
    try:
        # A run of `sagac run` parks at the gate (its token printed); the worker leaves it.
        ran = sagac("run", str(saga), "--input", '{"order_id": "o-1"}', "--store", store,
                    "--json", ledger=ledger)  # fmt: skip
        assert ran.returncode == 3, ran.stderr
        report = json.loads(ran.stdout)
        approved, token = report["run_id"], report["waiting"][0]["token"]
        injected = submit(store, saga, {"order_id": "o-2"}, ledger)
        cancelled = submit(store, saga, {"order_id": "o-3"}, ledger)
        w.wait_for("parked", injected)
        w.wait_for("parked", cancelled)
        listed = json.loads(sagac("workers", "--store", store, "--json", ledger=ledger).stdout)
        assert [x["pid"] for x in listed] == [w.pid] and listed[0]["held"] == []
        began = time.monotonic()
        done = sagac("approve", approved, "--gate", "sign_off", "--as", "alice", "--token",
                     token, "--store", store, ledger=ledger)  # fmt: skip
        assert done.returncode == 0, done.stderr
        w.wait_for("finished", approved, timeout=10)

        async def inject() -> None:
            s = open_store(store)
            try:
                await inject_decision(s, injected, "sign_off", by="ci")
            finally:
                await s.close()

        asyncio.run(inject())
        w.wait_for("finished", injected, timeout=10)
        done = sagac("cancel", cancelled, "--store", store, "--reason", "changed mind",
                     ledger=ledger)  # fmt: skip
        assert done.returncode == 0, done.stderr
        w.wait_for("finished", cancelled, timeout=10)
        assert time.monotonic() - began < 20  # not the 30 s poll
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait() == 0
    assert status_of(store, ledger) == {
        approved: "succeeded", injected: "succeeded", cancelled: "compensated"}  # fmt: skip
    assert [x["event"] for x in w.lines() if x.get("run_id") == approved] == [
        "claimed", "resumed", "finished", "released"]  # fmt: skip


def test_workers_lists_a_live_worker_and_what_it_holds(
    shop: Path, store: str, ledger: Path, tmp_path: Path
) -> None:
    run_id = submit(store, shop / "slow.yaml", {"order_id": "o-1", "seconds": 30}, ledger)
    w = Worker(store, tmp_path, ledger, *TTL, "--concurrency", "3", "--grace", "0s")
    try:
        w.wait_for("started", run_id)
        listed = json.loads(sagac("workers", "--store", store, "--json", ledger=ledger).stdout)
        (me,) = listed
        assert me["pid"] == w.pid and me["state"] == "running" and me["concurrency"] == 3
        assert me["held"] == [run_id] and me["worker"] == w.events("worker_started")[0]["worker"]
        assert 0 <= me["heartbeat_age_s"] < 2
        text = sagac("workers", "--store", store, ledger=ledger).stdout
        assert run_id in text and str(w.pid) in text and "running" in text
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait() == 0
    assert sagac("workers", "--store", store, ledger=ledger).stderr.strip() == "no live workers"


def test_a_foreground_run_keeps_its_definition_too(
    tmp_path: Path, store: str, ledger: Path
) -> None:
    from durable.durable_support import gated_saga

    saga = gated_saga(tmp_path, timeout="1h")
    ran = sagac("run", str(saga), "--input", '{"order_id": "o-1"}', "--store", store, "--json",
                ledger=ledger)  # fmt: skip
    assert ran.returncode == 3, ran.stderr
    report = json.loads(ran.stdout)
    (gate,) = report["waiting"]
    saga.unlink()  # the file is gone: the decision and the resume use the stored definition
    done = sagac("approve", report["run_id"], "--gate", "sign_off", "--as", "alice", "--token",
                 gate["token"], "--resume", "--store", store, ledger=ledger)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert status_of(store, ledger) == {report["run_id"]: "succeeded"}
    assert [e["action"] for e in read_ledger(ledger)] == ["charge", "ship"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--lease-ttl", "0s"), "10ms or more"),
        (("--poll", "soon"), "not a duration"),
        (("--concurrency", "0"), "1 or more"),
        (("--store", "memory"), "keeps nothing between processes"),
        (("--store", "mysql://x"), "mysql"),
    ],
)
def test_worker_usage_errors_are_one_line_and_exit_64(
    args: tuple[str, ...], says: str, ledger: Path
) -> None:
    done = sagac("worker", *args, ledger=ledger)
    assert done.returncode == 64 and says in done.stderr and "Traceback" not in done.stderr
