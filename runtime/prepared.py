"""What the executor derives once per plan and shares between runs of that plan.

Scopes with their dependents, each node's enclosing branches and phase, and caches filled on first
use (constant arguments, templated specs, event locations, whether a python action is sync,
parallel compensation's waits). Every derivation is linear in the plan's nodes and edges: a
20,000-step saga must cost per step what a 100-step one does, so nothing here may hold a pair of
nodes per entry (no ancestor sets: they grow as n^2 on a chain). `prepared(plan)` keeps the last
few plans' derivations. Everything here is a function of the plan alone: it must never hold
anything of one run (input, results, secrets), since the next run of the same plan reads it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sagac.compiler import ir
from sagac.compiler.graph import branch_key
from sagac.compiler.plan import Plan

from .templates import has_template


class Prepared:
    """What the executor derives once per plan: scopes, dependents, constant arguments."""

    def __init__(self, plan: Plan) -> None:
        saga = plan.definition
        self.nodes: dict[str, ir.AnyNode] = {n.id: n for n in saga.walk()}
        self.scopes: dict[str, tuple[list[str], dict[str, list[str]], dict[str, list[str]]]] = {}
        for sp in plan.scopes:
            dependents: dict[str, list[str]] = {nid: [] for nid in sp.order}
            for nid, deps in sp.deps.items():
                for d in deps:
                    dependents[d].append(nid)
            self.scopes[sp.key] = (sp.order, sp.deps, dependents)
        self.branch_keys: dict[str, list[str]] = {}
        self.chain: dict[str, tuple[str, ...]] = {}  # node -> enclosing branch keys
        self.phase: dict[str, str] = {}
        self.last_of_branch: dict[str, str] = {}

        def visit(nodes: tuple[ir.AnyNode, ...], chain: tuple[str, ...], phase: str) -> None:
            for n in nodes:
                self.chain[n.id] = chain
                self.phase[n.id] = phase
                nested = ir.children(n)
                if nested:
                    keys = [branch_key(n.id, i) for i in range(len(nested))]
                    self.branch_keys[n.id] = keys
                    for key, branch in zip(keys, nested, strict=True):
                        self.last_of_branch[key] = branch[-1].id
                        visit(branch, (*chain, key), phase)

        visit(saga.steps, (), "steps")
        visit(saga.on_failure, (), "on_failure")
        self.const_args: dict[int, tuple[bool, Any]] = {}
        self.spec_templated: dict[int, bool] = {}
        self.where: dict[str, dict[str, Any]] = {}
        self.sync_python: dict[int, bool] = {}
        self._undo_graph: tuple[dict[str, int], dict[str, list[str]]] | None = None
        self.base_dir = Path(plan.file).resolve().parent if plan.file else None
        # Whether a task step waits for a callback (`callbacks.abandon` has work to do).
        self.callbacks = any(
            isinstance(n, ir.TaskStep) and n.callback is not None for n in self.nodes.values()
        )

    def constant(self, value: Any) -> tuple[bool, Any]:
        """(True, value) when `value` holds no template: it is rendered once, ever."""
        key = id(value)
        hit = self.const_args.get(key)
        if hit is None:
            hit = (not has_template(value), value)
            self.const_args[key] = hit
        return hit

    def undo_graph(self) -> tuple[dict[str, int], dict[str, list[str]]]:
        """Parallel compensation's waits, built on first use: how many vertices each vertex
        waits for, and who waits for each.

        A node's compensation waits for those of everything that depended on it, directly or
        not: its dependents in its scope and, for a group, the nodes of its branches. A node in
        a branch of group G also waits for whatever depended on G (and on the groups around
        G), through one vertex per group, `G/`, that waits for G's dependents and the vertex of
        the group around it. Edges are only these direct ones (O(nodes + edges)); the waits
        compose transitively when the executor releases a vertex once all its waits are done.
        """
        if self._undo_graph is None:
            waits: dict[str, int] = {}
            waiters: dict[str, list[str]] = {}

            def wait(x: str, y: str) -> None:
                waits[x] += 1
                waiters.setdefault(y, []).append(x)

            for key, (order, _, dependents) in self.scopes.items():
                around = key.rsplit("/", 1)[0] + "/" if "/" in key else None
                for nid in order:
                    waits[nid] = 0
                    after = nid  # the vertex that waits for whatever depended on nid
                    if nid in self.branch_keys:
                        after = f"{nid}/"
                        waits[after] = 0
                        wait(nid, after)
                        for bkey in self.branch_keys[nid]:
                            for member in self.scopes[bkey][0]:
                                wait(nid, member)
                    for t in dependents[nid]:
                        wait(after, t)
                    if around is not None:
                        wait(after, around)
            self._undo_graph = (waits, waiters)
        return self._undo_graph


_PREPARED: dict[int, tuple[Plan, Prepared]] = {}


def prepared(plan: Plan) -> Prepared:
    hit = _PREPARED.get(id(plan))
    if hit is not None and hit[0] is plan:
        return hit[1]
    if len(_PREPARED) > 32:
        _PREPARED.clear()
    prep = Prepared(plan)
    _PREPARED[id(plan)] = (plan, prep)
    return prep
