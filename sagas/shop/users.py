"""User migration: copy users to a new store, undo a copy, and switch reads over.

A user whose id contains "locked" is locked by another process (USER_LOCKED), so an input with
such a user makes some items of the batch fail.

Like a real API, every action dedupes by idempotency key: a call whose key was already applied
does nothing new and returns the same result (the ledger gets a line with `replayed: true`), so
an item that a resumed run calls again, because its completion was not journaled before a
crash, is applied once. The keys applied are read back from the demo ledger (SAGAC_DEMO_LEDGER)
once per process, as a server would keep them across its clients' crashes.

For demonstrations only: with SAGAC_DEMO_CRASH_AT=<user id>, `migrate` kills its own process
(SIGKILL) right after copying that user, before the runtime can journal it: the worst moment.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

from sagac import StepError

from . import LEDGER_ENV, idempotency_key, make_id, record

CRASH_ENV = "SAGAC_DEMO_CRASH_AT"
_lock = threading.Lock()
_applied: dict[str, set[tuple[str, str]]] = {}  # ledger path -> (action, key) applied


def _first_time(action: str, context: Any) -> bool:
    """Whether this (action, idempotency key) has not been applied yet; marks it applied."""
    key = idempotency_key(context)
    if key is None:
        return True
    path = os.environ.get(LEDGER_ENV) or ""
    with _lock:
        seen = _applied.get(path)
        if seen is None:
            seen = _applied[path] = _read_ledger(path)
        if (action, key) in seen:
            return False
        seen.add((action, key))
        return True


def _read_ledger(path: str) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    if not path or not os.path.exists(path):
        return seen
    with open(path, encoding="utf-8") as ledger:
        for line in ledger:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: that call did not complete
            if entry.get("key") is not None:
                seen.add((entry["action"], entry["key"]))
    return seen


def _call(action: str, context: Any, **args: Any) -> None:
    """Record one call: applied, or a replay of a key already applied."""
    if _first_time(action, context):
        record(action, context, **args)
    else:
        record(action, context, replayed=True, **args)


def prepare_target(migration_id: str, target: str, context: Any = None) -> dict[str, Any]:
    """Create the target store for this migration."""
    _call("users.prepare_target", context, migration_id=migration_id, target=target)
    return {"target": f"{target}__{migration_id}", "schema_version": 2}


def drop_target(target: str, context: Any = None) -> dict[str, Any]:
    """Drop a target store created by `prepare_target`."""
    _call("users.drop_target", context, target=target)
    return {"target": target, "dropped": True}


async def migrate(user_id: str, email: str, target: str, context: Any = None) -> dict[str, Any]:
    """Copy one user into the target store (async, as a real client would be: a batch of
    50,000 calls must not pay for a thread each; the ledger line is one short write)."""
    if "locked" in user_id:
        raise StepError("USER_LOCKED", f"user {user_id} is locked by another process")
    _call("users.migrate", context, user_id=user_id, email=email, target=target)
    if os.environ.get(CRASH_ENV) == user_id:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"user_id": user_id, "row_id": make_id("row", target, user_id)}


async def unmigrate(user_id: str, target: str, context: Any = None) -> dict[str, Any]:
    """Remove one user's copy from the target store."""
    _call("users.unmigrate", context, user_id=user_id, target=target)
    return {"user_id": user_id, "removed": True}


def switch_reads(target: str, migrated: int, context: Any = None) -> dict[str, Any]:
    """Point every reader at the target store. Readers start writing there at once, so this
    cannot be undone by the saga."""
    _call("users.switch_reads", context, target=target, migrated=migrated)
    return {"target": target, "migrated": migrated, "live": True}
