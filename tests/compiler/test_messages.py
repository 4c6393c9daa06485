"""Diagnostics that say where and what to do (issue 10, items 6, 15 and 19): tabs, bad bytes
at their place, one diagnostic per mistake, both layers of `validate`, and saga files read with
a limit whatever the source (a device, a FIFO, a huge file), through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sagac.compiler.formatting import format_text
from sagac.compiler.loader import MAX_BYTES, load_file
from sagac.compiler.pipeline import compile_text


def sagac(
    *argv: str, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real `sagac` command in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "sagac", *argv],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_tab_in_indentation_is_named_at_its_place(tmp_path: Path) -> None:
    saga = tmp_path / "tab.yaml"
    saga.write_text("saga: x\nsteps:\n  - id: a\n    action: {mock: {}}\n  \twith: {}\n")
    result = sagac("validate", str(saga))
    assert result.returncode == 65
    assert f"{saga}:5:3: error[E001]: tab character in the indentation: YAML forbids tabs" in (
        result.stderr
    )
    assert "hint: indent with spaces" in result.stderr


def test_non_utf8_byte_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    saga = tmp_path / "latin1.yaml"
    saga.write_bytes('saga: x\nsteps:\n  - id: a\n    with: {x: "café"}\n'.encode("latin-1"))
    result = sagac("validate", str(saga))
    assert result.returncode == 65
    assert f"{saga}:4:19: error[E001]: file is not UTF-8: byte 0xe9" in result.stderr


def test_control_character_is_reported_at_its_place() -> None:
    c = compile_text('saga: x\nsteps:\n  - id: a\n    with: {x: "a\x01"}\n', "ctl.yaml")
    [d] = c.diagnostics
    assert (d.code, d.line, d.column) == ("E001", 4, 17)
    assert "#x0001" in d.message and d.hint and "\\u0001" in d.hint


def test_a_wrong_type_is_one_diagnostic() -> None:
    c = compile_text("saga: x\nsteps:\n  - id: a\n    action: {mock: {}}\n    retry: 3\n")
    assert [(d.code, d.line, d.column) for d in c.diagnostics] == [("E010", 5, 12)]
    assert "expected a mapping or a list, got an integer" in c.diagnostics[0].message


BOTH_LAYERS = """\
saga: both
actions:
  used_by_gone: {mock: {}}
steps:
  - id: a
    action: {mock: {}}
    retry: 3
    with: {x: "{{ steps.a.result }}"}
  - id: b
    action: {mock: {}}
    with: {x: "{{ steps.nope.result }}"}
  - id: gone
    action: used_by_gone
    timeout: 5
    bogus: 1
  - id: c
    action: {mock: {}}
    with: {x: "{{ steps.gone.result }}"}
  - id: d
    with: {x: 1}
  - id: e
    action: {mock: {}}
    after: [d]
"""


def test_validate_reports_schema_and_semantic_errors_without_cascades(tmp_path: Path) -> None:
    saga = tmp_path / "both.yaml"
    saga.write_text(BOTH_LAYERS)
    result = sagac("validate", "--format", "json", str(saga))
    assert result.returncode == 65
    found = [(d["code"], d["line"], d["column"]) for d in json.loads(result.stdout)]
    assert found == [
        ("E010", 7, 12),  # a: retry: 3, once
        ("E022", 11, 15),  # b: a semantic error, in a step the schema accepted
        ("E010", 14, 14),  # gone: timeout without a unit
        ("E011", 15, 5),  # gone: unknown key
        ("E010", 19, 5),  # d: no action
    ]
    # Not said: that step a reads itself (a step with a schema error is not checked further),
    # that c reads a step the schema layer took out, that `after: [d]` names no node, or that
    # the action of the step taken out is unused.


def test_semantic_layer_is_skipped_when_nothing_is_readable() -> None:
    c = compile_text("saga: Not-A-Name\nsteps: []\n")
    assert {d.code for d in c.diagnostics} == {"E010"}


def test_source_lines_are_indexed_once_and_quoted_right() -> None:
    """Item 15: every diagnostic quotes its own line (the lines are split once per document)."""
    steps = "".join(
        f"  - id: s{i}\n    action: {{python: 'm:f'}}\n    retry: {{max_attempts: 2}}\n"
        for i in range(300)
    )
    c = compile_text(f"saga: many\nsteps:\n{steps}", "many.yaml")
    assert c.document is not None
    warnings = [d for d in c.diagnostics if d.code == "W101"]
    assert len(warnings) == 300
    text = format_text(warnings, lambda _f, n: c.document.line_text(n) if c.document else "")
    for d in warnings:
        assert f"{d.line:>4} |     retry: {{max_attempts: 2}}" in text
    assert c.document._lines is not None  # split once, kept


# -- saga files are read with a limit -------------------------------------------------------


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_endless_device_is_refused_at_the_limit(device: str) -> None:
    result = sagac("validate", device)
    assert result.returncode == 65, result.stderr
    assert f"{device}:1:1: error[E002]: file is larger than 16 MiB" in result.stderr
    assert "Traceback" not in result.stderr


def test_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GB that take no disk
    probe = (
        "import resource, sys\n"
        "from sagac.cli import main\n"
        "code = main(['validate', sys.argv[1]])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(big)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 65
    assert "error[E002]: file is larger than 16 MiB" in result.stderr
    peak_kib = int(result.stderr.strip().splitlines()[-1])
    assert peak_kib < 250 * 1024  # the interpreter and sagac's imports, not the file


def test_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    edge = tmp_path / "edge.yaml"
    edge.write_bytes(b"#" * MAX_BYTES)
    doc, diags = load_file(edge)
    assert doc is not None and not diags  # a comment only: an empty document


def test_fifo_without_writer_ends_with_a_message(tmp_path: Path) -> None:
    fifo = tmp_path / "saga.yaml"
    os.mkfifo(fifo)
    result = sagac("validate", str(fifo), timeout=30)
    assert result.returncode == 65
    assert "error[E004]: cannot read file: nothing was written to it" in result.stderr


def test_endless_fifo_is_refused_at_the_limit(tmp_path: Path) -> None:
    fifo = tmp_path / "saga.yaml"
    os.mkfifo(fifo)
    writer = subprocess.Popen(  # writes until its reader goes away
        [
            sys.executable,
            "-c",
            f"import sys\nf = open({str(fifo)!r}, 'wb')\nwhile True: f.write(b'#' * 65536)",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        result = sagac("validate", str(fifo), timeout=60)
    finally:
        writer.kill()
        writer.wait()
    assert result.returncode == 65
    assert "error[E002]: file is larger than 16 MiB" in result.stderr


def test_directory_is_a_diagnostic(tmp_path: Path) -> None:
    doc, diags = load_file(tmp_path)
    assert doc is None and diags[0].code == "E004" and "directory" in diags[0].message
