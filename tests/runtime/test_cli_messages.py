"""Messages that say what to do (issue 10, items 6 and 19): an unset secret, a forgotten
`--input`, a missing optional input key, and `--input` read with a limit (stdin included)."""
# ruff: noqa: E501  (YAML sagas inline: long lines read better than split flow mappings)

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sagac.runtime.templates import TemplateEngine

from sagac.cli import main

from .fixtures_sagas import SagaFactory

ACTIONS = """
def charge(key, amount, note):
    record("charge", amount=amount)
    return {"id": "pay_1"}
"""

SECRET_SAGA = """
saga: paid
secrets: [PAY_KEY, UNUSED_KEY, OPTIONAL_KEY]
input:
  type: object
  required: [amount]
  properties:
    amount: {type: number}
    coupon: {type: string}
steps:
  - id: charge
    action: {python: "MOD:charge"}
    with: {key: "{{ secrets.PAY_KEY }}", amount: "{{ input.amount }}", note: "{{ secrets.OPTIONAL_KEY | default('none') }}"}
  - id: discount
    when: "{{ input.coupon }}"
    action: {mock: {}}
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PAY_KEY", raising=False)
    monkeypatch.delenv("UNUSED_KEY", raising=False)
    monkeypatch.delenv("OPTIONAL_KEY", raising=False)


@pytest.fixture
def saga(tmp_path: Path) -> tuple[str, object]:
    plan, mod = SagaFactory(tmp_path).plan(SECRET_SAGA, ACTIONS)
    assert plan.file is not None
    return plan.file, mod


def sagac(
    *argv: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The real `sagac` command in a child process, fed `stdin`."""
    return subprocess.run(
        [sys.executable, "-m", "sagac", *argv],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_unset_secret_is_refused_before_anything_runs(saga, capsys) -> None:  # type: ignore[no-untyped-def]
    path, mod = saga
    code = main(["run", path, "--input", '{"amount": 5}', "--store", "memory"])
    err = capsys.readouterr().err
    assert code == 64
    assert (
        "error[SECRET_MISSING]: secret PAY_KEY is not set (PAY_KEY read in `with.key` of charge)"
        in err
    )
    assert "export PAY_KEY=..." in err
    assert "UNUSED_KEY" not in err  # listed, never read: not needed
    assert "OPTIONAL_KEY" not in err  # read with `| default`: optional
    assert mod.LOG == []  # type: ignore[attr-defined]


def test_unset_secret_from_the_api(saga) -> None:  # type: ignore[no-untyped-def]
    import sagac
    from sagac.errors import SecretMissing

    path, _ = saga
    with pytest.raises(SecretMissing, match="PAY_KEY"):
        sagac.run(path, {"amount": 5}, secrets={"UNUSED_KEY": "unused-1"})
    report = sagac.run(path, {"amount": 5, "coupon": "C1"}, secrets={"PAY_KEY": "k-123"})
    assert report.status == "succeeded"


def test_template_error_for_a_secret_names_the_variable() -> None:
    engine = TemplateEngine({})
    with pytest.raises(
        Exception, match="secret PAY_KEY is not set: set the environment variable PAY_KEY"
    ):
        engine.render("{{ secrets.PAY_KEY }}", {"input": {}})


def test_when_reading_a_missing_optional_key_says_how_to_default(saga, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path, _ = saga
    monkeypatch.setenv("PAY_KEY", "k-123")
    code = main(["run", path, "--input", '{"amount": 5}', "--store", "memory", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["failure"]["code"] == "TEMPLATE_ERROR"
    assert (
        "the input has no key 'coupon'; if it is optional, write `input.coupon | default(none)` "
        "or test `input.coupon is defined`" in report["failure"]["message"]
    )


def test_forgotten_input_says_how_to_pass_it(saga, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path, mod = saga
    monkeypatch.setenv("PAY_KEY", "k-123")
    assert main(["run", path, "--store", "memory"]) == 4
    err = capsys.readouterr().err
    assert "error[INVALID_INPUT]: no --input was given, and this saga requires input" in err
    assert "'amount' is a required property" in err
    assert """hint: this saga takes input (amount): pass it with --input '{"amount": ...}'""" in err
    assert mod.LOG == []  # type: ignore[attr-defined]


def test_input_from_stdin(saga) -> None:  # type: ignore[no-untyped-def]
    path, _ = saga
    result = sagac(
        "run",
        path,
        "--input",
        "-",
        "--store",
        "memory",
        stdin=b'{"amount": 5, "coupon": "C1"}',
        env={"PAY_KEY": "k-123456"},
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"succeeded" in result.stdout


def test_endless_input_is_refused_at_the_limit(saga) -> None:  # type: ignore[no-untyped-def]
    path, _ = saga
    result = sagac("run", path, "--input", "@/dev/zero", "--store", "memory")
    assert result.returncode == 4
    assert (
        b"error[INVALID_INPUT]: the input file /dev/zero holds more than 64 MiB of input"
        in result.stderr
    )


def test_oversized_stdin_is_refused_at_the_limit(saga) -> None:  # type: ignore[no-untyped-def]
    path, _ = saga
    result = sagac(
        "run", path, "--input", "-", "--store", "memory", stdin=b" " * (65 * 1024 * 1024)
    )
    assert result.returncode == 4
    assert b"stdin holds more than 64 MiB of input" in result.stderr
    assert b"Traceback" not in result.stderr


def test_input_file_not_utf8_is_invalid_input(saga, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path, _ = saga
    bad = tmp_path / "in.json"
    bad.write_bytes(b'{"amount": 5, "note": "caf\xe9"}')
    assert main(["run", path, "--input", f"@{bad}", "--store", "memory"]) == 4
    assert "is not UTF-8" in capsys.readouterr().err


def test_events_file_is_read_with_a_limit(saga, capsys) -> None:  # type: ignore[no-untyped-def]
    path, _ = saga
    import sagac.commands.diagram as diagram

    code = main(["diagram", path, "--events", "/dev/zero"])
    assert code == 64
    limit = diagram.MAX_EVENTS_BYTES // (1024 * 1024)
    assert f"events file /dev/zero is larger than {limit} MiB" in capsys.readouterr().err
