"""Fixtures of the sleep, wait and signal tests: the store kind each test runs against."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
