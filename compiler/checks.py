"""Semantic checks on the IR: everything the schema cannot say (spec section 5).

Each check reads the IR (and the graph), reports `Diagnostic`s with stable codes, and never
raises for a user mistake.
"""

from __future__ import annotations

from collections import Counter

from . import ir
from .diagnostics import Diagnostic
from .graph import SagaGraph
from .loader import Document


def _diag(doc: Document, code: str, msg: str, path: ir.Path, hint: str | None = None) -> Diagnostic:
    mark = doc.source.at(path)
    return Diagnostic(code, msg, doc.file, mark.line, mark.column, hint)


def check_ids(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E012: ids are unique across the whole saga, nested ones included."""
    counts = Counter(n.id for n in saga.walk())
    seen: set[str] = set()
    out = []
    for n in saga.walk():
        if counts[n.id] > 1:
            if n.id in seen:
                out.append(
                    _diag(
                        doc,
                        "E012",
                        f"duplicate id {n.id!r}",
                        (*n.path, "id"),
                        "ids are unique across the saga, nested ones included; rename one",
                    )
                )
            seen.add(n.id)
    return out


def check_semantics(saga: ir.Saga, graph: SagaGraph, doc: Document) -> list[Diagnostic]:
    """Every semantic check that needs the graph."""
    out: list[Diagnostic] = []
    for n in saga.walk():
        if isinstance(n, (ir.TaskStep, ir.ForeachNode)):
            refs = [n.action] + ([n.compensate.action] if n.compensate else [])
            for ref in refs:
                if ref.spec is None:
                    out.append(
                        _diag(
                            doc,
                            "E014",
                            f"unknown action {ref.name!r}",
                            ref.path,
                            "declare it under `actions:`",
                        )
                    )
    return out
