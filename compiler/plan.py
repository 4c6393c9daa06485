"""The execution plan: what the runtime consumes and `sagac compile` prints as JSON.

A plan is the IR plus everything derived from the graph: the topological order and the layers
of nodes that can run together in every scope, each node's dependencies, how compensation is
ordered, the union of every error code a run can end with, and a stable hash of the definition
(a run records it; resuming under a changed definition is refused). A saga's `call` nodes
carry the plans of the sagas they call (`Plan.calls`), and its definition includes them
(`bundle`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import ir
from .errorcodes import node_codes, saga_codes
from .graph import SagaGraph, Scope

PLAN_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class ScopePlan(_Frozen):
    key: str = Field(description='"steps", "on_failure", or "<group id>/<branch index>"')
    owner: str | None = Field(None, description="The parallel group holding this branch")
    branch: int | None = None
    order: list[str] = Field(description="Topological order; ties keep declaration order")
    layers: list[list[str]] = Field(description="Nodes that may run at the same time")
    deps: dict[str, list[str]] = Field(description="Each node's dependencies in this scope")


class NodePlan(_Frozen):
    id: str
    kind: ir.NodeKind
    scope: str
    depends_on: list[str]
    compensable: bool = Field(
        description="Has a `compensate` (undone on failure); a call: its saga has one"
    )
    irreversible: bool = False
    error_codes: list[str] = Field(description="Codes this node can fail with")


class CompensationPlan(_Frozen):
    mode: Literal["sequential", "parallel"]
    rule: str
    on_compensation_failure: Literal["continue", "stop"]


class Plan(_Frozen):
    """A compiled saga. `definition` is the IR; the rest is derived from it."""

    plan_version: int = PLAN_VERSION
    saga: str
    version: int
    hash: str = Field(description="sha256 of the definition's canonical JSON")
    file: str | None = None
    compensation: CompensationPlan
    scopes: list[ScopePlan]
    nodes: dict[str, NodePlan]
    error_codes: list[str]
    calls: dict[str, Plan] = Field(
        default_factory=dict, description="The plan of the saga each `call` node runs, by its id"
    )
    definition: ir.Saga
    # The definition's canonical JSON (what `hash` hashes): a durable run keeps it in its store
    # so that a worker runs exactly this definition, called sagas included (`bundle`). Not
    # part of the plan's JSON.
    source: str = Field("", exclude=True, repr=False)

    def scope(self, key: str) -> ScopePlan:
        for s in self.scopes:
            if s.key == key:
                return s
        raise KeyError(key)


def canonical_json(data: Any) -> str:
    """The definition as JSON that ignores formatting, comments and key order, but not meaning;
    YAML reads it back as the same data."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def bundle(data: Any, calls: Mapping[str, Any]) -> Any:
    """What a saga's `source` is the canonical JSON of: its data alone when it calls no saga
    (as before calls existed), else `{"saga": DATA, "calls": {PATH: DATA, ...}}` holding every
    saga it calls, transitively, by path relative to its folder."""
    return {"saga": data, "calls": dict(calls)} if calls else data


def unbundle(data: Any) -> tuple[Any, dict[str, Any]] | None:
    """(the saga's data, its called sagas' by path) when `data` is a `bundle` with calls. A
    saga's own `saga` is its name, never a mapping: the two cannot be confused."""
    if (
        isinstance(data, dict)
        and data.keys() == {"saga", "calls"}
        and isinstance(data["saga"], dict)
        and isinstance(data["calls"], dict)
    ):
        return data["saga"], data["calls"]
    return None


def source_hash(source: str) -> str:
    """The definition hash of `canonical_json`'s text: "sha256:HEX"."""
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()


def _order_and_layers(scope: Scope) -> tuple[list[str], list[list[str]]]:
    """The scope's topological order (ties in declaration order) and its layers.

    Most scopes only ever depend backwards (no `after:`, or `after:` naming earlier nodes):
    then declaration order is the order, and a node's layer is one more than its deepest
    dependency's, found in one pass. Anything else goes to networkx (imported only then).
    """
    ids = scope.ids
    layer_of: dict[str, int] = {}
    for nid in ids:
        deps = scope.deps[nid]
        if not all(d in layer_of for d in deps):  # a dependency further down: general case
            break
        layer_of[nid] = max([layer_of[d] + 1 for d in deps], default=0)
    if len(layer_of) == len(ids):
        layers: list[list[str]] = [[] for _ in range(max(layer_of.values(), default=-1) + 1)]
        for nid in ids:
            layers[layer_of[nid]].append(nid)
        return ids, layers
    import networkx as nx

    dag = scope.dag if scope.dag is not None else scope.digraph()
    index = {nid: i for i, nid in enumerate(ids)}
    order = list(nx.lexicographical_topological_sort(dag, key=index.__getitem__))
    return order, [sorted(g, key=index.__getitem__) for g in nx.topological_generations(dag)]


def _sorted_codes(found: frozenset[str], memo: dict[frozenset[str], list[str]]) -> list[str]:
    if found not in memo:
        memo[found] = sorted(found)
    return memo[found]


def _compensable(node: ir.AnyNode, calls: Mapping[str, Plan]) -> bool:
    if isinstance(node, ir.CallNode):
        return node.id in calls and any(n.compensable for n in calls[node.id].nodes.values())
    step = ir.effectful(node)
    return step is not None and step.compensate is not None


def _codes(node: ir.AnyNode, calls: Mapping[str, Plan]) -> frozenset[str]:
    """`node_codes`, with the codes of the sagas called in it (a call fails as its child)."""
    codes = node_codes(node)
    if not calls:
        return codes
    inner = [n for n in (node, *ir.descendants(node)) if isinstance(n, ir.CallNode)]
    return codes.union(*(calls[n.id].error_codes for n in inner if n.id in calls))


def build_plan(
    saga: ir.Saga,
    graph: SagaGraph,
    data: Any,
    file: str | None = None,
    calls: Mapping[str, Plan] | None = None,
    sources: Mapping[str, Any] | None = None,
) -> Plan:
    """The plan of `saga`; `calls`: the plan of each call node's saga, by the node's id;
    `sources`: the data of every saga it calls, transitively, by path (see `bundle`)."""
    calls = calls or {}
    scopes: list[ScopePlan] = []
    nodes: dict[str, NodePlan] = {}
    codes: dict[frozenset[str], list[str]] = {}  # most nodes share their set of codes
    for scope in graph.scopes.values():
        order, layers = _order_and_layers(scope)
        scopes.append(
            ScopePlan(
                key=scope.key,
                owner=scope.owner,
                branch=scope.branch,
                order=order,
                layers=layers,
                deps={nid: list(scope.deps[nid]) for nid in scope.ids},
            )
        )
        for n in scope.nodes:
            nodes[n.id] = NodePlan(
                id=n.id,
                kind=n.kind,
                scope=scope.key,
                depends_on=list(scope.deps[n.id]),
                compensable=_compensable(n, calls),
                irreversible=ir.irreversible(n),
                error_codes=_sorted_codes(_codes(n, calls), codes),
            )
    rule = (
        "reverse order of completion (LIFO), one at a time"
        if saga.compensation == "sequential"
        else "reverse DAG: a compensation waits only for those of the steps that depended on it"
    )
    source = canonical_json(bundle(data, sources or {}))
    error_codes = saga_codes(saga)
    if calls:
        error_codes = sorted(set(error_codes).union(*(p.error_codes for p in calls.values())))
    return Plan(
        saga=saga.saga,
        version=saga.version,
        hash=source_hash(source),
        source=source,
        file=file,
        compensation=CompensationPlan(
            mode=saga.compensation,
            rule=rule,
            on_compensation_failure=saga.on_compensation_failure,
        ),
        scopes=scopes,
        nodes=nodes,
        error_codes=error_codes,
        calls=dict(calls),
        definition=saga,
    )
