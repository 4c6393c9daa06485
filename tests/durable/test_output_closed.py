"""A closed stdout or stderr never ends a run: the run goes on, its output is dropped, and the
exit code is the run's own (issue 10, item 1).

Each test starts a real `sagac run` whose stdout and/or stderr pipe is closed by the reader
before the first line is written (`sagac run SAGA 2>&1 | head -1`, or a terminal that went
away), then reads the journal with `sagac runs --json`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .durable_support import ROOT

SAGA = """\
saga: piped
actions:
  work: {mock: {delay: 50ms, result: {ok: true}}}
  undo: {mock: {result: {}}}
  last: {mock: {delay: 50ms, result: {done: true}}}
steps:
  - id: a
    action: work
    compensate: {action: undo}
  - id: b
    action: work
    after: [a]
    compensate: {action: undo}
  - id: c
    action: last
    after: [b]
"""


def run_with_closed(
    saga: Path, db: Path, closed: str, *extra: str, pass_fds: tuple[int, ...] = ()
) -> int:
    """`sagac run` with the named pipes closed by their reader at once; its exit code."""
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagac", "run", str(saga), "--store", f"sqlite:///{db}", *extra],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
        text=True,
        pass_fds=pass_fds,
        **pipes,  # type: ignore[call-overload]
    )
    assert proc.stdout is not None and proc.stderr is not None
    kept = []
    for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        if name in closed:
            stream.close()  # the reader is gone before the first write
        else:
            kept.append(stream)
    for stream in kept:
        stream.read()
    return proc.wait(timeout=60)


def only_run(db: Path) -> dict[str, object]:
    """The one run in the journal (read with `sagac runs` in this process: the CLI's own view)."""
    from sagac.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["runs", "--json", "--store", f"sqlite:///{db}"]) == 0
    rows = json.loads(out.getvalue())
    assert len(rows) == 1
    row: dict[str, object] = rows[0]
    return row


@pytest.mark.parametrize(
    ("closed", "fail", "status", "code"),
    [
        ("stderr", None, "succeeded", 0),
        ("stderr", "c", "compensated", 1),
        ("stdout", "c", "compensated", 1),
        ("stdout+stderr", "c", "compensated", 1),
    ],
)
def test_a_closed_output_pipe_never_ends_the_run(
    tmp_path: Path, closed: str, fail: str | None, status: str, code: int
) -> None:
    saga = tmp_path / "piped.yaml"
    saga.write_text(SAGA)
    db = tmp_path / "journal.db"
    extra = ["--fail", fail] if fail else []
    assert run_with_closed(saga, db, closed, *extra) == code
    assert only_run(db)["status"] == status


def test_a_closed_events_pipe_never_ends_the_run(tmp_path: Path) -> None:
    """`--events` into a pipe whose reader left: the events are dropped, the run ends."""
    saga = tmp_path / "piped.yaml"
    saga.write_text(SAGA)
    db = tmp_path / "journal.db"
    read, write = os.pipe()
    os.close(read)
    try:
        code = run_with_closed(saga, db, "", "--events", f"/dev/fd/{write}", pass_fds=(write,))
    finally:
        os.close(write)
    assert code == 0
    assert only_run(db)["status"] == "succeeded"
