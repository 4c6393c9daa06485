"""Helpers for the tests of sleeps, waits and signals: sagas as text, stores by kind, a run's
events by type. (Not `conftest`: test folders each have one.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sagac.compiler.pipeline import compile_text
from sagac.compiler.plan import Plan
from sagac.runtime.store import Store

T = TypeVar("T")


def plan_of(text: str, folder: Path | None = None) -> Plan:
    """The plan of a saga given as text; with `folder`, written there first (a file a worker
    or `sagac resume` can find)."""
    file = "<test>"
    if folder is not None:
        path = folder / "saga.yaml"
        path.write_text(text)
        file = str(path)
    c = compile_text(text, file)
    assert c.plan is not None and c.ok(), c.diagnostics
    return c.plan


def open_kind(kind: str, folder: Path) -> Store:
    """A store of `kind` (`memory`, `sqlite`) whose data lives in `folder`."""
    if kind == "memory":
        from sagac.runtime.store.memory import MemoryStore

        return MemoryStore()
    from sagac.runtime.store.sqlite import SqliteStore

    return SqliteStore(folder / "journal.db")


def on_store(store: Store, body: Callable[[Store], Awaitable[T]]) -> T:
    """`body(store)` in a fresh loop; a SQLite store is closed afterwards, a memory store kept
    (it is the only handle on its data)."""

    async def go() -> T:
        try:
            return await body(store)
        finally:
            if store.shared:
                await store.close()

    return asyncio.run(go())


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type_]
