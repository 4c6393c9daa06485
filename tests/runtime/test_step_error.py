"""`StepError` as a python action raises it: the spec's `StepError(code, detail)` with a mapping,
the older `StepError(code, "message")`, and a malformed one, which must end in a report (an
UNEXPECTED error naming the mistake), never a traceback. The CLI runs as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sagac import StepError

ACTIONS = """\
from sagac import StepError

def spec_form():
    raise StepError("PAYMENT_DECLINED", {"decline_code": "insufficient_funds"})

def with_message():
    raise StepError("PAYMENT_DECLINED", {"decline_code": "stolen"}, message="card declined")

def old_form():
    raise StepError("PAYMENT_DECLINED", "card declined", {"n": 1})

def wrong_detail():
    raise StepError("PAYMENT_DECLINED", 42)
"""

SAGA = """\
saga: step_errors
actions:
  act: {python: "step_error_actions:%s"}
steps:
  - id: charge
    action: act
    errors: [PAYMENT_DECLINED]
"""


def run_cli(tmp_path: Path, target: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    (tmp_path / "step_error_actions.py").write_text(ACTIONS)
    saga = tmp_path / f"{target}.yaml"
    saga.write_text(SAGA % target)
    proc = subprocess.run(
        [sys.executable, "-m", "sagac", "run", str(saga), "--json", "--store", "memory"],
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(proc.stdout)


@pytest.mark.parametrize(
    ("target", "message", "detail"),
    [
        ("spec_form", "PAYMENT_DECLINED", {"decline_code": "insufficient_funds"}),
        ("with_message", "card declined", {"decline_code": "stolen"}),
        ("old_form", "card declined", {"n": 1}),
    ],
)
def test_a_domain_error_keeps_its_detail_and_message(tmp_path, target, message, detail):
    proc, report = run_cli(tmp_path, target)
    assert proc.returncode == 1
    failure = report["failure"]
    assert (failure["code"], failure["message"]) == ("PAYMENT_DECLINED", message)
    assert report["errors"][0]["detail"] == detail


def test_a_malformed_step_error_is_unexpected_with_a_clear_message(tmp_path):
    proc, report = run_cli(tmp_path, "wrong_detail")
    assert proc.returncode == 1
    failure = report["failure"]
    assert failure["code"] == "UNEXPECTED"
    assert (
        "the second argument is the detail (a mapping) or the message (text)"
        in (failure["message"])
    )


def test_the_constructor_forms() -> None:
    e = StepError("X", {"a": 1}, message="m")
    assert (e.code, e.message, e.detail) == ("X", "m", {"a": 1})
    e = StepError("X", detail=[1, 2])
    assert (e.message, e.detail) == ("X", [1, 2])
    e = StepError("X", message="m", detail={"a": 1})
    assert (e.message, e.detail) == ("m", {"a": 1})
    for bad in (
        lambda: StepError(404),  # type: ignore[arg-type]
        lambda: StepError("X", "m", message="m2"),
        lambda: StepError("X", {"a": 1}, {"b": 2}),
        lambda: StepError("X", message=3),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError):
            bad()
