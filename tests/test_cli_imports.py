"""The CLI's layout: command modules share only `_`-prefixed helper modules, never each other,
and drive the package through what `sagac.__all__` exports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ROOT / "sagac" / "commands"
CLI_FILES = [ROOT / "sagac" / "cli.py", *sorted(COMMANDS.glob("*.py"))]


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every `from X import names` in a file, in-function and TYPE_CHECKING
    imports included; relative modules resolved against `sagac.commands`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = "sagac.commands" + (f".{module}" if module else "")
            found.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def test_no_command_module_imports_another() -> None:
    offenders = []
    for path in sorted(COMMANDS.glob("*.py")):
        for module, names in _imports(path):
            targets = [module] if module != "sagac.commands" else [f"{module}.{n}" for n in names]
            for target in targets:
                if target.startswith("sagac.commands."):
                    leaf = target.rsplit(".", 1)[1]
                    if not leaf.startswith("_"):
                        offenders.append(f"{path.name} imports {target}")
    assert offenders == []


# Modules of the CLI itself, which it may import freely: the light error tree and its helpers;
# and the HTTP server, which only `sagac serve` imports (`tests/test_layers.py`).
CLI_MODULES = {"sagac.errors", "sagac._streams", "sagac.commands", "sagac.server"}


def test_the_cli_uses_only_what_sagac_exports() -> None:
    import sagac

    offenders = []
    for path in CLI_FILES:
        for module, names in _imports(path):
            if module == "sagac":
                offenders.extend(f"{path.name}: sagac.{n}" for n in names if n not in sagac.__all__)
            elif module.startswith("sagac.") and not any(
                module == m or module.startswith(m + ".") for m in CLI_MODULES
            ):
                offenders.append(f"{path.name}: {module} ({', '.join(names)})")
    assert offenders == []


def test_all_lists_exactly_the_lazy_exports_and_each_resolves() -> None:
    import sagac

    assert sorted(sagac.__all__) == sorted(["__version__", *sagac._EXPORTS])
    assert len(set(sagac.__all__)) == len(sagac.__all__)
    assert all(getattr(sagac, name) is not None for name in sagac.__all__)
