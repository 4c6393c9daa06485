"""The saga as graphs (networkx): one small DAG per node list, and one ancestry DAG overall.

A *scope* is one list of nodes: the top-level `steps`, each branch of a parallel group, or
`on_failure`. Inside a scope a node depends on the node before it, or on exactly the nodes its
`after:` names, which must be in the same scope (a branch is a sub-saga: reaching into another
branch would break the group's modes). The *ancestry* DAG links every node to what is certain
to have completed before it starts; `checks` uses it to decide what a template may read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from . import ir
from .diagnostics import Diagnostic
from .loader import Document, Mark

TOP, ON_FAILURE = "steps", "on_failure"


@dataclass(slots=True)
class Scope:
    """One list of nodes and its dependency DAG."""

    key: str  # "steps", "on_failure", or "<group>/<branch index>"
    nodes: list[ir.AnyNode]
    owner: str | None = None  # the parallel group that holds this branch
    branch: int | None = None
    deps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dag: nx.DiGraph = field(default_factory=nx.DiGraph)

    @property
    def ids(self) -> list[str]:
        return [n.id for n in self.nodes]


@dataclass(slots=True)
class SagaGraph:
    scopes: dict[str, Scope]
    scope_of: dict[str, str]  # node id -> scope key
    ancestry: nx.DiGraph  # edge a -> b: a is certain to have completed before b starts
    nodes: dict[str, ir.AnyNode]

    def ancestors(self, node_id: str) -> set[str]:
        return set(nx.ancestors(self.ancestry, node_id)) if node_id in self.ancestry else set()


def _at(doc: Document | None, path: ir.Path) -> Mark:
    # Positions are looked up only when there is something to report: recording them is costly.
    return doc.source.at(path) if doc is not None else Mark(1, 1)


def _scope_deps(scope: Scope, doc: Document | None, all_ids: set[str]) -> list[Diagnostic]:
    file = doc.file if doc is not None else "<saga>"
    diags: list[Diagnostic] = []
    ids = set(scope.ids)
    prev: str | None = None
    for n in scope.nodes:
        if n.after is None:
            deps: tuple[str, ...] = (prev,) if prev else ()
        else:
            deps = ()
            for i, ref in enumerate(n.after):
                if ref in ids and ref != n.id:
                    deps += (ref,)
                    continue
                why = (
                    "a node cannot come after itself"
                    if ref == n.id
                    else "it is not in the same list as this node"
                    if ref in all_ids
                    else "no node has that id"
                )
                mark = _at(doc, (*n.path, "after", i))
                diags.append(
                    Diagnostic(
                        "E015",
                        f"`after` of {n.id!r} names {ref!r}: {why}",
                        file,
                        mark.line,
                        mark.column,
                        "`after` may name earlier or later nodes of the same list "
                        "(the same branch, or the top-level steps)",
                    )
                )
        scope.deps[n.id] = deps
        scope.dag.add_node(n.id)
        scope.dag.add_edges_from((d, n.id) for d in deps)
        prev = n.id
    if not nx.is_directed_acyclic_graph(scope.dag):
        cycle = [u for u, _ in nx.find_cycle(scope.dag)]
        path = " -> ".join([*cycle, cycle[0]])
        by_id = {n.id: n for n in scope.nodes}
        first = by_id[cycle[0]]
        mark = _at(doc, (*first.path, "after"))
        diags.append(
            Diagnostic(
                "E013",
                f"cycle: {path}",
                file,
                mark.line,
                mark.column,
                "remove one of the `after:` edges on this cycle",
            )
        )
        # Keep later stages total: drop the back edges so the scope is a DAG again.
        scope.dag.remove_edge(cycle[-1], cycle[0])
        scope.deps[cycle[0]] = tuple(d for d in scope.deps[cycle[0]] if d != cycle[-1])
        if not nx.is_directed_acyclic_graph(scope.dag):
            scope.dag.remove_edges_from(list(scope.dag.edges))
    return diags


def build_graph(saga: ir.Saga, doc: Document | None = None) -> tuple[SagaGraph, list[Diagnostic]]:
    """Scopes, their DAGs and the ancestry DAG, with diagnostics for bad `after` and cycles."""
    nodes = {n.id: n for n in saga.walk()}
    all_ids = set(nodes)
    scopes: dict[str, Scope] = {}
    scope_of: dict[str, str] = {}
    ancestry = nx.DiGraph()
    diags: list[Diagnostic] = []

    def visit(
        key: str,
        members: tuple[ir.AnyNode, ...],
        entry: tuple[str, ...],
        owner: str | None = None,
        branch: int | None = None,
    ) -> None:
        scope = Scope(key, list(members), owner, branch)
        scopes[key] = scope
        diags.extend(_scope_deps(scope, doc, all_ids))
        for n in members:
            scope_of.setdefault(n.id, key)
            ancestry.add_node(n.id)
            before = scope.deps[n.id] or entry
            ancestry.add_edges_from((d, n.id) for d in before)
            if isinstance(n, ir.ParallelGroup):
                for i, b in enumerate(n.branches):
                    visit(f"{n.id}/{i}", b, before, n.id, i)
                    if n.mode != "any" and b:
                        sub = scopes[f"{n.id}/{i}"]
                        tails = [x for x in sub.ids if sub.dag.out_degree(x) == 0]
                        ancestry.add_edges_from((t, n.id) for t in tails)

    visit(TOP, saga.steps, ())
    visit(ON_FAILURE, saga.on_failure, ())
    return SagaGraph(scopes, scope_of, ancestry, nodes), diags
