"""Journal stores: the `Store` interface and its implementations, chosen by URL.

`open_store("memory")` keeps everything in the process (gone when it ends);
`open_store("sqlite:///PATH")` opens (creating and migrating as needed) the durable journal in
the SQLite file PATH: `sqlite:///.sagac/sagac.db` is relative to the current directory,
`sqlite:////var/lib/sagac.db` (four slashes) is absolute; `postgresql://USER@HOST:PORT/DB` (or
`postgres://...`) is a PostgreSQL database (created tables and migrations on first use).
`DEFAULT_STORE` is what `sagac run` uses when `--store` is not given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sagac.errors import UsageError

if TYPE_CHECKING:
    from .base import Event, RunRecord, Store
    from .memory import MemoryStore

STORES = ("memory", "sqlite:///PATH", "postgresql://USER@HOST:PORT/DB")
DEFAULT_STORE = "sqlite:///.sagac/sagac.db"
SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def __getattr__(name: str) -> Any:
    """The classes load on first use: `sagac --help` reads DEFAULT_STORE and needs no asyncio."""
    if name == "MemoryStore":
        from .memory import MemoryStore

        return MemoryStore
    if name in ("Event", "RunRecord", "Store"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(url: str, *, readonly: bool = False) -> Store:
    """The store at `url` (`memory`, `sqlite:///PATH` or `postgresql://...`). `readonly`:
    open an existing journal only to read it (never created, migrated or written)."""
    if url == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX):
        from pathlib import Path

        from .sqlite import SqliteStore

        path = url[len(SQLITE_PREFIX) :]
        if Path(path).exists() and not Path(path).is_file():  # /dev/null, a folder, a FIFO
            raise UsageError(
                f"store {url!r}: {path} is not a regular file",
                hint="point --store at a journal file: sqlite:///PATH",
            )
        return SqliteStore(path, readonly=readonly)
    if url.startswith(POSTGRES_PREFIXES):
        from .postgres import PostgresStore

        return PostgresStore(url, readonly=readonly)
    raise UsageError(
        f"unknown store {url!r}",
        hint="use `memory`, `sqlite:///PATH` (e.g. sqlite:///.sagac/sagac.db)"
        " or `postgresql://USER@HOST:PORT/DB`",
    )


__all__ = ["DEFAULT_STORE", "STORES", "Event", "MemoryStore", "RunRecord", "Store", "open_store"]
