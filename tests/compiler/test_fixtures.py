"""One invalid saga per diagnostic code, with its exact `sagac validate --strict` output.

Each fixture's first line says what it must produce: `# expect: E013 6:12`. The golden text
sits next to it as `<name>.expected`; regenerate every golden with `SAGAC_REGEN=1 pytest
tests/compiler/test_fixtures.py` and review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sagac.compiler.diagnostics import CODES
from sagac.compiler.pipeline import compile_file

ROOT = Path(__file__).resolve().parents[2]

FIXTURES = sorted((ROOT / "tests" / "fixtures" / "invalid").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: ([EW][0-9]{3}) ([0-9]+):([0-9]+)$")
REGEN = os.environ.get("SAGAC_REGEN") == "1"


def _expect(path: Path) -> tuple[str, int, int]:
    m = EXPECT.match(path.read_text("utf-8").splitlines()[0])
    assert m, f"{path.name}: the first line must be `# expect: CODE LINE:COLUMN`"
    return m.group(1), int(m.group(2)), int(m.group(3))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_reports_its_code_at_its_place(path: Path) -> None:
    code, line, column = _expect(path)
    assert path.name.startswith(code + "_")
    c = compile_file(path, imports=True)
    assert [(d.code, d.line, d.column) for d in c.diagnostics] == [(code, line, column)]
    d = c.diagnostics[0]
    assert d.hint, "every fixture's diagnostic says what to do"
    assert d.level is CODES[code].severity


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_golden_text(path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("validate", "--strict", _rel(path))
    assert result.code == 65
    text = result.out + result.err
    golden = path.with_suffix(".expected")
    if REGEN:
        golden.write_text(text, "utf-8")
    assert golden.exists(), f"missing {golden.name}: run with SAGAC_REGEN=1"
    assert text == golden.read_text("utf-8")


def test_every_reachable_code_has_a_fixture() -> None:
    covered = {p.name.split("_")[0] for p in FIXTURES}
    # E004 (unreadable file) cannot be a file in the repository: test_cli covers it.
    assert covered | {"E004"} == set(CODES)


def test_every_code_is_documented_with_an_anchor() -> None:
    doc = (ROOT / "docs" / "diagnostics.md").read_text("utf-8")
    for code, info in CODES.items():
        assert f'<a id="{code.lower()}"></a>' in doc
        assert f"## {code}: {info.title}" in doc
