"""Shared test helpers: the repository root, and running the `sagac` CLI in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from throwaway_pg import PgServer

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """`run_cli("validate", "x.yaml")`: exit code and output of `sagac`, from the repo root."""
    from sagac.cli import main

    monkeypatch.chdir(ROOT)

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throw-away PostgreSQL server for the session (`tests/throwaway_pg.py`), stopped at
    its end whatever happened; started only when a test asks for it."""
    server = PgServer()
    try:
        yield server
    finally:
        server.stop()
