"""`sagac store migrate` on a SQLite journal (PostgreSQL's cases are in `test_postgres.py`):
a new file gets the whole schema, a current one is left as it is, an older one is upgraded, a
newer one is refused with the store error's exit code, and `memory` has nothing to migrate."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sagac.runtime.store.migrations import SCHEMA_VERSION, migrate

from .durable_support import sagac


def test_a_sqlite_journal_is_created_upgraded_and_left_alone_when_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/j.db"
    first = sagac("store", "migrate", "--store", url)
    assert first.returncode == 0, first.stderr
    assert f"from schema version 0 to {SCHEMA_VERSION}" in first.stdout, first.stdout
    again = sagac("store", "migrate", env={"SAGAC_STORE": url})
    assert again.returncode == 0, again.stderr
    assert f"already at schema version {SCHEMA_VERSION}" in again.stdout, again.stdout

    old = tmp_path / "old.db"
    c = sqlite3.connect(old, isolation_level=None)
    migrate(c, str(old), target=SCHEMA_VERSION - 1)
    c.close()
    upgraded = sagac("store", "migrate", "--store", f"sqlite:///{old}")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"from schema version {SCHEMA_VERSION - 1} to {SCHEMA_VERSION}" in upgraded.stdout


def test_a_newer_sqlite_journal_is_refused_and_memory_has_no_schema(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    assert sagac("store", "migrate", "--store", f"sqlite:///{path}").returncode == 0
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("INSERT INTO schema_version VALUES (?, 'later')", (SCHEMA_VERSION + 1,))
    c.close()
    refused = sagac("store", "migrate", "--store", f"sqlite:///{path}")
    assert refused.returncode == 70, refused.stderr
    assert "newer than this sagac knows" in refused.stderr and "Traceback" not in refused.stderr
    memory = sagac("store", "migrate", "--store", "memory")
    assert memory.returncode == 64 and "no schema to migrate" in memory.stderr, memory.stderr
