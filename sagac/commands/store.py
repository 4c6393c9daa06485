"""`sagac store migrate`: bring a journal (a SQLite file or a PostgreSQL database) to this
sagac's schema now, and say from which version to which.

Any command that writes to a journal migrates it too, on first use; this command does it on
purpose, before workers start (a fresh PostgreSQL database gets its tables here). A journal
whose schema is newer than this sagac is refused (exit 70) and left as it is. Exit codes: 0
migrated or already current, 64 usage, 69 server unreachable, 70 store error.
"""

from __future__ import annotations

import argparse
from typing import Any

from sagac.errors import ExitCode, UsageError

from ._store import add_store_option, using


def register(sub: Any) -> None:
    p = sub.add_parser("store", help="the journal store: bring its schema up to date")
    actions = p.add_subparsers(dest="store_action", metavar="ACTION", required=True)
    m = actions.add_parser(
        "migrate",
        help="bring the store to this sagac's schema (says from which version to which)",
        description="Bring a SQLite journal or a PostgreSQL database to this sagac's schema"
        " (creating its tables when it has none) and say from which version to which, or"
        " that it is already current. A store newer than this sagac is refused (exit 70).",
    )
    add_store_option(m)
    m.set_defaults(func=migrate)


def migrate(args: argparse.Namespace) -> int:
    from sagac import open_store

    if args.store == "memory":
        raise UsageError(
            "--store memory has no schema to migrate",
            hint="pass --store sqlite:///PATH or --store postgresql://USER@HOST:PORT/DB",
        )
    before, after = using(open_store(args.store), lambda store: store.migrate())
    if before == after:
        print(f"sagac: the store is already at schema version {after}")
    else:
        print(f"sagac: migrated the store from schema version {before} to {after}")
    return ExitCode.OK
