"""The CLI's edges (issue 10, item 18), each through the real `sagac` in a subprocess: output
streams with --json, --events on the commands that continue runs, output files that cannot be
written, argument checks of the inspection commands, read-only and not-a-journal stores, events
of another saga, a journal write failing mid-run, and what RUN_BUSY says."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sagac.runtime.api import arun
from sagac.runtime.store.sqlite import SqliteStore

from .durable_support import ROOT, SAGAS, gated_saga, read_ledger, sagac

TOKEN = re.compile(r"--token (\S+) --resume")
RUN_ID = re.compile(r"run (\w+) waits for approval")
MOCKS = "saga: tiny\nactions:\n  m: {mock: {result: {ok: true}}}\nsteps:\n  - {id: a, action: m}\n"


def waiting_run(folder: Path, order: str) -> tuple[str, str, str, dict[str, str]]:
    """A run of the gated saga stopped at its gate, in a journal in `folder` (made): (store
    URL, run id, token, env)."""
    folder.mkdir(exist_ok=True)
    saga, env = gated_saga(folder), {"SAGAC_TEST_LEDGER": str(folder / "l.jsonl")}
    store = f"sqlite:///{folder / 'j.db'}"
    data = json.dumps({"order_id": order})
    ran = sagac("run", str(saga), "--input", data, "--store", store, env=env)
    assert ran.returncode == 3, ran.stderr
    token, run_id = TOKEN.search(ran.stderr), RUN_ID.search(ran.stderr)
    assert token is not None and run_id is not None
    return store, run_id.group(1), token.group(1), env


def journal_with_a_run(folder: Path) -> tuple[Path, str]:
    """A real journal holding one finished run (written through the API: quicker than a CLI
    process, and the same file)."""
    db, saga = folder / "j.db", folder / "tiny.yaml"
    saga.write_text(MOCKS)

    async def go() -> str:
        store = SqliteStore(db)
        try:
            return (await arun(saga, {}, store=store)).run_id
        finally:
            await store.close()

    return db, asyncio.run(go())


def seqs(path: Path) -> list[int]:
    return [json.loads(line)["seq"] for line in path.read_text().splitlines()]


# -- --json: stdout is the JSON alone ------------------------------------------------------


def test_approve_and_reject_with_json_print_only_json(tmp_path: Path) -> None:
    store, run_id, token, env = waiting_run(tmp_path, "j1")
    gate = ("--gate", "sign_off", "--as", "alice", "--token", token, "--store", store)
    approved = sagac("approve", run_id, *gate, "--json", env=env)
    assert approved.returncode == 0, approved.stderr
    decision = json.loads(approved.stdout)  # the decision: nothing before it
    assert decision["run_id"] == run_id and decision["decision"]["approved"] is True
    assert "approved: gate sign_off" in approved.stderr

    store2, run2, token2, env2 = waiting_run(tmp_path / "second", "j2")
    rejected = sagac(
        "reject", run2, "--gate", "sign_off", "--as", "alice", "--token", token2,
        "--reason", "no", "--resume", "--json", "--store", store2, env=env2,
    )  # fmt: skip
    assert rejected.returncode == 1, rejected.stderr
    report = json.loads(rejected.stdout)  # the report: nothing before it
    assert report["run_id"] == run2 and report["status"] == "compensated"
    assert "rejected: gate sign_off" in rejected.stderr


# -- --events on resume and approve ----------------------------------------------------------


def test_resume_and_approve_write_events(tmp_path: Path) -> None:
    store, run_id, token, env = waiting_run(tmp_path, "e1")
    gate = ("--gate", "sign_off", "--as", "alice", "--token", token, "--store", store)
    decided = sagac("approve", run_id, *gate, env=env)
    assert decided.returncode == 0, decided.stderr
    resumed_events = tmp_path / "resume.jsonl"
    resumed = sagac("resume", run_id, "--store", store, "--events", str(resumed_events), env=env)
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed_events.read_text().splitlines()]
    assert events[-1]["type"] == "saga_completed" and events[-1]["run_id"] == run_id
    assert seqs(resumed_events) == sorted(set(seqs(resumed_events)))  # in seq order

    store2, run2, token2, env2 = waiting_run(tmp_path / "second", "e2")
    approve_events = tmp_path / "approve.jsonl"
    approved = sagac(
        "approve", run2, "--gate", "sign_off", "--as", "alice", "--token", token2,
        "--resume", "--events", str(approve_events), "--store", store2, env=env2,
    )  # fmt: skip
    assert approved.returncode == 0, approved.stderr
    types = [json.loads(line)["type"] for line in approve_events.read_text().splitlines()]
    assert "step_completed" in types and types[-1] == "saga_completed"
    nothing = sagac("resume", "--all", "--json", "--store", store2, env=env2)
    assert nothing.returncode == 0 and json.loads(nothing.stdout) == []  # JSON even when empty


# -- output files -------------------------------------------------------------------------


def test_a_diagram_that_cannot_be_written_exits_73_and_keeps_the_old_file(tmp_path: Path) -> None:
    missing = sagac("diagram", "sagas/checkout.yaml", "-o", "/nonexistent/x.svg")
    assert missing.returncode == 73, missing.stderr
    assert "error[CANNOT_WRITE]" in missing.stderr and "/nonexistent/x.svg" in missing.stderr
    assert "Traceback" not in missing.stderr

    # A write that fails half-way (files limited to 64 bytes, as a full disk would): the
    # previous diagram is still there, whole, and no temporary file is left beside it.
    out = tmp_path / "d.mmd"
    out.write_text("the previous diagram\n")

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.RLIM_INFINITY))

    cut = subprocess.run(
        [sys.executable, "-m", "sagac", "diagram", "sagas/checkout.yaml", "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=small_files,
    )
    assert cut.returncode == 73, cut.stderr
    assert "Traceback" not in cut.stderr
    assert out.read_text() == "the previous diagram\n"
    assert [p.name for p in tmp_path.iterdir()] == ["d.mmd"]


def test_report_into_a_folder_and_to_a_path_that_cannot_be_written(tmp_path: Path) -> None:
    db, run_id = journal_with_a_run(tmp_path)
    store = f"sqlite:///{db}"
    folder = tmp_path / "reports"
    folder.mkdir()
    into = sagac("report", run_id, "--store", store, "-o", str(folder))
    assert into.returncode == 0, into.stderr
    assert (folder / f"sagac-report-{run_id}.html").read_text().startswith("<!")
    bad = sagac("report", run_id, "--store", store, "-o", "/nonexistent/r.html")
    assert bad.returncode == 73 and "error[CANNOT_WRITE]" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


def test_events_file_that_cannot_be_written_exits_73_before_running(tmp_path: Path) -> None:
    saga = tmp_path / "tiny.yaml"
    saga.write_text(MOCKS)
    r = sagac("run", str(saga), "--store", "memory", "--events", "/nonexistent/e.jsonl")
    assert r.returncode == 73 and "error[CANNOT_WRITE]" in r.stderr, r.stderr
    assert "▶" not in r.stderr  # nothing ran


# -- inspection: arguments, stores, journals --------------------------------------------------


def test_audit_of_an_unknown_run_is_an_error(tmp_path: Path) -> None:
    db, _ = journal_with_a_run(tmp_path)
    r = sagac("audit", "no-such-run", "--store", f"sqlite:///{db}")
    assert r.returncode == 64 and "error[RUN_NOT_FOUND]" in r.stderr, r.stderr
    assert "no-such-run" in r.stderr


def test_runs_refuses_a_limit_below_one_and_an_unknown_status(tmp_path: Path) -> None:
    db, _ = journal_with_a_run(tmp_path)
    store = f"sqlite:///{db}"
    for limit in ("-5", "0", "many"):
        r = sagac("runs", "--limit", limit, "--store", store)
        assert r.returncode == 64 and "--limit" in r.stderr, (limit, r.stderr)
        assert "1 or more" in r.stderr and r.stdout == ""
    r = sagac("runs", "--status", "bogus", "--store", store)
    assert r.returncode == 64 and "--status 'bogus'" in r.stderr, r.stderr
    first_line = r.stderr.splitlines()[0]  # one line: the flag and every valid value
    for status in ("running", "interrupted", "waiting_approval", "succeeded", "compensated"):
        assert status in first_line
    # A status the runtime writes (a run a signal stopped) is one a person can filter on.
    r = sagac("runs", "--status", "interrupted", "--store", store)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Any]:
    """Makes a folder and its files read-only, for root too (`chattr +i`); undone after."""
    made: list[Path] = []

    def make(folder: Path) -> None:
        for path in [*folder.iterdir(), folder]:
            path.chmod(0o555 if path.is_dir() else 0o444)
            if os.geteuid() == 0:
                if shutil.which("chattr") is None:
                    pytest.skip("root ignores file modes and there is no chattr")
                if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
                    pytest.skip("root ignores file modes and chattr +i failed here")
            made.append(path)

    yield make
    for path in reversed(made):
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_read_only_journal_can_be_inspected(tmp_path: Path, read_only: Any) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db, run_id = journal_with_a_run(folder)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    read_only(folder)
    store = f"sqlite:///{db}"
    for args in (("runs",), ("show", run_id), ("events", run_id), ("audit", run_id)):
        r = sagac(*args, "--store", store)
        assert r.returncode == 0, (args, r.stderr)
        assert "readonly" not in r.stderr and "unable to open" not in r.stderr
    listed = sagac("runs", "--json", "--store", store)
    assert [row["run_id"] for row in json.loads(listed.stdout)] == [run_id]
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert after == before


def test_inspection_never_creates_or_changes_a_journal(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    r = sagac("runs", "--store", f"sqlite:///{empty}")
    assert r.returncode == 70 and "not a sagac journal" in r.stderr, r.stderr
    assert empty.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    existed = Path("/dev/null-journal").exists()
    saga = tmp_path / "tiny.yaml"
    saga.write_text(MOCKS)
    for args in (("runs",), ("run", str(saga))):
        r = sagac(*args, "--store", "sqlite:////dev/null")
        assert r.returncode == 64 and "/dev/null is not a regular file" in r.stderr, r.stderr
    if not existed:
        assert not Path("/dev/null-journal").exists()


def test_inspection_names_an_unknown_store(tmp_path: Path) -> None:
    for command in (("runs",), ("show", "r")):
        r = sagac(*command, "--store", "mongodb://db/x")
        assert r.returncode == 64 and "unknown store 'mongodb://db/x'" in r.stderr, r.stderr
    r = sagac("runs", "--store", "memory")
    assert r.returncode == 64 and "keeps nothing between processes" in r.stderr


# -- diagram --events of another saga ----------------------------------------------------------


def test_diagram_refuses_events_of_another_saga(tmp_path: Path) -> None:
    events = tmp_path / "tiny.jsonl"
    saga = tmp_path / "tiny.yaml"
    saga.write_text(MOCKS)
    ran = sagac("run", str(saga), "--store", "memory", "--events", str(events))
    assert ran.returncode == 0, ran.stderr
    other = sagac("diagram", "sagas/checkout.yaml", "--events", str(events))
    assert other.returncode == 64, other.stderr
    assert "saga 'tiny', not 'checkout'" in other.stderr and other.stdout == ""
    own = sagac("diagram", str(saga), "--events", str(events))
    assert own.returncode == 0 and "flowchart TD" in own.stdout, own.stderr
    # A hand-edited file: a BOM, and events whose `step` is not a name (no traceback).
    lines = events.read_text().splitlines()
    odd = tmp_path / "odd.jsonl"
    odd.write_text("\ufeff" + "\n".join([*lines, '{"type": "x", "step": 5}', '{"step": ["a"]}']))
    drawn = sagac("diagram", str(saga), "--events", str(odd))
    assert drawn.returncode == 0 and "flowchart TD" in drawn.stdout, drawn.stderr


# -- a journal write that fails mid-run ------------------------------------------------------

FILLS_DISK = '''
import os, resource

def fill(marker):
    """The first time: from now on this process can write no file beyond one byte (as when
    the disk is full); the journal's next commit fails."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
    return {"ok": True}
'''


def test_a_journal_write_failure_mid_run_names_the_run_and_the_resume(tmp_path: Path) -> None:
    (tmp_path / "disk.py").write_text(FILLS_DISK)
    saga = tmp_path / "full.yaml"
    saga.write_text(
        "saga: full\nactions:\n  fill: {python: 'disk:fill'}\n  m: {mock: {result: {}}}\n"
        f"steps:\n  - {{id: a, action: m}}\n  - {{id: b, action: fill, with: {{marker: "
        f"'{tmp_path / 'marker'}'}}}}\n  - {{id: c, action: m}}\n"
    )
    store = f"sqlite:///{tmp_path / 'j.db'}"
    failed = sagac("run", str(saga), "--store", store)
    assert failed.returncode == 70, failed.stderr
    assert "error[STORE_ERROR]" in failed.stderr and "Traceback" not in failed.stderr
    run_id = json.loads(sagac("runs", "--json", "--store", store).stdout)[0]["run_id"]
    hint = f"sagac resume {run_id} --store {store}"
    assert f"run {run_id} stopped" in failed.stderr and hint in failed.stderr
    resumed = sagac(*hint.split()[1:], "--json")  # the hint, as printed
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"


# -- RUN_BUSY -------------------------------------------------------------------------------


def test_run_busy_for_a_run_in_its_first_process_does_not_say_resumed(tmp_path: Path) -> None:
    shutil.copy(SAGAS / "ledger_shop.py", tmp_path / "ledger_shop.py")
    saga = tmp_path / "slow.yaml"
    saga.write_text(
        "saga: slow\nactions:\n  slow: {python: 'ledger_shop:slow'}\nsteps:\n"
        "  - {id: wait, action: slow, with: {order_id: s1, seconds: 30}}\n"
    )
    ledger, store = tmp_path / "l.jsonl", f"sqlite:///{tmp_path / 'j.db'}"
    env = {**os.environ, "SAGAC_TEST_LEDGER": str(ledger), "NO_COLOR": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "sagac", "run", str(saga), "--store", store],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not read_ledger(ledger):  # in its step
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        run_id = json.loads(sagac("runs", "--json", "--store", store).stdout)[0]["run_id"]
        busy = sagac("resume", run_id, "--store", store, env={"SAGAC_TEST_LEDGER": str(ledger)})
        assert busy.returncode == 75 and "error[RUN_BUSY]" in busy.stderr, busy.stderr
        assert "resumed" not in busy.stderr
        assert f"run {run_id} is in progress in another process" in busy.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
