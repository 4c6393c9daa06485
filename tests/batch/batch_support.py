"""Helpers for batch tests: instrumented actions, generated inputs, the crash driver, the ledger.

(Not `conftest`: each test folder has one, and `from conftest import` finds the wrong one.)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

from sagac.compiler.plan import Plan

import sagac

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXAMPLE = ROOT / "sagas" / "user_migration.yaml"

# An instrumented action module: every call records (event, n, monotonic time, in flight).
ACTIONS = """
import asyncio, time
from sagac import StepError
LOG = []
IN_FLIGHT = [0, 0]
FAIL = set()
FLAKY = {}
SLOW = set()

async def item(n, context=None):
    IN_FLIGHT[0] += 1
    IN_FLIGHT[1] = max(IN_FLIGHT[1], IN_FLIGHT[0])
    LOG.append(("start", n, time.monotonic(), context.idempotency_key, context.attempt))
    try:
        await asyncio.sleep(0)
        if n in SLOW:
            await asyncio.sleep(PAUSE)
        if FLAKY.get(n, 0) > 0:
            FLAKY[n] -= 1
            raise StepError("UNAVAILABLE", f"item {n} is busy")
        if n in FAIL:
            raise StepError("LOCKED", f"item {n} is locked")
    finally:
        IN_FLIGHT[0] -= 1
        LOG.append(("end", n, time.monotonic(), None, None))
    return {"n": n, "row": f"row-{n}", "noise": "x" * 20}

async def unitem(n, row=None):
    LOG.append(("undo", n, time.monotonic(), row, None))
    return {}

PAUSE = 0.05
"""


def foreach_saga(
    items: str = "{{ input.items }}",
    *,
    batch: str = "{size: 100, concurrency: 10}",
    on_error: str = "stop",
    checkpoint: str | None = "n-{{ it }}",
    compensate: str | None = "{action: unitem, with: {n: '{{ it }}'}}",
    extra: str = "",
) -> str:
    lines = [
        "saga: batch_test",
        "actions:",
        '  item: {python: "MOD:item"}',
        '  unitem: {python: "MOD:unitem"}',
        "steps:",
        "  - foreach:",
        "      id: each",
        f'      items: "{items}"',
        "      as: it",
        "      action: item",
        "      with: {n: '{{ it }}'}",
        "      errors: [LOCKED]",
        f"      batch: {batch}",
        f"      on_error: {on_error}",
    ]
    if checkpoint is not None:
        lines.append(f'      checkpoint: "{checkpoint}"')
    if compensate is not None:
        lines.append(f"      compensate: {compensate}")
    lines.extend(textwrap.indent(textwrap.dedent(extra), "      ").splitlines())
    return "\n".join(lines) + "\n"


def make_plan(tmp_path: Path, saga_yaml: str) -> tuple[Plan, Any]:
    """Write the actions as a uniquely named module and the saga beside it; (plan, module)."""
    name = f"batch_acts_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(ACTIONS)
    path = tmp_path / f"{name}.yaml"
    path.write_text(saga_yaml.replace("MOD", name))
    plan = sagac.load(path)
    if str(tmp_path) not in sys.path:
        sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    return plan, importlib.import_module(name)


def calls(mod: Any, kind: str = "start") -> list[int]:
    return [entry[1] for entry in mod.LOG if entry[0] == kind]


def completed_in_journal(events: list[dict[str, Any]], step: str = "each") -> list[Any]:
    """Item indexes in the order the journal recorded their completion."""
    return [
        i
        for e in events
        if e["type"] == "batch_progress" and e["step"] == step
        for i in e.get("completed", ())
    ]


def users_input(n: int, *, locked: int | None = None, migration: str = "m-test") -> dict[str, Any]:
    users = [{"id": f"u_{i:06d}", "email": f"u{i}@example.com"} for i in range(n)]
    if locked is not None:
        users[locked]["id"] = f"u_locked_{locked:06d}"
    return {"migration_id": migration, "target": "users_v2", "users": users}


def drive(
    cmd: dict[str, Any], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run driver.py (the Python API on the SQLite store) in a real process."""
    return subprocess.run(
        [sys.executable, str(HERE / "driver.py"), json.dumps(cmd)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def sagac_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagac", *args],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line cut short by SIGKILL
            out.append(json.loads(line))
    return out


def effective(ledger: list[dict[str, Any]], action: str) -> list[str]:
    """Users an action really applied (replays of a key already applied left out), in order."""
    return [
        e["args"]["user_id"]
        for e in ledger
        if e["action"] == action and not e["args"].get("replayed")
    ]


def journal(db: Path, run_id: str) -> list[dict[str, Any]]:
    from sagac.runtime.store.sqlite import SqliteStore

    async def go() -> list[dict[str, Any]]:
        store = SqliteStore(db)
        try:
            return await store.load_events(run_id)
        finally:
            await store.close()

    return asyncio.run(go())
