"""The one fixture of the store contract suite: `stores`, once per kind of store.

Every test in this folder takes `stores` and runs against each kind in `KINDS`. A new store
adds its name to `KINDS` and one branch to `Stores.open`: nothing else in this folder changes.
PostgreSQL runs on the session's throw-away server (`pg_server`, `tests/throwaway_pg.py`), with
a fresh database per test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sagac.runtime.clock import rfc3339
from sagac.runtime.store import Store
from sagac.runtime.store.base import RunRecord

KINDS = ["memory", "sqlite", "postgres"]


class Stores:
    """Handles on one store under test. `open()` gives a new handle on the same store, as
    another process would get (SQLite: a new `SqliteStore` on the same file); a store of one
    process (memory) is its only handle. `run(body)` runs `body(self)` in a fresh event loop
    and closes every handle opened, whatever happened."""

    def __init__(self, kind: str, folder: Path, url: str | None = None) -> None:
        self.kind = kind
        self.folder = folder
        self.url = url  # postgres: the test's own database
        self.opened: list[Store] = []
        self._memory: Store | None = None

    @property
    def shared(self) -> bool:
        return self.kind != "memory"

    def open(self) -> Store:
        store: Store
        if self.kind == "memory":
            from sagac.runtime.store.memory import MemoryStore

            self._memory = self._memory or MemoryStore()
            store = self._memory
        elif self.kind == "sqlite":
            from sagac.runtime.store.sqlite import SqliteStore

            store = SqliteStore(self.folder / "journal.db")
        elif self.kind == "postgres":
            from sagac.runtime.store.postgres import PostgresStore

            assert self.url is not None
            store = PostgresStore(self.url)
        else:
            raise AssertionError(f"no store kind {self.kind!r}")
        self.opened.append(store)
        return store

    def run(self, body: Callable[[Stores], Awaitable[Any]]) -> Any:
        async def go() -> Any:
            try:
                return await body(self)
            finally:
                await self.close()

        return asyncio.run(go())

    async def close(self) -> None:
        """Close every handle (a later `open()` reopens the store: what was written stays)."""
        for store in dict.fromkeys(self.opened):
            await store.close()
        self.opened.clear()


def _stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_server").database()
    return Stores(request.param, tmp_path, url)


@pytest.fixture(params=KINDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    return _stores(request, tmp_path)


@pytest.fixture(params=[k for k in KINDS if k != "memory"])
def shared_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    """The kinds other processes share (`Store.shared`): only those take leases."""
    return _stores(request, tmp_path)


def ev(run_id: str, seq: int, type_: str, **fields: Any) -> dict[str, Any]:
    """An event as the executor writes it."""
    return {"type": type_, "run_id": run_id, "seq": seq, "at": rfc3339(1_767_225_600), **fields}


async def new_run(
    store: Store, run_id: str = "r1", saga: str = "s", definition_hash: str = "sha256:d"
) -> RunRecord:
    record = RunRecord(run_id, saga, 1, definition_hash, {"amount": 1})
    await store.create_run(record)
    return record
