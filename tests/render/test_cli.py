"""`sagac diagram`: formats, output files, run overlays from an events file, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sagac.cli import main

from . import run_fixture
from .conftest import HERE, need_binary

SAGA = str(HERE / "sagas" / "all_kinds.yaml")


def test_mermaid_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagram", SAGA]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "flowchart TD"


@pytest.mark.parametrize("fmt", ["mermaid", "dot", "svg", "html"])
def test_every_format_to_a_file(fmt: str, tmp_path: Path) -> None:
    if fmt in ("svg", "html"):
        need_binary("dot", "graphviz")
    out = tmp_path / f"d.{fmt}"
    assert main(["diagram", SAGA, "--format", fmt, "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert {"mermaid": "flowchart TD", "dot": "digraph", "svg": "<svg", "html": "<svg"}[fmt] in text


def test_events_overlay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in run_fixture.events()) + "\n")
    assert main(["diagram", SAGA, "--events", str(events)]) == 0
    assert "classDef st_compensated" in capsys.readouterr().out


def test_bad_events_file_is_a_usage_error(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{not json\n")
    assert main(["diagram", SAGA, "--events", str(events)]) == 64


def test_invalid_saga_exits_65(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("saga: bad\nsteps: []\n")
    assert main(["diagram", str(bad)]) == 65
    assert "bad.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["svg", "html"])
def test_missing_dot_exits_69_with_a_hint(
    fmt: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no `dot` anywhere
    assert main(["diagram", SAGA, "--format", fmt]) == 69
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err and "make system-deps" in err


def test_expand_draws_the_called_saga_inline(capsys: pytest.CaptureFixture[str]) -> None:
    saga = str(HERE / "sagas" / "waits_and_calls.yaml")
    assert main(["diagram", saga]) == 0
    plain = capsys.readouterr().out
    assert main(["diagram", saga, "--expand"]) == 0
    expanded = capsys.readouterr().out
    assert "s_reserve_stock_C_reserve" in expanded and "reserve_stock_C" not in plain
    assert 'subgraph x_reserve_stock ["saga reserve_stock · called/reserve.yaml"]' in expanded


def test_a_run_of_a_switch_is_drawn_with_the_case_it_took(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real run's events (`sagac run --events`) colour the diagram: the case taken and the
    cases not taken."""
    saga = tmp_path / "route.yaml"
    saga.write_text(
        "saga: route\ninput: {type: object}\nactions:\n  ok: {mock: {result: {ok: true}}}\n"
        "steps:\n  - switch:\n      id: pick\n      cases:\n"
        '        - when: "{{ input.fast }}"\n          steps: [{id: fast, action: ok}]\n'
        "      default: [{id: slow, action: ok}]\n"
    )
    events = tmp_path / "events.jsonl"
    run = ["run", str(saga), "--input", '{"fast": false}', "--events", str(events)]
    assert main(run) == 0
    capsys.readouterr()
    assert main(["diagram", str(saga), "--events", str(events)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"pick<br>completed · [^\"]* · took default\"", out), out
    assert "  class s_fast,legend_st_skipped st_skipped" in out
