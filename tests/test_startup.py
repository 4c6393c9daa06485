"""What a command imports before it does anything: `--help` and the public names stay light.

Checked by module, never by time (startup time is measured in `bench/startup.py`): the heavy
libraries load only in the commands that use them, when they run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "networkx",
    "jinja2",
    "jsonschema",
    "pydantic",
    "rich",
    "httpx",
    "yaml",
    "starlette",
    "uvicorn",
)


def imported(args: list[str], cwd: Path) -> set[str]:
    """Every module a `python ARGS` process imported (from -X importtime)."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "cumulative" not in line
    }


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["run", "--help"],
        ["validate", "--help"],
        ["diagram", "--help"],
        ["resume", "--help"],
        ["signal", "--help"],
        ["callback", "--help"],
        ["submit", "--help"],
        ["worker", "--help"],
        ["workers", "--help"],
        ["tokens", "create", "--help"],
        ["store", "migrate", "--help"],
        ["serve", "--help"],
    ],
)
def test_help_imports_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    modules = imported(["-m", "sagac", *args], tmp_path)
    assert "sagac.cli" in modules  # the probe sees the command's imports
    assert heavy(modules) == []
    assert "asyncio" not in modules  # a tenth of `--help`: only commands that run load it
    assert not modules & {
        "sagac.compiler.ir",
        "sagac.compiler.pipeline",
        "sagac.compiler.render.pages",
        "sagac.runtime.executor",
    }


def test_public_exceptions_import_without_the_libraries(tmp_path: Path) -> None:
    code = "from sagac import StepError, SagacError, UsageError; import sagac; sagac.__all__"
    assert heavy(imported(["-c", code], tmp_path)) == []


def test_lazy_exports_resolve_on_use(tmp_path: Path) -> None:
    code = (
        "import sys, sagac\n"
        "from sagac.compiler.render import FORMATS\n"
        "assert 'jinja2' not in sys.modules and 'pydantic' not in sys.modules\n"
        "assert sagac.Plan.__name__ == 'Plan' and 'pydantic' in sys.modules\n"
        "from sagac.compiler.render import render_mermaid\n"
        "assert callable(render_mermaid) and 'jinja2' in sys.modules\n"
        "assert all(getattr(sagac, n) is not None for n in sagac.__all__)\n"
    )
    imported(["-c", code], tmp_path)


def test_a_run_does_not_load_what_it_does_not_use(tmp_path: Path) -> None:
    """No http action: no httpx; no terminal: no rich; a diagram's renderers never."""
    saga = tmp_path / "small.yaml"
    saga.write_text(
        "saga: small\nsteps:\n  - {id: a, action: {mock: {result: {}}}}\n", encoding="utf-8"
    )
    modules = imported(["-m", "sagac", "run", str(saga), "--store", "memory"], tmp_path)
    assert "sagac.runtime.executor" in modules
    assert [m for m in heavy(modules) if m.split(".")[0] in ("httpx", "rich")] == []
    assert not [m for m in modules if m.startswith("sagac.compiler.render.")]
