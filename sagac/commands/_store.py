"""What the durable commands share: the `--store` option and opening an existing journal."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sagac.compiler.errors import UsageError

EXIT_BUSY = 75


def add_store_option(p: argparse.ArgumentParser) -> None:
    from sagac.runtime.store import DEFAULT_STORE

    p.add_argument(
        "--store",
        default=DEFAULT_STORE,
        metavar="URL",
        help=f"the journal: sqlite:///PATH (default {DEFAULT_STORE})",
    )


def open_existing(url: str) -> Any:
    """The durable store at `url`; a missing file is a usage error, not a new empty journal."""
    from sagac.runtime.store import SQLITE_PREFIX, open_store

    if not url.startswith(SQLITE_PREFIX):
        raise UsageError(
            f"{url!r} keeps nothing between processes", hint="use --store sqlite:///PATH"
        )
    path = Path(url[len(SQLITE_PREFIX) :])
    if not path.is_file():
        raise UsageError(
            f"there is no journal at {path}",
            hint="run a saga first (`sagac run` writes .sagac/sagac.db), or pass --store",
        )
    return open_store(url)


def current_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "unknown"
