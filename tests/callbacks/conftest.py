"""Fixtures of the callback tests: the provider's folder (`CB_DIR`), reset per test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import HERE


@pytest.fixture
def cb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CB_DIR", str(tmp_path))
    monkeypatch.setenv("CB_FAST_STORE", f"sqlite:///{tmp_path / 'journal.db'}")
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import cb_provider  # the module the sagas' python actions import (by the same name)

    cb_provider.FAST = None
    yield tmp_path
    cb_provider.FAST = None
