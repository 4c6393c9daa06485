"""Task steps and `fail` nodes: the two handlers that end in one action call or none.

`run_task` renders a step's arguments and idempotency key (a resumed step keeps the key the
journal recorded), picks the action (`fail=` override, simulated stand-in, or its own) and hands
the attempts to the one attempt loop (`attempts.Attempts` with `TASK`, or through
`callbacks.attempts` with `CALLBACK` for a step with `callback:`); a step that fails for
good is journaled once, through `RunContext.fail_node`. `run_fail` fails the run with the
node's code and rendered message. This module must never schedule other nodes nor journal an
attempt's events (`attempts` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagac.compiler import ir

from sagac.errors import StepError

from . import callbacks
from .attempts import TASK, Attempts, AttemptsFailed
from .callbacks import CALLBACK
from .context import RunContext


async def run_task(
    ctx: RunContext, node: ir.TaskStep, scope: Mapping[str, Any], extra: Mapping[str, Any] | None
) -> Any:
    nid = node.id
    t0 = ctx.clock.monotonic()
    rec = ctx.state.steps.get((nid, None)) if ctx.state is not None else None
    # A simulated run calls no action, so nothing would call back: the step runs as any other.
    callback = node.callback is not None and not ctx.simulate
    try:
        # A callback step's `with` reads its token: rendered per attempt (`callbacks`).
        args = None if callback else ctx.render_args(node.with_, scope)
        key: str | None
        if rec is not None and rec.idempotency_key is not None:
            key = rec.idempotency_key
        elif node.idempotency_key is not None:
            key = ctx.render_key(node.idempotency_key, scope)
        else:
            key = None
    except StepError as e:
        await ctx.fail_node(nid, e, 0, t0)
    spec = node.action.spec
    if ctx.overrides or ctx.simulate:
        spec = ctx.action_of(nid, spec)
    if ctx.simulate and node.has_simulate and nid not in ctx.overrides:
        try:  # the step's declared stand-in result, shaped like what the saga reads
            simulated = ctx.engine.render(node.simulate, {**scope, "args": args})
        except StepError as e:
            await ctx.fail_node(nid, e, 0, t0)
        spec = ir.MockAction(result=simulated)
    # `where` uncopied: the loop only spreads it into its events.
    where = ctx.prep.where.get(nid) or ctx.where(nid)
    loop = Attempts(
        CALLBACK if callback else TASK, ctx, nid, None, where, spec, args, scope, key,
        node.retry, node.timeout, node.deadline, node.keep, True,
    )  # fmt: skip
    loop.owner = node.compensate is not None and ctx.prep.phase[nid] == "steps"
    loop.subject = None
    try:
        if callback:
            return await callbacks.attempts(ctx, loop, node, scope, rec)
        result, _, _ = await loop.run(rec.attempt if rec is not None else 0)
    except AttemptsFailed as f:
        await ctx.fail_node(nid, f.exc, f.attempt, t0, attempted=True)
    return result


async def run_fail(
    ctx: RunContext, node: ir.FailNode, scope: Mapping[str, Any], extra: Mapping[str, Any] | None
) -> Any:
    try:
        message = ctx.engine.render_text(node.message, scope) if node.message else node.code
    except StepError as e:
        await ctx.fail_node(node.id, e, 0, 0.0)
    await ctx.fail_node(node.id, StepError(node.code, message), 0, 0.0)
