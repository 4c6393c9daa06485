"""Journal stores: the `Store` interface and its implementations, chosen by name."""

from __future__ import annotations

from sagac.compiler.errors import UsageError

from .base import Event, RunRecord, Store
from .memory import MemoryStore

STORES = ("memory",)


def open_store(name: str) -> Store:
    """The store called `name` (`memory`; more kinds register here)."""
    if name == "memory":
        return MemoryStore()
    raise UsageError(f"unknown store {name!r}", hint=f"choose one of: {', '.join(STORES)}")


__all__ = ["STORES", "Event", "MemoryStore", "RunRecord", "Store", "open_store"]
