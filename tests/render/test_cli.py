"""`sagac diagram`: formats, output files, run overlays from an events file, exit codes."""

from __future__ import annotations

import json
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
