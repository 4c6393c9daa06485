"""Scheduling a list of nodes, and the one dispatch from a node's kind to its handler.

A scope (the top-level steps, each branch of a parallel group, `on_failure`) starts a node as
soon as every node it depends on has completed or been skipped. When a node fails for good the
scope starts nothing new, cancels its in-flight nodes and awaits them (a node that completed
despite the cancel counts as completed), and the failure goes up to the group or the run. Every
task belongs to the scope that started it and is awaited before that scope returns (trio's
rule): nothing is left running when `run_scope` returns.

`run_node` replays what the journal says a node already did, evaluates its `when`, then picks
its handler by kind with one `match` that mypy checks for exhaustiveness (`assert_never`): a
kind added to the IR fails type checking here until it has a handler. Every handler has the
same signature, `(ctx, node, scope, extra)`. This module must never journal a node's own
events (its handler does) nor decide anything about compensation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, assert_never

from sagac.compiler import ir

from sagac.errors import StepError

from .calls import run_call
from .context import RunContext
from .foreach import run_foreach
from .gates import run_gate
from .groups import run_group
from .outcomes import HALTED, NodeFailed
from .restore import skip_view
from .sleeps import run_sleep
from .switches import run_switch
from .tasks import run_fail, run_task
from .templates import truthy
from .waits import run_wait


async def run_scope(ctx: RunContext, key: str, extra: Mapping[str, Any] | None) -> bool:
    """Run one list of nodes; True when every node finished, False when halted (a gate is
    waiting). Raises NodeFailed when a node failed for good (after cancelling the rest)."""
    order, deps, dependents = ctx.prep.scopes[key]
    remaining = {nid: len(deps[nid]) for nid in order}
    ready = [nid for nid in order if not remaining[nid]]
    running: dict[asyncio.Task[Any], str] = {}
    failure: NodeFailed | None = None
    done_count = 0

    def finished(nid: str) -> None:
        for d in dependents[nid]:
            remaining[d] -= 1
            if not remaining[d]:
                ready.append(d)

    try:
        while True:
            while ready and failure is None and not ctx.halting:
                nid = ready.pop(0)
                if not ready and not running:
                    # The only runnable node: run it here, no task needed.
                    try:
                        out = await run_node(ctx, nid, extra)
                    except NodeFailed as f:
                        failure = f
                        break
                    if out is not HALTED:
                        done_count += 1
                        finished(nid)
                    continue
                running[asyncio.create_task(run_node(ctx, nid, extra))] = nid
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                nid = running.pop(t)
                exc = t.exception()
                if isinstance(exc, NodeFailed):
                    failure = failure or exc
                elif exc is not None:
                    raise exc
                elif t.result() is not HALTED:
                    done_count += 1
                    finished(nid)
            if failure is not None and running:
                # Their own failures and completions are journaled by the nodes themselves.
                await ctx.settle(list(running))
                running.clear()
    except BaseException:
        await ctx.settle(list(running))
        raise
    if failure is not None:
        exc = None
        try:
            raise failure
        finally:  # no local of this frame may keep the exception its traceback holds
            failure = None
    return done_count == len(order)


async def run_node(ctx: RunContext, nid: str, extra: Mapping[str, Any] | None) -> Any:
    node = ctx.prep.nodes[nid]
    if ctx.state is not None:
        rec = ctx.state.steps.get((nid, None))
        if rec is not None:
            if rec.status == "completed":
                return rec.result
            if rec.status == "skipped":
                skip_view(ctx.steps_view, node)
                return None
            if rec.status == "failed":
                raise NodeFailed(ctx.error_at(nid, rec.error or {}, rec.attempt))
    scope = ctx.scope if extra is None else {**ctx.scope, **extra}
    if node.when is not None:
        try:
            go = truthy(ctx.engine.render(node.when, scope))
        except StepError as e:
            await ctx.fail_node(nid, e, 0, 0.0)
        if not go:
            skip_view(ctx.steps_view, node)
            await ctx.emit("step_skipped", ctx.where(nid))
            return None
    match node:
        case ir.TaskStep():
            result = await run_task(ctx, node, scope, extra)
        case ir.ParallelGroup():
            result = await run_group(ctx, node, scope, extra)
        case ir.ForeachNode():
            result = await run_foreach(ctx, node, scope, extra)
        case ir.ApprovalGate():
            result = await run_gate(ctx, node, scope, extra)
        case ir.FailNode():
            result = await run_fail(ctx, node, scope, extra)
        case ir.SleepNode():
            result = await run_sleep(ctx, node, scope, extra)
        case ir.WaitNode():
            result = await run_wait(ctx, node, scope, extra)
        case ir.CallNode():
            result = await run_call(ctx, node, scope, extra)
        case ir.SwitchNode():
            result = await run_switch(ctx, node, scope, extra)
        case _:
            assert_never(node)
    if result is not HALTED:
        ctx.steps_view[nid] = {"result": result, "status": "completed"}
        if nid in ctx.cases:  # a switch: `steps.<id>.case`
            ctx.steps_view[nid]["case"] = ctx.cases[nid]
    return result
