"""The saga as graphs: one small DAG per node list, and one ancestry DAG overall.

A *scope* is one list of nodes: the top-level `steps`, each branch of a parallel group, each
case of a switch (its `default` last), or `on_failure`. Inside a scope a node depends on the
node before it, or on exactly the nodes its `after:` names, which must be in the same scope (a
branch is a sub-saga: reaching into another branch would break the group's modes). The
*ancestry* DAG links every node to what is certain to have completed before it starts; `checks`
uses it to decide what a template may read. A branch or case starts after what its node
waits for; the node after a group has the branches' tails as ancestors too, unless the group
may complete without them (`any`, a switch: only the case taken runs).

Both are plain dicts of predecessors. A list whose `after:` names only earlier nodes (nearly
every list) is acyclic by construction and needs no graph library; only a list with an edge
pointing forward is handed to networkx (imported then: it costs more than a small saga's whole
compile), to find a cycle or, in `plan`, to order it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, assert_never

from . import ir
from .diagnostics import Diagnostic
from .loader import Document, Mark

TOP, ON_FAILURE = "steps", "on_failure"


def branch_key(node_id: str, index: int) -> str:
    """The scope key of the `index`th node list nested in a node (`ir.children`: a switch's
    `default` is the index after its cases)."""
    return f"{node_id}/{index}"


def waits_for_children(node: ir.AnyNode) -> bool:
    """Whether every node list nested in `node` has completed when `node` completes."""
    match node:
        case ir.ParallelGroup():
            return node.mode != "any"  # `any` completes with its first branch
        case ir.SwitchNode():
            return False  # only the case taken runs
        case ir.TaskStep() | ir.ApprovalGate() | ir.ForeachNode() | ir.FailNode():
            return True  # nothing nested
        case ir.SleepNode() | ir.WaitNode() | ir.CallNode():
            return True  # nothing nested
        case _:
            assert_never(node)


@dataclass(slots=True)
class Scope:
    """One list of nodes and its dependency DAG."""

    key: str  # "steps", "on_failure", or `branch_key(<owner>, <branch or case index>)`
    nodes: list[ir.AnyNode]
    owner: str | None = None  # the node (a parallel group, a switch) that holds this list
    branch: int | None = None
    deps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The networkx DAG of a list with a forward `after:` (None: every edge points backward);
    # after a cycle it lacks the edges removed to break it.
    dag: Any = None

    @property
    def ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    def digraph(self) -> Any:
        """This scope's dependencies as a networkx DiGraph (edge d -> n: n depends on d)."""
        import networkx as nx

        dag = nx.DiGraph()
        for nid in self.ids:
            dag.add_node(nid)
            dag.add_edges_from((d, nid) for d in self.deps[nid])
        return dag

    def tails(self) -> list[str]:
        """The nodes nothing in the scope depends on (a branch has completed after them)."""
        if self.dag is not None:
            return [x for x in self.ids if self.dag.out_degree(x) == 0]
        depended = {d for deps in self.deps.values() for d in deps}
        return [x for x in self.ids if x not in depended]


@dataclass(slots=True)
class SagaGraph:
    scopes: dict[str, Scope]
    scope_of: dict[str, str]  # node id -> scope key
    # node -> the nodes certain to have completed just before it starts (its predecessors)
    ancestry: dict[str, list[str]]
    nodes: dict[str, ir.AnyNode]

    def ancestors(self, node_id: str) -> set[str]:
        out: set[str] = set()
        todo = list(self.ancestry.get(node_id, ()))
        while todo:
            a = todo.pop()
            if a not in out:
                out.add(a)
                todo.extend(self.ancestry[a])
        return out

    def topological_order(self) -> list[str] | None:
        """The ancestry's nodes, each after all its predecessors; None if it has a cycle."""
        waiting = {n: len(preds) for n, preds in self.ancestry.items()}
        after: dict[str, list[str]] = {}
        for n, preds in self.ancestry.items():
            for p in preds:
                after.setdefault(p, []).append(n)
        ready = deque(n for n, count in waiting.items() if not count)
        order: list[str] = []
        while ready:
            n = ready.popleft()
            order.append(n)
            for m in after.get(n, ()):
                waiting[m] -= 1
                if not waiting[m]:
                    ready.append(m)
        return order if len(order) == len(waiting) else None


def _at(doc: Document | None, path: ir.Path) -> Mark:
    # Positions are looked up only when there is something to report: recording them is costly.
    return doc.source.at(path) if doc is not None else Mark(1, 1)


def _scope_deps(scope: Scope, doc: Document | None, all_ids: set[str]) -> list[Diagnostic]:
    file = doc.file if doc is not None else "<saga>"
    diags: list[Diagnostic] = []
    ids = set(scope.ids)
    prev: str | None = None
    earlier: set[str] = set()
    backward = True
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
        backward = backward and all(d in earlier for d in deps)
        earlier.add(n.id)
        prev = n.id
    if backward:
        return diags  # acyclic: every edge points to an earlier node
    import networkx as nx

    scope.dag = scope.digraph()
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
    ancestry: dict[str, list[str]] = {}
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
            before = scope.deps[n.id] or entry
            preds = ancestry[n.id] = list(dict.fromkeys(before))
            for i, b in enumerate(ir.children(n)):
                inner = branch_key(n.id, i)
                visit(inner, b, before, n.id, i)
                if b and waits_for_children(n):
                    preds.extend(scopes[inner].tails())

    visit(TOP, saga.steps, ())
    visit(ON_FAILURE, saga.on_failure, ())
    return SagaGraph(scopes, scope_of, ancestry, nodes), diags
