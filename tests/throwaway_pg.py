"""A throw-away PostgreSQL server for the tests: `initdb` into a temporary folder, listening
only on 127.0.0.1 on a free port (trust authentication, fsync off), started once per test
session and stopped at its end, and a fresh database for each test that asks.

PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user and
its commands run through `runuser`. The binaries come from the Debian `postgresql` package
(`scripts/setup-system.sh` installs it); without them the tests fail, never skip. This
module never touches a server it did not start.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

_BIN_DIRS = (
    "/usr/local/bin",
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
)


def _binary(name: str) -> str:
    for folder in _BIN_DIRS:
        path = Path(folder, name)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is missing: run scripts/setup-system.sh (Debian package"
            " `postgresql`) to install it"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One running throw-away server; `database()` is the URL of a new empty database.
    `halt()` and `start()` take it down and up again on the same data and port (an outage);
    `stop()` ends it for good. `durable`: fsync and synchronous commits on, as a production
    server has them (for measurements; the tests run without)."""

    def __init__(self, durable: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sagac-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self.user = "postgres" if self._as else None
        self._run(
            _binary("initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        )
        self._options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200"
        if not durable:
            self._options += " -F -c synchronous_commit=off"
        self.start()
        self.admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server (again) on its data folder and port; returns once it accepts
        connections."""
        self._run(
            _binary("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            self._options,
            "start",
        )

    def halt(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data for `start()`. `fast` (a restart): every
        connection is cut and what was committed is kept; `immediate` (a crash): without fsync
        and synchronous commits, as this server runs, the last commits may be lost."""
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def _run(self, *argv: str) -> None:
        r = subprocess.run([*self._as, *argv], capture_output=True, text=True, cwd=self.root)
        if r.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {r.stderr or r.stdout}{tail}")

    def database(self) -> str:
        """The URL of a new, empty database (tests stay independent)."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # our own name
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the server for good and remove its files."""
        try:
            if (self.data / "postmaster.pid").exists():
                self.halt("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
