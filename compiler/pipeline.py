"""The compiler's front door: text -> Document -> schema -> IR -> checks -> graph -> plan.

Each stage consumes the previous stage's output; a stage that finds errors stops the pipeline
after reporting *all* of its own diagnostics, so one run shows every problem it can.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sagac.errors import DefinitionError

from . import ir
from .checks import check_ids, check_semantics
from .diagnostics import Diagnostic, Severity
from .graph import SagaGraph, build_graph
from .loader import Document, load_file, load_text
from .lower import lower
from .plan import Plan, build_plan
from .recover import credible, readable_part
from .schema import check_schema


@dataclass(slots=True)
class Compilation:
    """Everything one compilation produced; `plan` is None when there were errors."""

    file: str
    document: Document | None = None
    saga: ir.Saga | None = None
    graph: SagaGraph | None = None
    plan: Plan | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def errors(self, *, strict: bool = False) -> list[Diagnostic]:
        return [d for d in self.diagnostics if strict or d.level is Severity.ERROR]

    def ok(self, *, strict: bool = False) -> bool:
        return not self.errors(strict=strict)


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


def _compile(
    doc: Document | None, diags: list[Diagnostic], file: str, imports: Path | None = None
) -> Compilation:
    c = Compilation(file, doc, diagnostics=list(diags))
    if doc is not None:
        _stages(c, doc, file, imports)
    c.diagnostics.sort(key=lambda d: (d.line, d.column, d.code))
    return c


def _stages(c: Compilation, doc: Document, file: str, imports: Path | None) -> None:
    c.diagnostics.extend(check_schema(doc))
    if c.errors():
        _readable_stages(c, doc, imports)
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
    c.graph, graph_diags = build_graph(c.saga, doc)
    c.diagnostics.extend(graph_diags)
    c.diagnostics.extend(check_semantics(c.saga, c.graph, doc))
    if imports is not None:
        from .targets import check_python_targets  # runs user code: only when asked

        c.diagnostics.extend(check_python_targets(c.saga, doc, imports))
    if not c.errors():
        c.plan = build_plan(c.saga, c.graph, doc.data, file)


def _readable_stages(c: Compilation, doc: Document, imports: Path | None) -> None:
    """After schema errors: the semantic checks of the part of `doc` the schema accepts, so
    that one `validate` shows both layers; only what does not follow from a cut is kept."""
    readable = readable_part(doc)
    if readable is None:
        return
    part = Compilation(c.file, readable.document)
    try:
        _stages(part, readable.document, c.file, imports)
    except Exception:
        return
    c.diagnostics.extend(credible(part.diagnostics, readable))


def compile_text(text: str, file: str = "<string>") -> Compilation:
    with paused_gc():
        doc, diags = load_text(text, file)
        return _compile(doc, diags, file)


def compile_file(path: str | Path, *, imports: bool = False) -> Compilation:
    """Compile the saga in `path`. With `imports`, python action targets are imported from the
    saga's folder and checked against their uses (E026): that runs the modules' code."""
    with paused_gc():
        doc, diags = load_file(path)
        return _compile(doc, diags, str(path), Path(path).parent if imports else None)


def load(path: str | Path, *, strict: bool = False, imports: bool = False) -> Plan:
    """The plan of the saga in `path`; raises `DefinitionError` listing every diagnostic."""
    c = compile_file(path, imports=imports)
    if c.plan is None or not c.ok(strict=strict):
        raise DefinitionError(c.diagnostics)
    return c.plan
