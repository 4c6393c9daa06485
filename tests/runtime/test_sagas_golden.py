"""The exact reports of the example sagas in sagas/, with their inputs and injected failures.

Each case's report is compared to `golden/<case>.json` with the volatile fields (times,
durations) normalised; run ids are fixed. Regenerate with `SAGAC_REGEN=1 pytest
tests/runtime/test_sagas_golden.py` and review the diff. Where threads race by design (a
foreach with concurrency, an `any` group) the racing parts are compared as sets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sagac.runtime.clock import FakeClock

import sagac

ROOT = Path(__file__).resolve().parents[2]
SAGAS = ROOT / "sagas"
GOLDEN = Path(__file__).parent / "golden"

# case name -> (saga, input file, fail overrides, parts that race)
CASES: dict[str, tuple[str, str, dict[str, str], tuple[str, ...]]] = {}
for _input in sorted((SAGAS / "inputs").glob("*.json")) if SAGAS.exists() else []:
    _name = _input.name.removesuffix(".json")
    _racy: tuple[str, ...] = ()
    if _name.startswith(("user_migration", "travel_booking")):
        _racy = ("compensations",)  # concurrent items; `compensation: parallel`
    if _name.startswith("failover"):
        _racy = ("errors",)
    CASES[_name] = (_name.split(".")[0], _input.name, {}, _racy)
CASES.update(
    {
        "checkout_compensated.create_fails": (
            "checkout_compensated",
            "checkout_compensated.json",
            {"create_order": "ORDER_CREATION_FAILED"},
            (),
        ),
        "dashboard.orders_unavailable": (
            "dashboard",
            "dashboard.json",
            {"fetch_orders": "UNAVAILABLE"},
            (),
        ),
        "travel_booking.hotel_sold_out": (
            "travel_booking",
            "travel_booking.json",
            {"book_hotel": "SOLD_OUT"},
            ("compensations", "errors"),
        ),
        "order_fulfillment.notify_fails": (
            "order_fulfillment",
            "order_fulfillment.json",
            {"notify_customer": "UNEXPECTED"},
            (),
        ),
        "user_migration.switch_fails": (
            "user_migration",
            "user_migration.json",
            {"switch_reads": "UNEXPECTED"},
            ("compensations",),
        ),
    }
)


def normalise(report: dict[str, Any], racy: tuple[str, ...]) -> dict[str, Any]:
    out = dict(report)
    out["duration_ms"] = 0
    out["started_at"] = "<time>"
    out["finished_at"] = "<time>" if out["finished_at"] else None
    if out.get("children"):  # a child run's id is made fresh by its store (a `call`)
        out["children"] = {call: "<child run>" for call in out["children"]}
    for key in racy:
        if key == "errors":
            out[key] = sorted(
                (e for e in out[key] if e["code"] != "UNAVAILABLE"),
                key=lambda e: json.dumps(e, sort_keys=True),
            )
        else:
            # Items in flight when an item failed may complete (and be undone) or not.
            failed_at = (out.get("failure") or {}).get("item_index")
            out[key] = sorted(
                (
                    c
                    for c in out[key]
                    if failed_at is None or c["item_index"] is None or c["item_index"] < failed_at
                ),
                key=lambda c: (c["step"], c["item_index"] or 0),
            )
    return out


@pytest.mark.skipif(not CASES, reason="no example sagas")
@pytest.mark.parametrize("case", sorted(CASES))
def test_example_saga_report(case, monkeypatch, tmp_path):
    saga, input_file, fail, racy = CASES[case]
    monkeypatch.setenv("SAGAC_DEMO_LEDGER", str(tmp_path / "ledger.jsonl"))
    data = json.loads((SAGAS / "inputs" / input_file).read_text())
    report = sagac.run(
        SAGAS / f"{saga}.yaml", data, fail=fail, clock=FakeClock(), run_id=f"golden-{case}"
    )
    got = normalise(report.to_json_dict(), racy)
    golden = GOLDEN / f"{case}.json"
    if os.environ.get("SAGAC_REGEN"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert golden.exists(), f"no {golden.name}: write it with SAGAC_REGEN=1 and review it"
    assert got == json.loads(golden.read_text())
