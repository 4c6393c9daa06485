"""Fixtures for `call` tests: the sagas (a checkout calling inventory/reserve.yaml), the test
ledger their actions write, and the stores to run them in."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("SAGAC_TEST_LEDGER", str(path))
    return path


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory" if request.param == "memory" else f"sqlite:///{tmp_path / 'journal.db'}"
