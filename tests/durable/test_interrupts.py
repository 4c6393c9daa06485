"""Signals and process groups (issue 10, item 8).

SIGTERM and SIGINT stop a real `sagac run` cleanly: the command it was running (and that
command's own child) is ended, the run is journaled `interrupted` with a printed resume hint, the
exit code is 128 + the signal, and `sagac resume` finishes it. After a SIGKILL of sagac, the
command's process group goes on; the resume ends it before it runs the step again. And a
process group id that now belongs to someone else is never signalled.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .durable_support import ROOT, sagac

# The command: records "its pid, its child's pid" on a line, then waits (unless `fast` exists);
# it reports which pids of earlier lines were still alive when it started.
TOOL = """\
import json, os, subprocess, sys, time
from pathlib import Path
here = Path(sys.argv[1])
def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
pids = here / "pids"
earlier = [int(p) for p in pids.read_text().split()] if pids.exists() else []
child = subprocess.Popen(["sleep", "60"])
with open(pids, "a") as f:
    f.write(f"{os.getpid()} {child.pid}\\n")
if not (here / "fast").exists():
    time.sleep(60)
child.kill()
print(json.dumps({"alive_before": [p for p in earlier if alive(p)]}))
"""

# `first` completes, leaving a process in the background (in its group): never ended.
SAGA = """\
saga: stoppable
actions:
  tool: {{command: ["{python}", "{tool}", "{here}"]}}
  quick: {{command: ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $! > {here}/bg; echo {{}}"]}}
steps:
  - {{id: first, action: quick}}
  - {{id: work, action: tool, after: [first]}}
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_for(predicate: Any, seconds: float = 60) -> None:
    until = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < until, "timed out"
        time.sleep(0.05)


def setup(tmp_path: Path) -> tuple[Path, str]:
    tool = tmp_path / "tool.py"
    tool.write_text(TOOL)
    saga = tmp_path / "stoppable.yaml"
    saga.write_text(SAGA.format(python=sys.executable, tool=tool, here=tmp_path))
    return saga, f"sqlite:///{tmp_path / 'journal.db'}"


@pytest.fixture(autouse=True)
def _background(tmp_path: Path) -> Any:
    """`first`'s background process: alive after the test (it was never the run's to end),
    then stopped."""
    yield
    bg = tmp_path / "bg"
    if bg.exists():
        pid = int(bg.read_text())
        assert alive(pid)
        os.kill(pid, signal.SIGKILL)


def start(saga: Path, store: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sagac", "run", str(saga), "--store", store],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def started_pids(tmp_path: Path) -> list[int]:
    """Wait for the command's first line; its pid and its child's."""
    pids = tmp_path / "pids"
    wait_for(lambda: pids.exists() and pids.read_text().endswith("\n"))
    return [int(p) for p in pids.read_text().split()]


def run_row(store: str) -> dict[str, Any]:
    out = sagac("runs", "--json", "--store", store)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


def journal(store: str, run_id: str) -> list[dict[str, Any]]:
    out = sagac("events", run_id, "--json", "--store", store)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_cleanly_and_leaves_it_resumable(
    tmp_path: Path, sig: int, code: int
) -> None:
    saga, store = setup(tmp_path)
    proc = start(saga, store)
    pids = started_pids(tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    for pid in pids:  # the command and its own child: ended, not left running
        assert not alive(pid)
    row = run_row(store)
    assert row["status"] == "interrupted"
    assert f"sagac resume {row['run_id']}" in err
    types = [e["type"] for e in journal(store, row["run_id"])]
    assert types[-1] == "saga_interrupted" and "step_completed" in types  # `first` kept
    (tmp_path / "fast").touch()
    out = sagac("resume", row["run_id"], "--store", store, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "succeeded"


def test_a_resume_after_sigkill_ends_the_group_left_behind_first(tmp_path: Path) -> None:
    saga, store = setup(tmp_path)
    proc = start(saga, store)
    pids = started_pids(tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    assert all(alive(pid) for pid in pids)  # nothing stopped them: sagac died at once
    row = run_row(store)
    assert row["status"] == "running"
    (tmp_path / "fast").touch()
    out = sagac("resume", row["run_id"], "--store", store, "--json")
    assert out.returncode == 0, out.stderr
    assert not any(alive(pid) for pid in pids)
    events = journal(store, row["run_id"])
    work = [e for e in events if e["type"] == "step_completed" and e["step"] == "work"]
    assert work[0]["result"] == {"alive_before": []}  # ended before the step ran again
    resumed = next(e for e in events if e["type"] == "saga_resumed")
    assert resumed["ended_processes"] == [
        {"step": "work", "attempt": 1, "pgid": pids[0], "pids": sorted(pids)}
    ]


def test_a_group_id_that_belongs_to_another_process_is_never_signalled() -> None:
    """Records name live groups that are not the run's (their leader started later than the
    recorded one, or nothing in them carries the run's id): nothing is signalled. The one
    record that is the run's own group is ended."""
    from sagac.runtime.processes import end_orphans, identity

    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAC_")}
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True, env=env)
    other_run = subprocess.Popen(
        ["sleep", "60"], start_new_session=True, env={**env, "SAGAC_RUN_ID": "other"}
    )
    ours = subprocess.Popen(
        ["sh", "-c", "sleep 60 & wait"],
        start_new_session=True,
        env={**env, "SAGAC_RUN_ID": "r1"},
    )
    try:
        wait_for(lambda: len(_group(ours.pid)) == 2, 10)
        members = _group(ours.pid)
        reused = identity(stranger.pid)
        earlier = {**reused, "start": reused["start"] - 1}  # a leader that has since exited
        records = [
            {"step": "a", "attempt": 1, **earlier},  # the id reused by a stranger
            {"step": "b", "attempt": 1, **identity(other_run.pid), "start": None},
            {"step": "c", "attempt": 1, **identity(ours.pid)},
            {"step": "d", "attempt": 1, **identity(stranger.pid), "host": "elsewhere"},
        ]
        assert records[2]["host"] == socket.gethostname()
        ended = asyncio.run(end_orphans("r1", records))
        assert [e["step"] for e in ended] == ["c"]
        assert ended[0]["pids"] == sorted(members)
        ours.wait(timeout=10)
        assert stranger.poll() is None and other_run.poll() is None
    finally:
        for p in (stranger, other_run, ours):
            p.kill()
            p.wait()


def _group(pgid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                out.append(int(name))
    return out
