"""Rules of the layout that no type checker sees: the compiler never imports the runtime, and
the event table in docs/runtime.md lists exactly the types `runtime/events.py` declares."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sagac.runtime.events import EVENT_FIELDS

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, in-function and TYPE_CHECKING imports included (relative
    ones resolved against the package `sagac.compiler...`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = "sagac." + ".".join(path.relative_to(ROOT).parent.parts)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
    return found


def test_the_compiler_never_imports_the_runtime() -> None:
    files = sorted((ROOT / "compiler").rglob("*.py"))
    assert files
    offenders = {
        str(f.relative_to(ROOT)): sorted(m for m in _imports(f) if m.startswith("sagac.runtime"))
        for f in files
    }
    assert {f: m for f, m in offenders.items() if m} == {}


def test_docs_list_every_event_type_the_runtime_declares() -> None:
    text = (ROOT / "docs" / "runtime.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M)) & {
        t for t in re.findall(r"`([a-z]+_[a-z_]+)`", text)
    }
    table = {
        t
        for t in documented
        if t.split("_")[0]
        in {"saga", "step", "group", "approval", "batch", "cancel", "compensation", "process"}
    }
    assert table == set(EVENT_FIELDS)
