"""`switch` nodes as the executor meets them: pick one case, run its steps as a scope.

The cases' `when`s are rendered in order with the node's scope and the first that holds runs
(else `default`, else nothing). The choice is journaled (`case_chosen`) before the case runs,
and a resumed run takes the journaled case without rendering any `when` again: the input or
earlier results may render differently now, and the steps of the first choice may have run.
The taken list is a scope of its own (`graph.branch_key(id, i)`, default's index is
`len(cases)`); its steps leave their own undo entries, so only what ran is compensated. The
result is the taken list's last node's result (null when nothing ran); `steps.<id>.case` is
the case (`RunContext.cases`). This module must never evaluate a `when` once a case is
journaled, nor compensate anything itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir

from sagac.errors import StepError

from .groups import propagate_failure
from .outcomes import HALTED, NodeFailed
from .templates import truthy

if TYPE_CHECKING:
    from .context import RunContext

Case = int | str | None  # an index from 0, "default", or None (nothing runs)


async def run_switch(
    ctx: RunContext,
    node: ir.SwitchNode,
    scope: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
) -> Any:
    t0 = ctx.clock.monotonic()
    nid = node.id
    if nid in ctx.cases:  # journaled by an earlier process: never evaluated again
        case: Case = ctx.cases[nid]
    else:
        case = await _choose(ctx, node, scope)
        ctx.cases[nid] = case
        await ctx.emit("case_chosen", {**ctx.where(nid), "case": case})
    result = None
    if case is not None:
        index = len(node.cases) if case == "default" else int(case)
        key = ctx.prep.branch_keys[nid][index]
        try:
            done = await ctx.run_scope(key, extra)
        except NodeFailed as failure:
            await propagate_failure(ctx, nid, t0, failure)
        if not done:
            return HALTED
        result = ctx.steps_view.get(ctx.prep.last_of_branch[key], {}).get("result")
    await ctx.emit(
        "step_completed",
        {**ctx.where(nid), "attempt": 1, "duration_ms": ctx.ms(t0), "result": ctx.redact(result)},
    )
    return result


async def _choose(ctx: RunContext, node: ir.SwitchNode, scope: Mapping[str, Any]) -> Case:
    """The first case whose `when` holds; a `when` that cannot render fails the node."""
    for i, c in enumerate(node.cases):
        try:
            if truthy(ctx.engine.render(c.when, scope)):
                return i
        except StepError as e:
            await ctx.fail_node(node.id, e, 0, 0.0)
    return "default" if node.default is not None else None
