"""The IR of every example saga survives a round trip through JSON-shaped data."""

from __future__ import annotations

from pathlib import Path

import pytest
from sagac.compiler import ir
from sagac.compiler.pipeline import compile_file

ROOT = Path(__file__).resolve().parent.parent
SAGAS = sorted((ROOT / "sagas").glob("*.yaml")) + sorted((ROOT / "tests/render").glob("*.yaml"))


@pytest.mark.parametrize("path", SAGAS, ids=lambda p: p.stem)
def test_ir_round_trips_through_validation(path: Path) -> None:
    c = compile_file(path)
    assert c.saga is not None, c.diagnostics
    dumped = c.saga.model_dump(by_alias=True)
    again = ir.Saga.model_validate(dumped)
    assert again.model_dump(by_alias=True) == dumped
    assert [type(n) for n in again.walk()] == [type(n) for n in c.saga.walk()]
