"""`sagac run`: input validation, exit codes, --json, --events, --fail, --simulate; real
command and http actions."""
# ruff: noqa: E501  (YAML sagas inline: long lines read better than split flow mappings)

from __future__ import annotations

import json
import sys

import pytest

from sagac.cli import main

from .conftest import Reply
from .fixtures_sagas import SagaFactory, run

ACTIONS = """
def charge(amount):
    record("charge", amount=amount)
    return {"id": "pay_1", "amount": amount}

def refund(payment_id):
    record("refund", payment_id=payment_id)
    return {}

def ship(to):
    record("ship", to=to)
    return {"tracking": "T1"}
"""

SAGA = """
saga: cli
input:
  type: object
  required: [amount, to]
  properties:
    amount: {type: number, exclusiveMinimum: 0}
    to: {type: string, minLength: 2}
actions:
  charge: {python: "MOD:charge"}
  refund: {python: "MOD:refund"}
  ship: {python: "MOD:ship"}
steps:
  - id: charge
    action: charge
    with: {amount: "{{ input.amount }}"}
    compensate: {action: refund, with: {payment_id: "{{ result.id }}"}}
  - {id: ship, action: ship, with: {to: "{{ input.to }}"}}
output: {payment: "{{ steps.charge.result.id }}"}
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default store is ./.sagac/sagac.db


@pytest.fixture
def saga(tmp_path):
    plan, mod = SagaFactory(tmp_path).plan(SAGA, ACTIONS)
    return plan.file, mod


def test_success_exit_0_and_json_report(saga, capsys):
    path, _mod = saga
    assert main(["run", path, "--input", '{"amount": 5, "to": "Ada"}', "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "succeeded" and report["output"] == {"payment": "pay_1"}
    args = ["run", path, "--input", '{"amount": 5, "to": "Ada"}', "--store", "memory"]
    assert main(args) == 0
    assert set(report) >= {"run_id", "started_at", "finished_at", "definition_hash", "errors"}


def test_invalid_input_exit_4_lists_every_problem_and_runs_nothing(saga, capsys, tmp_path):
    path, mod = saga
    assert main(["run", path, "--input", '{"amount": -1, "to": "A"}']) == 4
    err = capsys.readouterr().err
    assert "input/amount" in err and "input/to" in err
    assert mod.LOG == []
    assert not (tmp_path / ".sagac").exists()  # nothing was opened either


def test_input_from_a_file_and_not_json(saga, tmp_path, capsys):
    path, _ = saga
    f = tmp_path / "in.json"
    f.write_text('{"amount": 5, "to": "Ada"}')
    assert main(["run", path, "--input", f"@{f}"]) == 0
    assert "succeeded" in capsys.readouterr().out
    assert main(["run", path, "--input", "{nope"]) == 4


def test_fail_makes_a_step_fail_with_a_code(saga, capsys):
    path, mod = saga
    code = main(
        ["run", path, "--input", '{"amount": 5, "to": "Ada"}', "--fail", "ship=LOST", "--json"]
    )
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "compensated" and report["failure"]["code"] == "LOST"
    assert [n for n, _ in mod.LOG] == ["charge", "refund"]
    assert main(["run", path, "--input", '{"amount": 5, "to": "Ada"}', "--fail", "ship"]) == 1


def test_fail_with_an_unknown_step_is_a_usage_error(saga, capsys):
    path, mod = saga
    assert main(["run", path, "--input", '{"amount": 5, "to": "Ada"}', "--fail", "nope"]) == 64
    err = capsys.readouterr().err
    assert "nope" in err and "charge, ship" in err and mod.LOG == []


def test_simulate_calls_no_action(saga, capsys):
    path, mod = saga
    assert main(["run", path, "--input", '{"amount": 5, "to": "Ada"}', "--simulate"]) == 0
    assert mod.LOG == []


def test_events_file_is_json_lines_in_order(saga, tmp_path, capsys):
    path, _ = saga
    out = tmp_path / "events.jsonl"
    assert main(["run", path, "--input", '{"amount": 5, "to": "Ada"}', "--events", str(out)]) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "saga_started" and events[-1]["type"] == "saga_completed"
    err = capsys.readouterr().err
    assert "✓ charge" in err and "\x1b[" not in err  # plain lines when not a terminal


def test_invalid_saga_exit_65(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("saga: x\nsteps: []\nnope: 1\n")
    assert main(["run", str(bad)]) == 65


def test_waiting_approval_exit_3(tmp_path, capsys):
    path = tmp_path / "gate.yaml"
    path.write_text(
        "saga: g\nactions: {m: {mock: {result: {}}}}\n"
        "steps:\n  - {id: a, action: m}\n  - approval: {id: gate, approvers: [bob], timeout: 1h}\n"
    )
    assert main(["run", str(path)]) == 3
    assert "waits for approval" in capsys.readouterr().err


def test_compensation_failed_exit_2(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(
        "saga: c\nactions: {ok: {mock: {result: {}}}, bad: {mock: {fail: UNAVAILABLE}}}\n"
        "steps:\n"
        "  - {id: a, action: ok, compensate: {action: bad, retry: {max_attempts: 1}}}\n"
        "  - {id: b, action: bad}\n"
    )
    assert main(["run", str(path), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["needs_attention"] == ["a"]


def test_command_actions_run_as_subprocesses(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text(
        "import json, os, sys\n"
        "data = json.load(sys.stdin)\n"
        "if data.get('fail'):\n"
        "    print('broken pipe dream', file=sys.stderr); sys.exit(3)\n"
        "print(json.dumps({'got': data, 'key': os.environ.get('SAGAC_IDEMPOTENCY_KEY')}))\n"
    )
    plan, _ = SagaFactory(tmp_path).plan(
        f"""
saga: cmd
actions:
  tool: {{command: ["{sys.executable}", "{script}"]}}
steps:
  - {{id: a, action: tool, with: {{x: 1}}, idempotency_key: "k1", compensate: {{action: tool, with: {{undo: true}}}}}}
  - {{id: b, action: tool, with: {{fail: true}}}}
""",
    )
    report, rec = run(plan)
    assert rec.of("step_completed")[0]["result"] == {"got": {"x": 1}, "key": "k1"}
    assert report.failure.code == "COMMAND_FAILED" and report.status == "compensated"


def test_http_actions_against_a_loopback_server(tmp_path, http_server):
    http_server.route("POST", "/reservations", Reply(201, {"lease_id": "L1"}))
    http_server.route("DELETE", "/reservations/L1", Reply(200, {"released": True}))
    http_server.route("POST", "/pay", [Reply(503), Reply(402, {"error": "declined"})])
    base = http_server.url("")
    plan, _ = SagaFactory(tmp_path).plan(
        f"""
saga: web
actions:
  reserve: {{http: {{method: POST, url: "{base}/reservations"}}}}
  release: {{http: {{method: DELETE, url: "{base}/reservations/{{{{ args.lease_id }}}}"}}}}
  pay: {{http: {{method: POST, url: "{base}/pay"}}}}
steps:
  - id: reserve
    action: reserve
    with: {{sku: mug}}
    idempotency_key: res-1
    compensate: {{action: release, with: {{lease_id: "{{{{ result.lease_id }}}}"}}}}
  - id: pay
    action: pay
    retry: {{max_attempts: 3, initial_delay: 1ms}}
""",
    )
    report, _rec = run(plan)
    assert report.failure.code == "HTTP_402" and report.failure.attempts == 2
    assert [c.status for c in report.compensations] == ["ok"]
    methods = [(r.method, r.path) for r in http_server.requests]
    assert methods == [
        ("POST", "/reservations"),
        ("POST", "/pay"),
        ("POST", "/pay"),
        ("DELETE", "/reservations/L1"),
    ]
    assert http_server.requests[0].headers["idempotency-key"] == "res-1"
