"""What the executor derives once per plan and shares between runs of that plan.

Scopes with their dependents, each node's enclosing branches and phase, ancestors across scopes,
and caches filled on first use (constant arguments, templated specs, event locations, whether a
python action is sync). `prepared(plan)` keeps the last few plans' derivations. Everything here
is a function of the plan alone: it must never hold anything of one run (input, results,
secrets), since the next run of the same plan reads it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sagac.compiler import ir
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
                if isinstance(n, ir.ParallelGroup):
                    keys = [f"{n.id}/{i}" for i in range(len(n.branches))]
                    self.branch_keys[n.id] = keys
                    for key, branch in zip(keys, n.branches, strict=True):
                        self.last_of_branch[key] = branch[-1].id
                        visit(branch, (*chain, key), phase)

        visit(saga.steps, (), "steps")
        visit(saga.on_failure, (), "on_failure")
        self.const_args: dict[int, tuple[bool, Any]] = {}
        self.spec_templated: dict[int, bool] = {}
        self.where: dict[str, dict[str, Any]] = {}
        self.sync_python: dict[int, bool] = {}
        self.ancestors = _ancestors(self)
        self.base_dir = Path(plan.file).resolve().parent if plan.file else None

    def constant(self, value: Any) -> tuple[bool, Any]:
        """(True, value) when `value` holds no template: it is rendered once, ever."""
        key = id(value)
        hit = self.const_args.get(key)
        if hit is None:
            hit = (not has_template(value), value)
            self.const_args[key] = hit
        return hit


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


def _ancestors(prep: Prepared) -> dict[str, frozenset[str]]:
    """Every node's ancestors across scopes: what certainly completed before it started."""
    memo: dict[str, frozenset[str]] = {}
    scope_of = {nid: key for key, (order, _, _) in prep.scopes.items() for nid in order}
    inside: dict[str, set[str]] = {}

    def descendants(gid: str) -> set[str]:
        if gid not in inside:
            out: set[str] = set()
            for key in prep.branch_keys.get(gid, ()):
                for nid in prep.scopes[key][0]:
                    out.add(nid)
                    out |= descendants(nid)
            inside[gid] = out
        return inside[gid]

    def anc(nid: str) -> frozenset[str]:
        if nid in memo:
            return memo[nid]
        out: set[str] = set()
        key = scope_of[nid]
        for d in prep.scopes[key][1][nid]:
            out.add(d)
            out |= descendants(d)
            out |= anc(d)
        chain = prep.chain.get(nid, ())
        if chain:
            owner = chain[-1].rsplit("/", 1)[0]
            out.add(owner)
            out |= anc(owner)
        memo[nid] = frozenset(out)
        return memo[nid]

    for nid in scope_of:
        anc(nid)
    return memo
