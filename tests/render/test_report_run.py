"""A real compensated run, journaled in SQLite, drawn and reported through the CLI."""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

from .conftest import measure_in_chromium, open_in_chromium

ROOT = Path(__file__).resolve().parents[2]
OS_USER = pwd.getpwuid(os.geteuid()).pw_name
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


def test_report_approvals_read_well_on_a_laptop_screen(tmp_path: Path) -> None:
    """A real gated run, approved through the CLI: the approvals table says who, when, what,
    the wait and the comment, and neither it nor the page scrolls sideways at 1366 x 768."""
    saga = ROOT / "sagas" / "refund_approval.yaml"
    data = ROOT / "sagas" / "inputs" / "refund_approval.json"
    ran = sagac("run", str(saga), "--input", f"@{data}", "--json", cwd=tmp_path)
    assert ran.returncode == 3, ran.stderr
    report = json.loads(ran.stdout)
    run_id, token = report["run_id"], report["waiting"][0]["token"]
    comment = "Checked with the customer on the phone: the parcel arrived damaged, refund it"
    decided = sagac(
        "approve", run_id, "--gate", "manager_approval", "--as", "alice", "--token", token,
        "--comment", comment, "--resume", cwd=tmp_path,
    )  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    page = tmp_path / "report.html"
    assert sagac("report", run_id, "-o", str(page), cwd=tmp_path).returncode == 0

    seen = measure_in_chromium(page, tmp_path, 1366, 768)
    assert seen["page"][0] <= seen["page"][1], seen["page"]  # no horizontal scrolling
    for panel in ("approvals", "audit"):
        scroll, client = seen["panels"][panel]
        assert scroll <= client, (panel, scroll, client)
    table = seen["tables"]["approvals"]
    assert table["heads"] == [
        "Gate", "What was asked", "Decision", "Who", "When", "Waited", "Comment",
    ]  # fmt: skip
    ((gate, asked, decision, who, when, waited, said),) = table["rows"]
    assert gate.split("\n") == ["manager_approval", "refund-approval:R-3001"]
    assert asked.split("\n") == [
        "Refund R-3001 of 1500.0 EUR (damaged) needs approval",
        "approvers: alice, group:finance",
    ]
    assert (decision, who, said) == ("approved", "alice", comment)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\nasked \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", when
    ), when
    assert re.fullmatch(r"\d+(\.\d+)? (ms|s)", waited) and waited != "0 ms", waited
    audit = seen["tables"]["audit"]
    assert audit["heads"] == ["When", "Who", "Action", "Outcome", "Gate", "Message"]
    (entry,) = audit["rows"]
    assert [entry[1].split("\n")[0], *entry[2:5]] == [
        "alice",
        "approve",
        "accepted",
        "manager_approval",
    ]
    assert entry[1].split("\n")[1:] in ([], [f"os user {OS_USER}"])  # shown when it differs
    nodes = {row[0].split("\n")[0]: row[-1] for row in seen["tables"]["nodes"]["rows"]}
    assert nodes["manager_approval"] == f"completed · waited {waited}", nodes
