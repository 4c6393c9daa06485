"""The executor: the outline of one run, from its first event to its report.

`Executor(plan, input, store=..., state=...)` builds the run's `RunContext` and runs it: start
a new run (or continue one from the state `journal.replay` rebuilt: `restore`, ending the
process groups a killed driver left), the forward steps (`phases.run_steps`), the saga's
`output`, and after a failure the compensation (`compensation.compensate`) and the `on_failure`
nodes (`phases.run_on_failure`); `finish` writes the last event and builds the report. Node
scheduling and the dispatch on node kinds are `scheduler`'s; each kind's handler is in its own
module. The executor never calls an action before the event that precedes it (`step_started`,
with the attempt and the idempotency key) is in the store. Hot-path state is plain dicts and
slotted classes, not pydantic.

This module must never run a node itself, nor journal after a cancel from outside the run (a
crash, a lost lease) other than the `saga_interrupted` of a signal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sagac.compiler.plan import Plan

from sagac.errors import StepError

from .callbacks import abandon
from .clock import Clock, parse_rfc3339
from .compensation import compensate
from .context import DEFAULT_SLEEP_LIMIT, RunContext
from .events import EventCallback
from .finish import finish
from .interrupts import received
from .journal import RunState
from .leases import lease_lost
from .outcomes import error_dict
from .phases import run_on_failure, run_steps
from .processes import end_orphans
from .report import RunReport
from .restore import restore
from .scheduler import run_scope
from .store.base import Definition, RunRecord, Store


class Executor:
    """One run of one plan. Use `run()` once; `state` continues a run from its journal, and
    `record` (the run's record, read with it) spares the reads it already answers."""

    def __init__(
        self,
        plan: Plan,
        input: Any,
        *,
        store: Store,
        run_id: str | None = None,
        clock: Clock | None = None,
        on_event: EventCallback | None = None,
        secrets: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        simulate: bool = False,
        state: RunState | None = None,
        record: RunRecord | None = None,
        sleep_limit: float = DEFAULT_SLEEP_LIMIT,
    ) -> None:
        self.ctx = RunContext(
            plan,
            input,
            store=store,
            run_scope=run_scope,
            run_id=run_id,
            clock=clock,
            on_event=on_event,
            secrets=secrets,
            env=env,
            overrides=overrides,
            simulate=simulate,
            state=state,
            sleep_limit=sleep_limit,
        )
        self.store = store
        self.run_id = self.ctx.run_id
        # A run started from an empty journal (submitted, queued) whose record, read just now
        # by its driver, holds no cancel request: nothing needs to look again before its steps.
        if state is not None and not state.last_seq and record is not None:
            self.ctx.cancel_checked = not record.meta.get("cancel_requested_at")

    async def run(self) -> RunReport:
        try:
            return await self._run(self.ctx)
        except asyncio.CancelledError:
            await self._interrupted(self.ctx)
            raise

    async def _interrupted(self, ctx: RunContext) -> None:
        """Cancelled from outside: when a signal did it (`interrupts.stop_on_signals`), the run
        still holds its lease and has not begun to end, journal `saga_interrupted` and mark the
        run `interrupted` (resumable). Anything else (a lost lease, a crash) writes nothing."""
        interrupt = received()
        if interrupt is None or ctx.ending or lease_lost(ctx.run_id):
            return
        try:
            await ctx.emit("saga_interrupted", {"signal": interrupt.name})
            await ctx.store.update_run(ctx.run_id, "interrupted")
        except Exception:  # the journal stays as a crash leaves it: resumable all the same
            return
        if ctx.store.shared:  # a store another process can resume it from
            interrupt.runs.append(ctx.run_id)

    async def _run(self, ctx: RunContext) -> RunReport:
        state = ctx.state
        if state is None or not state.last_seq:  # new, or it crashed before its first commit
            if state is None:
                plan = ctx.plan
                await ctx.store.create_run(
                    RunRecord(
                        ctx.run_id, plan.saga, plan.version, plan.hash, ctx.input, file=plan.file
                    ),
                    # Kept with the run: a worker or a resume can run it without the file.
                    Definition(plan.hash, plan.saga, plan.source, plan.file)
                    if plan.source
                    else None,
                )
            # Deferred: it shares the commit of the first event an action waits for.
            started = {
                "saga": ctx.plan.saga,
                "version": ctx.plan.version,
                "definition_hash": ctx.plan.hash,
                "input": ctx.redact(ctx.input),
            }
            # The test switches are journaled so that a resume (after a gate, a crash) keeps
            # them: a simulated run must never call a real action, not even once resumed.
            if ctx.simulate:
                started["simulate"] = True
            if ctx.overrides:
                started["fail"] = {k: v.fail for k, v in ctx.overrides.items()}
            await ctx.emit("saga_started", started)
        else:
            if state.started_at:
                ctx.started_wall = parse_rfc3339(state.started_at)
            ctx.t0 -= max(ctx.clock.now() - ctx.started_wall, 0.0)
            # Process groups a killed driver left running: ended before anything runs again.
            ended = await end_orphans(ctx.run_id, list(state.processes.values()))
            await ctx.store.update_run(ctx.run_id, "running")
            resumed: dict[str, Any] = {
                "from_seq": state.last_seq,
                "active_ms": int(ctx.active_before * 1000),
            }
            if ended:
                resumed["ended_processes"] = ended
            await ctx.emit("saga_resumed", resumed)
            restore(ctx, state)

        if state is not None and state.failure is not None:
            ctx.failure = state.failure
        else:
            await run_steps(ctx)
        if ctx.failure is None and not ctx.halting:
            try:
                output = ctx.engine.render(ctx.saga.output, ctx.scope)
            except StepError as e:
                output = None
                if not ctx.simulate:  # a simulated run checks flow, not data
                    ctx.fail_run(
                        {"step": None, "branch": None, "item_index": None, **error_dict(e)}
                    )
            if ctx.failure is None:
                status = "compensation_failed" if ctx.comp_failed else "succeeded"
                return await finish(ctx, status, output)
        if ctx.failure is None:
            return await finish(ctx, ctx.parked_status(), None)
        if state is None or state.failure is None:
            await ctx.emit("saga_compensating", {"failure": ctx.failure})
        await abandon(ctx)  # callback steps left waiting: cancelled, as in-flight steps are
        await compensate(ctx, ctx.undo)
        await run_on_failure(ctx)
        return await finish(ctx, ctx.failed_status(), None)
