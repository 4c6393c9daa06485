"""Helpers of the callback tests: the sagas' folder, the provider's log of calls, stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sagac.runtime.store.base import Store

HERE = Path(__file__).parent  # the sagas and their actions (`cb_provider.py`)
ROOT = HERE.parent.parent


def sagac(*args: str, stdin: str = "") -> Any:
    """`python -m sagac ARGS` in a real process; the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "sagac", *args],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def calls(folder: Path, action: str | None = None) -> list[dict[str, Any]]:
    """The provider's calls (`cb_provider._log`), oldest first, of one action or all."""
    log = folder / "calls.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    out = [json.loads(line) for line in lines]
    return [c for c in out if action is None or c["action"] == action]


def tokens(folder: Path) -> list[str]:
    """The callback tokens the provider was handed, in order."""
    return [c["token"] for c in calls(folder) if c.get("token")]


def open_store(kind: str, folder: Path) -> Store:
    if kind == "memory":
        from sagac.runtime.store.memory import MemoryStore

        return MemoryStore()
    from sagac.runtime.store.sqlite import SqliteStore

    return SqliteStore(folder / "journal.db")
