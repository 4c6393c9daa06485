"""User migration: copy users to a new store, undo a copy, and switch reads over.

A user whose id contains "locked" is locked by another process (USER_LOCKED), so an input with
such a user makes some items of the batch fail.
"""

from __future__ import annotations

from typing import Any

from sagac import StepError

from . import make_id, record


def prepare_target(migration_id: str, target: str, context: Any = None) -> dict[str, Any]:
    """Create the target store for this migration."""
    record("users.prepare_target", context, migration_id=migration_id, target=target)
    return {"target": f"{target}__{migration_id}", "schema_version": 2}


def drop_target(target: str, context: Any = None) -> dict[str, Any]:
    """Drop a target store created by `prepare_target`."""
    record("users.drop_target", context, target=target)
    return {"target": target, "dropped": True}


def migrate(user_id: str, email: str, target: str, context: Any = None) -> dict[str, Any]:
    """Copy one user into the target store."""
    if "locked" in user_id:
        raise StepError("USER_LOCKED", f"user {user_id} is locked by another process")
    record("users.migrate", context, user_id=user_id, email=email, target=target)
    return {"user_id": user_id, "row_id": make_id("row", target, user_id)}


def unmigrate(user_id: str, target: str, context: Any = None) -> dict[str, Any]:
    """Remove one user's copy from the target store."""
    record("users.unmigrate", context, user_id=user_id, target=target)
    return {"user_id": user_id, "removed": True}


def switch_reads(target: str, migrated: int, context: Any = None) -> dict[str, Any]:
    """Point every reader at the target store. Readers start writing there at once, so this
    cannot be undone by the saga."""
    record("users.switch_reads", context, target=target, migrated=migrated)
    return {"target": target, "migrated": migrated, "live": True}
