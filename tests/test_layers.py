"""Rules of the layout that no type checker sees: the compiler never imports the runtime, only
`sagac serve` imports the HTTP server, and the event table in docs/runtime.md lists exactly the
types `runtime/events.py` declares."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
from sagac.runtime.events import EVENT_FIELDS

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = ("sagac", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, in-function and TYPE_CHECKING imports included (relative
    ones resolved against the package `sagac.compiler...`). `from P import name` counts as an
    import of `P.name` too, since `name` may be a module; callers keep the names that are."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = "sagac." + ".".join(path.relative_to(ROOT).parent.parts)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            elif node.module:
                module = node.module
            else:
                continue
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return found


def test_the_compiler_never_imports_the_runtime() -> None:
    files = sorted((ROOT / "compiler").rglob("*.py"))
    assert files
    offenders = {
        str(f.relative_to(ROOT)): sorted(
            m for m in _imports(f) if m == "sagac.runtime" or m.startswith("sagac.runtime.")
        )
        for f in files
    }
    assert {f: m for f, m in offenders.items() if m} == {}


def test_only_sagac_serve_imports_the_server() -> None:
    """The HTTP server (`server/`, `sagac.server`) sits on top: it may import the runtime and
    the compiler, and nothing imports it but the `serve` command."""
    files = [
        f
        for folder in ("compiler", "runtime", "sagac", "schemas")
        for f in sorted((ROOT / folder).rglob("*.py"))
        if f != ROOT / "sagac" / "commands" / "serve.py"
    ]
    offenders = {
        str(f.relative_to(ROOT)): sorted(
            m for m in _imports(f) if m == "sagac.server" or m.startswith("sagac.server.")
        )
        for f in files
    }
    assert {f: m for f, m in offenders.items() if m} == {}
    assert "sagac.server" in _imports(ROOT / "sagac" / "commands" / "serve.py")


def test_the_runtime_has_no_import_cycles() -> None:
    """A cycle among runtime modules (counting in-function and TYPE_CHECKING imports) means two
    parts depend on each other's insides: pass state in (`RunContext`) instead."""
    files = {_module_name(f): f for f in sorted((ROOT / "runtime").rglob("*.py"))}
    assert "sagac.runtime.context" in files
    graph = nx.DiGraph()
    for name, path in files.items():
        graph.add_node(name)
        for target in _imports(path):
            # A module and its own package, either way round, are not a cycle.
            own = name.startswith(target + ".") or target.startswith(name + ".")
            if target in files and target != name and not own:
                graph.add_edge(name, target)
    assert sorted(nx.simple_cycles(graph)) == []


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
        | {"sleep", "wait", "callback", "case", "call"}
    }
    assert table == set(EVENT_FIELDS)
