"""The `sagac` compiler commands: exit codes, every problem of every file, text/JSON/SARIF."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]

INVALID = sorted((ROOT / "tests" / "fixtures" / "invalid").glob("*.yaml"))
SAGAS = sorted((ROOT / "sagas").glob("*.yaml"))

TWO_ERRORS = """\
saga: two
steps:
  - id: a
    action: {mock: {}}
    timeout: soon
  - id: b
    action: {mock: {}}
    with: {x: "{{ nope }}"}
"""


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_fixture_exits_65_with_its_code(path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    code = path.name.split("_")[0]
    result = run_cli("validate", "--strict", _rel(path))
    assert result.code == 65
    assert f"[{code}]" in result.err


def test_example_sagas_are_clean(run_cli) -> None:  # type: ignore[no-untyped-def]
    assert SAGAS, "the example sagas are missing"
    result = run_cli("validate", "--strict", *map(_rel, SAGAS))
    assert result.code == 0, result.err
    assert result.out.strip() == f"ok: {len(SAGAS)} file(s), 0 error(s), 0 warning(s)"


def test_validate_reports_every_problem_of_every_file(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    one = tmp_path / "one.yaml"
    one.write_text(TWO_ERRORS)
    other = INVALID[0]
    result = run_cli("validate", str(one), _rel(other), str(tmp_path / "missing.yaml"))
    assert result.code == 65
    assert f"{one}:5:14: error[E010]" in result.err
    assert f"{_rel(other)}:" in result.err
    assert "error[E004]: cannot read file" in result.err
    # the semantic error of step b is reported next to the schema error of step a
    assert f"{one}:8:15: error[E022]" in result.err
    assert "failed: 3 file(s), 4 error(s), 0 warning(s)" in result.err


def test_validate_json_lists_diagnostics(run_cli) -> None:  # type: ignore[no-untyped-def]
    path = ROOT / "tests/fixtures/invalid/E017_not_an_ancestor.yaml"
    result = run_cli("validate", "--format", "json", _rel(path))
    assert result.code == 65
    [d] = json.loads(result.out)
    assert d == {
        "severity": "error",
        "code": "E017",
        "message": d["message"],
        "file": _rel(path),
        "line": 12,
        "column": 16,
        "hint": d["hint"],
    }
    assert "steps.charge" in d["message"]


def test_validate_sarif_is_sarif_2_1_0(run_cli) -> None:  # type: ignore[no-untyped-def]
    paths = [_rel(p) for p in INVALID if p.name[:4] in ("E013", "W103", "E022")]
    result = run_cli("validate", "--format", "sarif", *paths)
    assert result.code == 65
    sarif = json.loads(result.out)
    assert sarif["version"] == "2.1.0"
    [run] = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["E013", "E022", "W103"]
    for r in rules:
        assert r["helpUri"].endswith(f"docs/diagnostics.md#{r['id'].lower()}")
        assert r["shortDescription"]["text"]
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels == {"E013": "error", "E022": "error", "W103": "warning"}
    for r in run["results"]:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        [loc] = r["locations"]
        region = loc["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
        assert loc["physicalLocation"]["artifactLocation"]["uri"] in paths


def test_compile_prints_a_plan_matching_its_schema(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("compile", "sagas/order_fulfillment.yaml")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    schema = json.loads(run_cli("schema", "--plan").out)
    jsonschema.Draft202012Validator(schema).validate(plan)
    assert plan["saga"] == "order_fulfillment"
    assert plan["scopes"][0]["key"] == "steps"
    assert plan["nodes"]["notify_customer"]["irreversible"] is True


def test_compile_refuses_an_invalid_saga(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("compile", "tests/fixtures/invalid/E013_cycle.yaml")
    assert result.code == 65
    assert "error[E013]: cycle: a -> b -> c -> a" in result.err
    assert result.out == ""


def test_schema_prints_a_valid_json_schema(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("schema")
    assert result.code == 0
    jsonschema.Draft202012Validator.check_schema(json.loads(result.out))


@pytest.mark.parametrize(
    "argv", [["validate"], ["compile"], ["validate", "--format", "xml", "x.yaml"], ["frobnicate"]]
)
def test_usage_errors_exit_64(run_cli, argv: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(*argv)
    assert result.code == 64
    assert "Traceback" not in result.err


def test_help_lists_the_compiler_commands(run_cli) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_:
        run_cli("--help")
    assert exit_.value.code == 0
    with pytest.raises(SystemExit):
        run_cli("validate", "--help")
