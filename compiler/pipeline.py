"""The compiler's front door: text -> Document -> schema -> IR -> checks -> graph -> plan.

Each stage consumes the previous stage's output; a stage that finds errors stops the pipeline
after reporting *all* of its own diagnostics, so one run shows every problem it can. The saga
each `call` node names is compiled with its caller, after the ids are checked (each file once;
E027, E028, E029: see `calls.py`).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagac.errors import DefinitionError

from . import calls, ir
from .check_facts import diag
from .checks import check_ids, check_semantics
from .diagnostics import Diagnostic, Severity
from .graph import SagaGraph, build_graph
from .loader import Document, load_file, load_text
from .lower import lower
from .plan import Plan, build_plan, canonical_json, unbundle
from .recover import credible, readable_part
from .schema import check_schema


@dataclass(slots=True)
class Compilation:
    """Everything one compilation produced; `plan` is None when there were errors.

    `called`: every saga it calls, transitively, by file name, each compiled once; their
    diagnostics (against their own files) follow its own in `diagnostics`."""

    file: str
    document: Document | None = None
    saga: ir.Saga | None = None
    graph: SagaGraph | None = None
    plan: Plan | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    called: dict[str, Compilation] = field(default_factory=dict)

    def errors(self, *, strict: bool = False) -> list[Diagnostic]:
        return [d for d in self.diagnostics if strict or d.level is Severity.ERROR]

    def ok(self, *, strict: bool = False) -> bool:
        return not self.errors(strict=strict)

    def line_text(self, file: str, line: int) -> str:
        """Line `line` of `file`, this saga's or a called one's ("" if neither)."""
        c = self if file == self.file else self.called.get(file)
        return c.document.line_text(line) if c is not None and c.document is not None else ""


@dataclass(slots=True, eq=False)
class _Unit:
    """One saga of a compilation: the one asked for, or one it calls."""

    c: Compilation
    open: bool = True  # being compiled: a call to it now is a cycle
    current: ir.CallNode | None = None  # the call whose saga is being compiled
    sources: dict[str, Any] = field(default_factory=dict)  # what `plan.bundle` takes


@dataclass(slots=True)
class _Tree:
    """A saga and every saga it calls, each compiled once."""

    read: calls.Reader | None  # None: compiled from text, nothing to read a called saga from
    identity: Callable[[str], str]  # the same file, however a call names it
    imports: bool
    units: dict[str, _Unit] = field(default_factory=dict)  # by identity, as first met
    stack: list[_Unit] = field(default_factory=list)
    cycles: list[frozenset[int]] = field(default_factory=list)  # ids of the units in each


@contextmanager
def paused_gc() -> Iterator[None]:
    """Run without the cyclic garbage collector, which compiling triggers over and over.

    A compilation allocates hundreds of thousands of acyclic objects; each burst of them sets
    off a full collection that walks everything alive. Pausing it halves the time of a
    10,000-step saga; reference counting still frees everything as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _compile(doc: Document | None, diags: list[Diagnostic], file: str, tree: _Tree) -> Compilation:
    """Compile the saga in `doc`, then append the diagnostics of every saga it calls."""
    c = _compile_unit(doc, diags, file, tree)
    for unit in tree.units.values():
        if unit.c is not c and _unreadable(unit.c) is None:
            c.called.setdefault(unit.c.file, unit.c)
    for called in c.called.values():
        c.diagnostics.extend(called.diagnostics)
    return c


def _compile_unit(
    doc: Document | None, diags: list[Diagnostic], file: str, tree: _Tree
) -> Compilation:
    c = Compilation(file, doc, diagnostics=list(diags))
    unit = tree.units[tree.identity(file)] = _Unit(c)
    tree.stack.append(unit)
    try:
        if doc is not None:
            _stages(c, doc, file, tree, unit)
    finally:
        tree.stack.pop()
        unit.open = False
    c.diagnostics.sort(key=lambda d: (d.line, d.column, d.code))
    return c


def _stages(c: Compilation, doc: Document, file: str, tree: _Tree, unit: _Unit | None) -> None:
    """The stages after loading; `unit` None: calls are not followed (a readable part)."""
    c.diagnostics.extend(check_schema(doc))
    if c.errors():
        _readable_stages(c, doc, tree)
        return
    try:
        c.saga = lower(doc.data)
    except (
        ValueError,
        TypeError,
        KeyError,
    ) as e:  # the schema should have said: still no traceback
        c.diagnostics.append(Diagnostic("E010", f"cannot read this saga: {e}", file))
        return
    c.diagnostics.extend(check_ids(c.saga, doc))
    if c.errors():
        return
    plans: dict[str, Plan] | None = {}
    if unit is not None and any(isinstance(n, ir.CallNode) for n in c.saga.walk()):
        plans = _follow_calls(c, doc, tree, unit)
    c.graph, graph_diags = build_graph(c.saga, doc)
    c.diagnostics.extend(graph_diags)
    c.diagnostics.extend(check_semantics(c.saga, c.graph, doc))
    if tree.imports:
        from .targets import check_python_targets  # runs user code: only when asked

        c.diagnostics.extend(check_python_targets(c.saga, doc, Path(file).parent))
    if not c.errors() and plans is not None:
        sources = unit.sources if unit is not None else {}
        c.plan = build_plan(c.saga, c.graph, doc.data, file, plans, sources)


def _follow_calls(
    c: Compilation, doc: Document, tree: _Tree, unit: _Unit
) -> dict[str, Plan] | None:
    """Compile the saga of each call node (once per file), check what the call gives it, and
    mark the calls of sagas with an irreversible step; the plans by call id, or None when
    one cannot be compiled (E027, E028)."""
    assert c.saga is not None
    plans: dict[str, Plan] = {}
    ok = True
    irreversible: set[str] = set()
    for n in c.saga.walk():
        if not isinstance(n, ir.CallNode):
            continue
        unit.current = n
        child = _called(c, doc, tree, n)
        if child is None or child.c.plan is None:
            ok = False
            if child is not None and not _in_one_cycle(tree, unit, child):
                c.diagnostics.append(_not_compiled(doc, n, child.c))
            continue
        cc, plan = child.c, child.c.plan
        assert cc.saga is not None and cc.document is not None
        c.diagnostics.extend(calls.check_with(n, cc.saga.input_schema, n.saga, doc))
        plans[n.id] = plan
        key = os.path.normpath(n.saga)
        unit.sources[key] = cc.document.data
        for k, data in child.sources.items():
            unit.sources[calls.called_file(key, k)] = data
        if any(p.irreversible for p in plan.nodes.values()):
            irreversible.add(n.id)
    unit.current = None
    c.saga = calls.mark_irreversible(c.saga, irreversible)
    return plans if ok else None


def _called(c: Compilation, doc: Document, tree: _Tree, n: ir.CallNode) -> _Unit | None:
    """The compiled saga `n` calls, or None after reporting why there is none (E027: no
    file to read it from; E028: a call cycle)."""
    at = (*n.path, "saga")
    if tree.read is None:
        msg = f"cannot read the called saga {n.saga}: this saga was compiled from text, not a file"
        hint = "compile the saga's file (sagac validate FILE), or give compile_text a resolver"
        c.diagnostics.append(diag(doc, "E027", msg, at, hint))
        return None
    file = calls.called_file(c.file, n.saga)
    child = tree.units.get(tree.identity(file))
    if child is None:
        child_doc, diags = tree.read(file)
        _compile_unit(child_doc, diags, file, tree)
        return tree.units[tree.identity(file)]
    if child.open:  # a cycle: reported once, at the call that enters it from outside
        members = tree.stack[tree.stack.index(child) :]
        tree.cycles.append(frozenset(id(u) for u in members))
        start = members[0]
        assert start.current is not None and start.c.document is not None
        path = calls.cycle_text([u.c.file for u in members] + [child.c.file])
        start.c.diagnostics.append(
            diag(
                start.c.document,
                "E028",
                f"call cycle: {path}",
                (*start.current.path, "saga"),
                "a saga cannot call itself, directly or through others: remove one of the calls",
            )
        )
        return None
    return child


def _in_one_cycle(tree: _Tree, a: _Unit, b: _Unit) -> bool:
    return any(id(a) in cycle and id(b) in cycle for cycle in tree.cycles)


def _unreadable(c: Compilation) -> Diagnostic | None:
    """Why the file of `c` could not be read at all, if that is what went wrong."""
    if c.document is None and c.diagnostics and c.diagnostics[0].code == calls.UNREADABLE:
        return c.diagnostics[0]
    return None


def _not_compiled(doc: Document, n: ir.CallNode, child: Compilation) -> Diagnostic:
    """E027 for a call whose saga has no plan: unreadable, or with errors of its own."""
    at = (*n.path, "saga")
    unreadable = _unreadable(child)
    if unreadable is not None:
        why = unreadable.message.removeprefix("cannot read file: ")
        msg = f"the called saga {n.saga} cannot be read: {why}"
        hint = f"`saga:` is relative to the calling file's folder (looked for {child.file})"
        return diag(doc, "E027", msg, at, hint)
    errors = len(child.errors())
    what = f"has {errors} error(s)" if errors else "is part of a call cycle"
    hint = f"run `sagac validate {child.file}` to see why"
    return diag(doc, "E027", f"the called saga {n.saga} {what}", at, hint)


def _readable_stages(c: Compilation, doc: Document, tree: _Tree) -> None:
    """After schema errors: the semantic checks of the part of `doc` the schema accepts, so
    that one `validate` shows both layers; only what does not follow from a cut is kept.
    Calls are not followed from a part."""
    readable = readable_part(doc)
    if readable is None:
        return
    part = Compilation(c.file, readable.document)
    try:
        _stages(part, readable.document, c.file, tree, None)
    except Exception:
        return
    c.diagnostics.extend(credible(part.diagnostics, readable))


def compile_text(
    text: str, file: str = "<string>", *, resolver: Callable[[str], str] | None = None
) -> Compilation:
    """Compile saga text, named `file` in diagnostics. A called saga is read with
    `resolver(name)` (its text; OSError when there is none), `name` being the call's `saga:`
    joined to the folder of `file`; without a resolver a call is E027. A stored definition
    (`Plan.source`) brings the sagas it calls with it."""
    with paused_gc():
        doc, diags = load_text(text, file)
        read = calls.read_text(resolver) if resolver is not None else None
        stored = unbundle(doc.data) if doc is not None else None
        if stored is not None:
            data, called = stored
            doc, read = Document(file, canonical_json(data), data), calls.read_bundle(file, called)
        return _compile(doc, diags, file, _Tree(read, os.path.normpath, imports=False))


def compile_file(path: str | Path, *, imports: bool = False) -> Compilation:
    """Compile the saga in `path` and every saga it calls. With `imports`, python action
    targets are imported from each saga's folder and checked against their uses (E026): that
    runs the modules' code."""
    with paused_gc():
        doc, diags = load_file(path)
        return _compile(doc, diags, str(path), _Tree(load_file, os.path.realpath, imports))


def load(path: str | Path, *, strict: bool = False, imports: bool = False) -> Plan:
    """The plan of the saga in `path`; raises `DefinitionError` listing every diagnostic."""
    c = compile_file(path, imports=imports)
    if c.plan is None or not c.ok(strict=strict):
        raise DefinitionError(c.diagnostics)
    return c.plan
