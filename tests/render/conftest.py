"""Shared helpers of the renderer tests: the sagas to draw, and binaries the tests need."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sagac.compiler.pipeline import load
from sagac.compiler.plan import Plan

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
GOLDEN = HERE / "golden"
# The example sagas (whatever sagas/ holds when the tests run) and the hand-written ones here.
SAGA_FILES = sorted((ROOT / "sagas").glob("*.yaml")) + sorted((HERE / "sagas").glob("*.yaml"))


def saga_id(path: Path) -> str:
    return path.stem


def plan_of(path: Path) -> Plan:
    return load(path)


def need_binary(name: str, package: str) -> str:
    """The path of `name`; without it the test fails in CI (CI=true) and skips locally."""
    found = shutil.which(name)
    if found:
        return found
    reason = f"`{name}` is not installed: run `make system-deps` (apt-get install {package})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)
