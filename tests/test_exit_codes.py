"""The exit codes are one enum (`sagac.errors.ExitCode`): the README's table and `sagac --help`
list exactly its members with its meanings, the CLI returns no number of its own, and every
error and run status maps to a member."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

from sagac.runtime.report import EXIT_CODES

import sagac.errors as errors
from sagac.errors import EXIT_MEANINGS, ExitCode, SagacError

ROOT = Path(__file__).resolve().parents[1]
CLI_FILES = [ROOT / "sagac" / "cli.py", *sorted((ROOT / "sagac" / "commands").glob("*.py"))]


def test_every_member_has_a_meaning() -> None:
    assert set(EXIT_MEANINGS) == set(ExitCode)


def test_the_readme_table_lists_exactly_the_enum_with_its_meanings() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| ([\d /]+) \| (.+) \|$", table, re.M)
    listed = {int(n): meaning for codes, meaning in rows for n in codes.split("/")}
    assert sorted(listed) == sorted(int(c) for c in ExitCode)
    assert {ExitCode(n): m for n, m in listed.items()} == {
        c: m[1] for c, m in EXIT_MEANINGS.items()
    }


def test_the_help_epilog_lists_exactly_the_enum_with_its_meanings() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sagac", "--help"], capture_output=True, text=True, check=True
    ).stdout
    epilog = " ".join(out.split("Exit codes:", 1)[1].split())
    codes = re.findall(r"(?:^|, )(\d+(?:/\d+)?) ", epilog)
    assert sorted(int(n) for c in codes for n in c.split("/")) == sorted(int(c) for c in ExitCode)
    for code, (brief, _) in EXIT_MEANINGS.items():
        number = "130/143" if code in (ExitCode.SIGINT, ExitCode.SIGTERM) else str(int(code))
        assert f"{number} {brief}" in epilog


def test_the_cli_returns_no_number_of_its_own() -> None:
    """Exit codes go through ExitCode: no `return 64`, `exit_code = 73` or `EXIT_X = 65`."""
    found = []
    for path in CLI_FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            value = None
            if isinstance(node, ast.Return) or (
                isinstance(node, ast.Assign)
                and any(
                    isinstance(t, ast.Name) and ("EXIT" in t.id or t.id == "exit_code")
                    for t in node.targets
                )
            ):
                value = node.value
            if isinstance(value, ast.Constant) and type(value.value) is int:
                found.append(f"{path.name}:{node.lineno}")
    assert found == []


def test_every_error_and_run_status_maps_to_a_member() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, SagacError)
    ]
    assert len(classes) >= 20
    for cls in classes:
        assert cls.__module__ == "sagac.errors"
        assert isinstance(cls.exit_code, ExitCode), cls
        assert cls.code.isupper(), cls
    assert all(isinstance(code, ExitCode) for code in EXIT_CODES.values())


def test_lease_held_names_its_time_as_the_journal_writes_times() -> None:
    """`sagac.errors` may not import the runtime's clock: its own formatting must match it."""
    from sagac.runtime.clock import rfc3339

    from sagac.errors import LeaseHeld

    for t in (0.0, 1.0005, 1764770000.999, 1764770000.9999, 4102444800.25):
        error = LeaseHeld("r1", "me@host:1/x", t)
        assert error.message.endswith(f"holds it until {rfc3339(t)}")
        assert error.exit_code == ExitCode.BUSY == 75
