"""Helpers for durability tests: paths, the CLI as a real subprocess, the fork server (driver.py)
for crashing runs with SIGKILL, and the ledger reader. (Not `conftest`: test folders each have
one, and `from conftest import` would find the wrong one.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SAGAS = HERE / "sagas"
LEDGER_SAGA = SAGAS / "ledger_checkout.yaml"


def sagac(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, stdin: str = "") -> Any:
    """Run `python -m sagac ARGS` in a real process; returns the CompletedProcess."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sagac", *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Driver:
    """The fork server: `run(**cmd)` forks a child that runs one command."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "driver.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def run(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the driver died"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
