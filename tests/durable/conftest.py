"""Fixtures for durability tests: a journal file and the fork server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .durable_support import Driver


@pytest.fixture(scope="module")
def driver() -> Iterator[Driver]:
    d = Driver()
    yield d
    d.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"
