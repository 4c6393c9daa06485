"""Golden Mermaid and DOT for every example saga and every hand-written one here.

Regenerate after an intended change with `SAGAC_REGEN=1 pytest tests/render`, then review the
diff of tests/render/golden/ like code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sagac.compiler.render import render_dot, render_mermaid

from .conftest import GOLDEN, HERE, SAGA_FILES, plan_of, saga_id

REGEN = os.environ.get("SAGAC_REGEN") == "1"
RENDERERS = {"mmd": render_mermaid, "dot": render_dot}


@pytest.mark.parametrize("ext", sorted(RENDERERS))
@pytest.mark.parametrize("path", SAGA_FILES, ids=saga_id)
def test_golden(path: Path, ext: str) -> None:
    text = RENDERERS[ext](plan_of(path))
    golden = GOLDEN / f"{path.stem}.{ext}"
    if REGEN:
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}: run `SAGAC_REGEN=1 pytest tests/render`"
    assert text == golden.read_text(encoding="utf-8"), (
        f"{golden.name} differs: if the change is intended, regenerate with "
        "`SAGAC_REGEN=1 pytest tests/render` and review the diff"
    )


def test_rendering_is_deterministic() -> None:
    plan = plan_of(SAGA_FILES[-1])
    assert render_mermaid(plan) == render_mermaid(plan)
    assert render_dot(plan) == render_dot(plan)


EXPANDED = HERE / "sagas" / "waits_and_calls.yaml"


@pytest.mark.parametrize("ext", sorted(RENDERERS))
def test_golden_with_called_sagas_drawn_inline(ext: str) -> None:
    """`--expand`: each call is a cluster holding the saga it calls, its keys prefixed."""
    text = RENDERERS[ext](plan_of(EXPANDED), None, True)
    golden = GOLDEN / f"{EXPANDED.stem}.expanded.{ext}"
    if REGEN:
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
    assert "reserve_stock_C_reserve" in text and "reserve_stock_C_confirm" in text
