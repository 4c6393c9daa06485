"""A real compensated run, journaled in SQLite, drawn and reported through the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from .conftest import open_in_chromium

ROOT = Path(__file__).resolve().parents[2]
SAGA = ROOT / "sagas" / "checkout_compensated.yaml"
FAIL_INPUT = ROOT / "sagas" / "inputs" / "checkout_compensated.fail.json"


def sagac(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagac", *args], cwd=cwd, capture_output=True, text=True
    )


def compensated_run(tmp_path: Path) -> str:
    done = sagac("run", str(SAGA), "--input", f"@{FAIL_INPUT}", "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "compensated"
    return str(report["run_id"])


def test_diagram_of_a_run_colours_what_happened(tmp_path: Path) -> None:
    run_id = compensated_run(tmp_path)
    done = sagac("diagram", "--run", run_id, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    charge = next(line for line in done.stdout.splitlines() if "s_charge_payment(" in line)
    assert "compensated" in charge
    create = next(line for line in done.stdout.splitlines() if "s_create_order(" in line)
    assert "compensated" not in create


def test_report_of_a_compensated_run_in_headless_chromium(tmp_path: Path) -> None:
    run_id = compensated_run(tmp_path)
    page = tmp_path / "report.html"
    done = sagac("report", run_id, "-o", str(page), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    view = open_in_chromium(page, tmp_path)
    assert view.screenshot.stat().st_size > 20_000
    assert view.console_errors == []
    assert "Failed at reserve_inventory" in view.text and "OUT_OF_STOCK" in view.text
    assert re.search(r"\b1 reserve_inventory ok 1\b", view.text), view.text[:2000]
    assert re.search(r"\b2 charge_payment ok 1\b", view.text)


def test_report_of_an_unknown_run_is_a_usage_error(tmp_path: Path) -> None:
    compensated_run(tmp_path)  # creates the journal
    done = sagac("report", "no-such-run", cwd=tmp_path)
    assert done.returncode == 64
    assert "no-such-run" in done.stderr and "Traceback" not in done.stderr
