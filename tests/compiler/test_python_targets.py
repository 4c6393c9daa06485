"""E026: python action targets are imported from the saga's folder and checked against the
`with` keys of every use; `--no-import` skips it (importing runs the module's code).

Each test writes its module under a fresh name: imported modules stay in `sys.modules`.
"""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from sagac.compiler.pipeline import compile_file

MODULE = """\
import pathlib

pathlib.Path(__file__).with_name("imported.marker").write_text("yes")


def charge(amount, currency="EUR", context=None):
    return {"id": "p1"}


def anything(**kwargs):
    return kwargs


def needs_context(order_id, context):
    return order_id


def positional(amount, /):
    return amount


class Refund:
    def __call__(self, payment_id):
        return payment_id


NOT_A_FUNCTION = 3
"""


def _saga(tmp_path: Path, steps: str, module: str = MODULE) -> tuple[Path, str]:
    name = f"acts_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(module)
    path = tmp_path / "saga.yaml"
    text = "saga: s\nsteps:\n" + textwrap.indent(textwrap.dedent(steps), "  ")
    path.write_text(text.replace("MOD", name))
    return path, name


def _e026(tmp_path: Path, steps: str, module: str = MODULE) -> list[str]:
    path, _ = _saga(tmp_path, steps, module)
    return [d.message for d in compile_file(path, imports=True).diagnostics if d.code == "E026"]


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ('- {id: a, action: {python: "MOD:charge"}, with: {amount: 1}}', None),
        ('- {id: a, action: {python: "MOD:charge"}, with: {amount: 1, currency: X}}', None),
        ('- {id: a, action: {python: "MOD:anything"}, with: {x: 1, y: 2}}', None),
        # `context` is the runtime's to pass, even when the function requires it.
        ('- {id: a, action: {python: "MOD:needs_context"}, with: {order_id: 1}}', None),
        ('- {id: a, action: {python: "MOD:Refund"}, with: {}}', None),  # a class is callable
        ('- {id: a, action: {python: "MOD:charge"}, with: {amont: 1}}', "no argument 'amont'"),
        ('- {id: a, action: {python: "MOD:charge"}}', "required argument(s) 'amount'"),
        (
            '- {id: a, action: {python: "MOD:needs_context"}, with: {order_id: 1, context: 2}}',
            "`context` is the step context",
        ),
        ('- {id: a, action: {python: "MOD:positional"}, with: {amount: 1}}', "positional-only"),
        ('- {id: a, action: {python: "MOD:chrage"}}', "has no attribute 'chrage' (did you mean"),
        ('- {id: a, action: {python: "MOD:NOT_A_FUNCTION"}}', "is a int, not a function"),
        ('- {id: a, action: {python: "no_such_pkg.mod:f"}}', "no module named 'no_such_pkg'"),
        (
            """\
            - id: a
              action: {mock: {}}
              compensate: {action: {python: "MOD:Refund"}, with: {payment: 1}}
            """,
            "the compensation of 'a' calls",
        ),
        (
            '- foreach: {id: f, items: "{{ [1] }}", as: x, action: {python: "MOD:charge"}}',
            "'f' calls",
        ),
    ],
)
def test_targets_and_arguments(tmp_path: Path, steps: str, problem: str | None) -> None:
    found = _e026(tmp_path, steps)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0], found


def test_a_named_action_is_imported_once_and_checked_at_every_use(tmp_path: Path) -> None:
    steps = """\
    - {id: a, action: pay, with: {amount: 1}}
    - {id: b, action: pay, with: {amount: 1, tip: 2}}
    - {id: c, action: pay}
    """
    path, name = _saga(tmp_path, steps)
    path.write_text(
        path.read_text().replace("steps:", f'actions:\n  pay: {{python: "{name}:charge"}}\nsteps:')
    )
    diags = [d for d in compile_file(path, imports=True).diagnostics if d.code == "E026"]
    assert [(d.line, d.message.split(" calls")[0]) for d in diags] == [(6, "'b'"), (7, "'c'")]


def test_a_module_that_fails_on_import_is_reported(tmp_path: Path) -> None:
    found = _e026(tmp_path, '- {id: a, action: {python: "MOD:f"}}', "raise SystemExit(3)\n")
    assert len(found) == 1 and "importing" in found[0] and "SystemExit: 3" in found[0]
    found = _e026(tmp_path, '- {id: a, action: {python: "MOD:f"}}', "import not_installed_x\n")
    assert "ModuleNotFoundError" in found[0] and "not_installed_x" in found[0]


def test_the_saga_folder_is_put_back_off_sys_path(tmp_path: Path) -> None:
    before = list(sys.path)
    _e026(tmp_path, '- {id: a, action: {python: "MOD:charge"}, with: {amount: 1}}')
    assert sys.path == before


def test_compiling_without_imports_runs_no_code(tmp_path: Path) -> None:
    path, _ = _saga(tmp_path, '- {id: a, action: {python: "MOD:chrage"}}')
    assert compile_file(path).ok()
    assert not (tmp_path / "imported.marker").exists()


def test_cli_validate_imports_and_no_import_skips(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    path, _ = _saga(tmp_path, '- {id: a, action: {python: "MOD:charge"}, with: {amont: 1}}')
    result = run_cli("validate", str(path))
    assert result.code == 65
    assert "error[E026]" in result.err and "did you mean 'amount'" in result.err
    (tmp_path / "imported.marker").unlink()
    result = run_cli("validate", "--no-import", str(path))
    assert result.code == 0, result.err
    assert not (tmp_path / "imported.marker").exists()  # nothing was imported


def test_cli_help_documents_no_import(run_cli, capsys) -> None:  # type: ignore[no-untyped-def]
    for command in ("validate", "compile", "run"):
        with pytest.raises(SystemExit):
            run_cli(command, "--help")
        assert "--no-import" in capsys.readouterr().out


def test_cli_compile_keeps_stdout_json_when_a_module_prints(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    module = 'print("hello from import")\n\ndef f(x):\n    return x\n'
    path, _ = _saga(tmp_path, '- {id: a, action: {python: "MOD:f"}, with: {x: 1}}', module)
    result = run_cli("compile", str(path))
    assert result.code == 0, result.err
    assert json.loads(result.out)["saga"] == "s"
    assert "hello from import" in result.err


def test_cli_run_refuses_a_bad_target_before_any_step_runs(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    module = MODULE + textwrap.dedent(
        """
        def first():
            pathlib.Path(__file__).with_name("first.ran").write_text("yes")
        """
    )
    steps = """\
    - {id: a, action: {python: "MOD:first"}}
    - {id: b, action: {python: "MOD:charge"}, with: {amont: 1}}
    """
    path, _ = _saga(tmp_path, steps, module)
    result = run_cli("run", "--store", "memory", str(path))
    assert result.code == 65 and "E026" in result.err
    assert not (tmp_path / "first.ran").exists()
    # Without the check the run starts, and the step fails when it is reached.
    result = run_cli("run", "--store", "memory", "--no-import", str(path))
    assert result.code == 1
    assert (tmp_path / "first.ran").exists() and "UNEXPECTED" in result.err
