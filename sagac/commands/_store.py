"""What the durable commands share: the `--store` option (defaulting to `$SAGAC_STORE`) and
opening an existing journal."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sagac.errors import UsageError

if TYPE_CHECKING:
    from sagac import Store


# The environment variable that `--store` defaults to (then DEFAULT_STORE).
STORE_VARIABLE = "SAGAC_STORE"


def default_store() -> str:
    """The store of a command given no `--store`: `$SAGAC_STORE` when set and not empty,
    else `DEFAULT_STORE` (sqlite:///.sagac/sagac.db)."""
    import os

    from sagac import DEFAULT_STORE

    return os.environ.get(STORE_VARIABLE) or DEFAULT_STORE


def store_help(what: str = "the journal: sqlite:///PATH or postgresql://USER@HOST:PORT/DB") -> str:
    """`--store`'s help: `what`, then where the default comes from."""
    from sagac import DEFAULT_STORE

    return f"{what} (default: ${STORE_VARIABLE} when set, else {DEFAULT_STORE})"


def add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=default_store(), metavar="URL", help=store_help())


def open_existing(url: str, *, readonly: bool = False) -> Store:
    """The durable store at `url`; a missing file is a usage error, not a new empty journal.
    `readonly` (the inspection commands): opened only to read, never created, upgraded or
    written, so that a read-only journal can be inspected (a PostgreSQL database without
    sagac's tables is then a StoreError, not a new journal)."""
    from sagac import SQLITE_PREFIX, open_store

    if url == "memory":
        raise UsageError(
            "--store memory keeps nothing between processes: there are no runs to read",
            hint="use --store sqlite:///PATH",
        )
    if not url.startswith(SQLITE_PREFIX):
        return open_store(url, readonly=readonly)  # PostgreSQL; else UsageError: unknown store
    path = Path(url[len(SQLITE_PREFIX) :])
    if not path.exists():
        raise UsageError(
            f"there is no journal at {path}",
            hint="run a saga first (`sagac run` writes .sagac/sagac.db), or pass --store",
        )
    return open_store(url, readonly=readonly)


def open_durable(url: str, *, create: bool, readonly: bool = False, what: str) -> Store:
    """The durable store at `url` for a command that keeps `what` (groups, tokens) in it:
    `create` may create a SQLite journal (they are often set up before any run); `--store
    memory` is a usage error (it forgets them when the process ends)."""
    from sagac import SQLITE_PREFIX, open_store

    if url == "memory":
        raise UsageError(
            f"{what} need a durable store: --store memory forgets them when the process ends",
            hint="pass --store sqlite:///PATH (the default is sqlite:///.sagac/sagac.db)",
        )
    if create and url.startswith(SQLITE_PREFIX):
        return open_store(url)
    return open_existing(url, readonly=readonly)


def explain_interruption(error: Any, run_id: str, url: str, started: bool = True) -> Any:
    """`error` (a StoreError that stopped a run) with a hint naming the run and how to go on:
    the journal keeps everything up to the failed write. `started`: whether the run is known
    to be in the journal (else it is looked up). A run held by another process (RUN_BUSY) was
    not interrupted: that error is returned as it is."""
    from sagac.errors import LeaseHeld, StoreUnavailable

    if isinstance(error, LeaseHeld):
        return error
    store = "" if url == default_store() else f" --store {url}"
    when = "free space, permissions"
    if isinstance(error, StoreUnavailable):
        when = "the store's server is back"
    if started or _recorded(url, run_id):
        error.hint = (
            f"run {run_id} stopped: its journal could not be written. Once it can be ({when}),"
            f" continue the run with: sagac resume {run_id}{store}"
        )
    else:
        error.hint = "no run was recorded: run the command again once the journal can be written"
    return error


def using(store: Store, fn: Any) -> Any:
    """`await fn(store)` in a fresh event loop, then close the store whatever happened."""
    import asyncio

    async def go() -> Any:
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _recorded(url: str, run_id: str) -> bool:
    """Whether run `run_id` is in the journal at `url` (read only; False when unreadable)."""
    import asyncio

    from sagac.errors import SagacError

    async def find() -> bool:
        store = open_existing(url, readonly=True)
        try:
            await store.get_run(run_id)
            return True
        finally:
            await store.close()

    try:
        return asyncio.run(find())
    except SagacError:
        return False


def current_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "unknown"


# A worker is alive when its last heartbeat is younger than this (`sagac worker`'s default
# --lease-ttl, as `sagac workers` lists them).
LIVE_WITHIN = 30.0


async def live_workers(store: Any) -> bool:
    """Whether a `sagac worker` of this store is alive: it continues a run whose decision,
    cancel request or signal a command recorded, so nobody needs `sagac resume`."""
    return bool(await store.workers(LIVE_WITHIN))
