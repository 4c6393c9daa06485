"""What the semantic checks share: the saga's facts, computed once, and how to report.

`Facts` holds what several checks ask about the saga's shape (ancestry as bitsets, enclosing
groups, `on_failure` membership), so that each check stays linear in the size of the saga.
Nothing here reports a problem: this module only answers questions and builds diagnostics.
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import ir
from .diagnostics import Diagnostic
from .graph import ON_FAILURE, SagaGraph, waits_for_children
from .loader import Document


def diag(
    doc: Document,
    code: str,
    msg: str,
    path: ir.Path,
    hint: str | None = None,
    *,
    key: bool = False,
) -> Diagnostic:
    mark = doc.source.at(path, key=key)
    return Diagnostic(code, msg, doc.file, mark.line, mark.column, hint)


def did_you_mean(word: str, choices: Any) -> str:
    guess = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean `{guess[0]}`? " if guess else ""


_walks: dict[int, list[ir.AnyNode]] = {}  # id(saga) -> its walk, for as long as it lives


def saga_nodes(saga: ir.Saga) -> list[ir.AnyNode]:
    """`saga.walk()`, computed once per saga (every check walks it).

    The cache never keeps a saga's nodes alive past the saga itself: freeing a large saga's
    IR takes a while, and it belongs to the compilation that made it, not to the next one.
    """
    nodes = _walks.get(id(saga))
    if nodes is None:
        nodes = _walks[id(saga)] = saga.walk()
        weakref.finalize(saga, _walks.pop, id(saga), None)
    return nodes


def retried(policies: tuple[ir.RetryPolicy, ...]) -> int:
    """The most attempts a list of policies allows in all (1: not retried).

    As in `runtime/retry.py`, an error uses the first policy whose `on` names its code, and each
    policy counts its own retries: a policy with `max_attempts: N` adds N - 1 retries, unless
    every code it names is taken by an earlier policy (it can then never apply).
    """
    taken: set[str] = set()
    attempts = 1
    for p in policies:
        if not set(p.on) <= taken:
            attempts += max(p.max_attempts - 1, 0)
        taken.update(p.on)
    return attempts


def own_policies(policies: tuple[ir.RetryPolicy, ...]) -> tuple[ir.RetryPolicy, ...]:
    """The policies written on the node itself, not inherited from `defaults`."""
    return tuple(p for p in policies if p.path[:1] != ("defaults",))


def action_refs(saga: ir.Saga) -> Iterator[tuple[ir.Effectful, ir.ActionRef, bool]]:
    """Every action reference: (node, ref, whether it is the node's compensation)."""
    for node in saga_nodes(saga):
        n = ir.effectful(node)
        if n is not None:
            yield n, n.action, False
            if n.compensate:
                yield n, n.compensate.action, True


class Ancestry:
    """Which nodes are certain to have completed before a node starts, as one bitset per node.

    Built in a single pass over `graph.ancestry` in topological order (a node's set is the
    union of its predecessors' sets and bits), so a 10,000-step chain costs a few milliseconds
    where a graph search per question would be quadratic.
    """

    def __init__(self, graph: SagaGraph) -> None:
        preds = graph.ancestry
        self.index: dict[str, int] = {}
        self.masks: dict[str, int] = {}
        order = graph.topological_order()
        if order is None:  # a cycle was reported (E013): answer "unknown"
            self.ok = False
            return
        self.ok = True
        for i, n in enumerate(order):
            self.index[n] = i
        for n in order:
            mask = 0
            for p in preds[n]:
                mask |= self.masks[p] | (1 << self.index[p])
            self.masks[n] = mask

    def bit(self, node: str) -> int:
        return 1 << self.index[node] if node in self.index else 0

    def is_ancestor(self, a: str, node: str) -> bool:
        """Whether `a` is certain to have completed before `node` starts (unknown: True)."""
        if not self.ok:
            return True
        return bool(self.masks.get(node, 0) & self.bit(a))


@dataclass(slots=True)
class Facts:
    """What several checks need to know about the saga's shape, computed once."""

    saga: ir.Saga
    graph: SagaGraph
    ancestry: Ancestry
    # node id -> the node (a parallel group, a switch) whose branch (case) holds it
    group_of: dict[str, str]
    in_on_failure: set[str]
    # node id -> the outermost node it may not run in, although that node completed (a branch
    # of an `any` group, a case of a switch: `graph.waits_for_children`)
    in_optional_branch: dict[str, str]

    @classmethod
    def of(cls, saga: ir.Saga, graph: SagaGraph) -> Facts:
        group_of: dict[str, str] = {}
        for n in saga_nodes(saga):
            for nodes in ir.children(n):
                for child in nodes:
                    group_of[child.id] = n.id
        in_on_failure = {
            nid for nid, key in graph.scope_of.items() if _root_scope(graph, key) == ON_FAILURE
        }
        in_any: dict[str, str] = {}
        for n in saga_nodes(saga):  # outer groups come first in a depth-first walk
            if not waits_for_children(n):
                for child in ir.descendants(n):
                    in_any.setdefault(child.id, n.id)
        return cls(saga, graph, Ancestry(graph), group_of, in_on_failure, in_any)

    def switch_around(self, target: str, reader: str | None) -> str | None:
        """The innermost switch with a case that holds `target` but not `reader` (None: the
        saga's `output`): that case may not have run when `reader` starts."""
        scopes = set()
        node = reader
        while node is not None:
            scopes.add(self.graph.scope_of[node])
            node = self.group_of.get(node)
        node = target
        while (group := self.group_of.get(node)) is not None:
            switch = isinstance(self.graph.nodes[group], ir.SwitchNode)
            if switch and self.graph.scope_of[node] not in scopes:
                return group
            node = group
        return None


def _root_scope(graph: SagaGraph, key: str) -> str:
    while key in graph.scopes and graph.scopes[key].owner is not None:
        owner = graph.scopes[key].owner
        assert owner is not None
        key = graph.scope_of[owner]
    return key
