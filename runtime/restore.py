"""A resumed run's starting point: what the journal's replay says already happened.

`restore(ctx, state)` fills in the results of the top-level nodes that completed or were skipped
(what templates see as `steps.<id>`) and the `Undo` entries of everything a compensation would
have to undo, in order of completion (foreach items one block per checkpoint). It only reads the
`RunState` and the plan (a `call` whose child has not ended gets an entry too: its child is
undone if the run fails): it must never journal, call an action or decide what happens to a node
next (a node the journal shows as ended is `scheduler.run_node`'s to replay).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sagac.compiler import ir

from .journal import RunState
from .outcomes import Undo

if TYPE_CHECKING:
    from .context import RunContext


def restore(ctx: RunContext, state: RunState) -> None:
    prep = ctx.prep
    for (nid, idx), rec in state.steps.items():
        node = prep.nodes.get(nid)
        if node is None:
            continue
        if idx is None and rec.status == "completed":
            ctx.steps_view[nid] = {"result": rec.result, "status": "completed"}
            if isinstance(node, ir.SwitchNode):
                ctx.steps_view[nid]["case"] = state.cases.get(nid)
        elif idx is None and rec.status == "skipped":
            skip_view(ctx.steps_view, node)
        if isinstance(node, ir.CallNode) and idx is None and rec.status == "completed":
            if prep.phase[nid] == "steps":  # its child run undoes itself (`calls.undo_call`)
                ctx.undo.append(Undo(nid, None, rec.seq, rec.result, None, prep.chain[nid]))
            continue
        effectful = ir.effectful(node)
        comp = effectful.compensate if effectful is not None else None
        if comp is None or prep.phase[nid] != "steps":
            continue
        if isinstance(node, ir.ForeachNode) and idx is None:
            continue
        if rec.status == "completed" or (rec.status == "failed" and comp.on == "attempted"):
            ctx.undo.append(Undo(nid, idx, rec.seq, rec.result, rec.error, prep.chain[nid]))
    for nid, done in state.items_done.items():
        node = prep.nodes.get(nid)
        effectful = ir.effectful(node) if node is not None else None
        if effectful is not None and effectful.compensate and prep.phase[nid] == "steps":
            chain = prep.chain[nid]
            ctx.undo.extend(Undo(nid, None, b.seq, None, None, chain, block=b) for b in done.blocks)
    for nid, started in state.calls.items():
        if (nid, None) not in state.steps and prep.phase.get(nid) == "steps":
            # A call whose child had not ended (it parked, or the parent crashed): if the parent
            # fails now, the child undoes itself at the call's place (`calls.undo_call`).
            ctx.undo.append(Undo(nid, None, started["seq"], None, None, prep.chain[nid]))
    ctx.undo.sort(key=lambda u: u.order)


def skip_view(steps_view: dict[str, dict[str, Any]], node: ir.AnyNode) -> None:
    """Show a skipped node, and every node inside it, as skipped to templates: a later
    `steps.<id>.status == 'completed'` test is then false rather than an error."""
    for n in (node, *ir.descendants(node)):
        steps_view[n.id] = {"result": None, "status": "skipped"}
        if isinstance(n, ir.SwitchNode):
            steps_view[n.id]["case"] = None
