"""The executor: runs a compiled plan on asyncio, journaling every state change first.

Scheduling is per scope (the top-level steps, each branch of a parallel group, `on_failure`): a
node starts as soon as every node it depends on has completed or been skipped. When a node
fails for good the scope starts nothing new, cancels its in-flight nodes and awaits them (a
node that completed despite the cancel counts as completed), and the failure goes up to the
group or the run. Every task belongs to the scope that started it and is awaited before that
scope returns (trio's rule): nothing is left running when `Executor.run` returns.

The executor never calls an action before the event that precedes it (`step_started`, with the
attempt and the idempotency key) is in the store, and it can continue a run from the state
`journal.replay` rebuilds. Hot-path state is plain dicts and slotted classes, not pydantic.

`Executor` is the one front door: this module holds the run's outline (start or resume, the
forward steps, compensation and `on_failure` after a failure), scope scheduling and node
dispatch. A resumed run's state comes from `restore`; the forward steps under the saga's
deadline and cancel requests, and the `on_failure` nodes, run in `phases`. Each kind of node
runs in its own module (`attempts` for a task's attempts, `groups`, `foreach`, `gates`), what
is derived once per plan in `prepared`, the report in `finish`; they take the executor as their
first argument and never schedule nodes themselves (`phases` only through `run_scope`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, NoReturn

from sagac.compiler import ir
from sagac.compiler.plan import Plan
from sagac.runtime.errors import StepError
from sagac.runtime.templates import TemplateEngine

from .attempts import AttemptsFailed, run_attempts, undo_if_attempted
from .clock import DEFAULT_CLOCK, Clock, new_run_id, parse_rfc3339
from .compensation import compensate
from .events import EventCallback, Journal
from .finish import finish
from .foreach import run_foreach
from .gates import run_gate
from .groups import run_group
from .interrupts import received
from .journal import RunState
from .leases import lease_lost, supports_leases
from .outcomes import HALTED, NodeFailed, Undo, error_dict
from .phases import run_on_failure, run_steps
from .prepared import prepared
from .processes import end_orphans
from .report import RunReport
from .restore import restore, skip_view
from .store.base import RunRecord, Store

_FALSE_TEXT = frozenset({"", "false", "0", "no", "none", "null", "off"})


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_TEXT
    return bool(value)


class Executor:
    """One run of one plan. Use `run()` once; `state` continues a run from its journal."""

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
    ) -> None:
        self.plan = plan
        self.saga = plan.definition
        self.prep = prepared(plan)
        self.store = store
        self.run_id = run_id or (state.run_id if state else None) or new_run_id()
        self.clock = clock or DEFAULT_CLOCK
        self.engine = TemplateEngine(secrets)
        self.redacting = bool(self.engine.secrets)
        self.journal = Journal(
            store, self.run_id, self.clock, on_event, state.last_seq if state else 0
        )
        # Record an event (`Journal.emit`), bound once: no wrapper coroutine per event.
        self.emit = self.journal.emit
        self.input = input
        self.overrides = dict(overrides or {})
        self.simulate = simulate
        self.state = state
        self.steps_view: dict[str, dict[str, Any]] = {}
        self.scope: dict[str, Any] = {
            "input": input,
            "steps": self.steps_view,
            "run": {"id": self.run_id, "saga": plan.saga},
            "env": dict(env or {}),
            "secrets": self.engine.secrets,
        }
        self.undo: list[Undo] = []
        self.errors: list[dict[str, Any]] = list(state.errors) if state else []
        self.comp_log: list[dict[str, Any]] = list(state.compensation_log) if state else []
        self.failure: dict[str, Any] | None = None
        self.halting = False
        self.waiting: set[str] = set()
        self.aborting = False
        self.ending = False  # the run's last event is being written: a signal changes nothing
        self.internal: set[asyncio.Task[Any]] = set()
        self.saga_deadline_at: float | None = None
        self.saga_timed_out = False
        self.cancel_seen: dict[str, Any] | None = None  # a cancel request, once seen
        self.approval_tokens: dict[str, str] = {}  # gate -> clear token, never journaled
        self.gate_requests: dict[str, dict[str, Any]] = {}  # gate -> its request, for the report
        self.comp_failed = any(c["status"] != "ok" for c in self.comp_log)
        self.items: dict[str, list[Any]] = {}  # foreach id -> its rendered items
        self.started_wall = self.clock.now()
        self.t0 = self.clock.monotonic()
        # The saga `timeout` counts active time: what earlier processes used (from the
        # journal), plus this process's time since `t_active`.
        self.active_before = state.active_seconds if state else 0.0
        self.t_active = self.t0

    # -- events -------------------------------------------------------------------------

    def redact(self, value: Any) -> Any:
        return self.engine.redact(value) if self.redacting else value

    def ms(self, since: float) -> int:
        return int((self.clock.monotonic() - since) * 1000)

    # -- cancellation -------------------------------------------------------------------

    def cancel(self, task: asyncio.Task[Any]) -> None:
        """Cancel a task on the run's own behalf (its nodes journal the cancellation)."""
        self.internal.add(task)
        task.cancel()

    def cancelled_by_run(self) -> bool:
        """Called on CancelledError: False when the cancel came from outside (a crash, a
        killed process): then nothing more is journaled, as if the process had died."""
        task = asyncio.current_task()
        if self.aborting or task not in self.internal:
            self.aborting = True
            return False
        return True

    async def settle(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Cancel `tasks` and wait for every one of them to end."""
        for t in tasks:
            if not t.done():
                if self.aborting:
                    t.cancel()
                else:
                    self.cancel(t)
        if tasks:
            await asyncio.wait(tasks)

    # -- the run ------------------------------------------------------------------------

    async def run(self) -> RunReport:
        try:
            return await self._run()
        except asyncio.CancelledError:
            await self._interrupted()
            raise

    async def _interrupted(self) -> None:
        """Cancelled from outside: when a signal did it (`interrupts.stop_on_signals`), the run
        still holds its lease and has not begun to end, journal `saga_interrupted` and mark the
        run `interrupted` (resumable). Anything else (a lost lease, a crash) writes nothing."""
        interrupt = received()
        if interrupt is None or self.ending or lease_lost(self.run_id):
            return
        try:
            await self.emit("saga_interrupted", {"signal": interrupt.name})
            await self.store.update_run(self.run_id, "interrupted")
        except Exception:  # the journal stays as a crash leaves it: resumable all the same
            return
        if supports_leases(self.store):  # a store another process can resume it from
            interrupt.runs.append(self.run_id)

    async def _run(self) -> RunReport:
        state = self.state
        if state is None or not state.last_seq:  # new, or it crashed before its first commit
            if state is None:
                await self.store.create_run(
                    RunRecord(
                        self.run_id,
                        self.plan.saga,
                        self.plan.version,
                        self.plan.hash,
                        self.input,
                        file=self.plan.file,
                    )
                )
            # Deferred: it shares the commit of the first event an action waits for.
            started = {
                "saga": self.plan.saga,
                "version": self.plan.version,
                "definition_hash": self.plan.hash,
                "input": self.redact(self.input),
            }
            # The test switches are journaled so that a resume (after a gate, a crash) keeps
            # them: a simulated run must never call a real action, not even once resumed.
            if self.simulate:
                started["simulate"] = True
            if self.overrides:
                started["fail"] = {k: v.fail for k, v in self.overrides.items()}
            await self.emit("saga_started", started)
        else:
            if state.started_at:
                self.started_wall = parse_rfc3339(state.started_at)
            self.t0 -= max(self.clock.now() - self.started_wall, 0.0)
            # Process groups a killed driver left running: ended before anything runs again.
            ended = await end_orphans(self.run_id, list(state.processes.values()))
            await self.store.update_run(self.run_id, "running")
            resumed: dict[str, Any] = {
                "from_seq": state.last_seq,
                "active_ms": int(self.active_before * 1000),
            }
            if ended:
                resumed["ended_processes"] = ended
            await self.emit("saga_resumed", resumed)
            restore(self, state)

        if state is not None and state.failure is not None:
            self.failure = state.failure
        else:
            await run_steps(self)
        if self.failure is None and not self.halting:
            try:
                output = self.engine.render(self.saga.output, self.scope)
            except StepError as e:
                output = None
                if not self.simulate:  # a simulated run checks flow, not data
                    self.fail_run(
                        {"step": None, "branch": None, "item_index": None, **error_dict(e)}
                    )
            if self.failure is None:
                status = "compensation_failed" if self.comp_failed else "succeeded"
                return await finish(self, status, output)
        if self.failure is None:
            return await finish(self, "waiting_approval", None)
        if state is None or state.failure is None:
            await self.emit("saga_compensating", {"failure": self.failure})
        await compensate(self, self.undo)
        await run_on_failure(self)
        return await finish(self, self.failed_status(), None)

    def failed_status(self) -> str:
        """The status of a failed run once compensation is over."""
        if self.comp_failed:
            return "compensation_failed"
        if any(c["status"] == "ok" for c in self.comp_log):
            return "compensated"
        return "failed"

    def active_ms(self) -> int:
        """Active time used so far (journaled when the run parks at a gate)."""
        return int((self.active_before + self.clock.monotonic() - self.t_active) * 1000)

    def fail_run(self, error: dict[str, Any], attempts: int = 0) -> None:
        if self.failure is None:
            self.failure = {**error, "attempts": attempts or error.get("attempts", 0)}
            if error.get("step") is None:
                self.errors.append({**error, "phase": "run"})

    # -- scopes -------------------------------------------------------------------------

    async def run_scope(self, key: str, extra: Mapping[str, Any] | None = None) -> bool:
        """Run one list of nodes; True when every node finished, False when halted (a gate is
        waiting). Raises NodeFailed when a node failed for good (after cancelling the rest)."""
        order, deps, dependents = self.prep.scopes[key]
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
                while ready and failure is None and not self.halting:
                    nid = ready.pop(0)
                    if not ready and not running:
                        # The only runnable node: run it here, no task needed.
                        try:
                            out = await self.run_node(nid, extra)
                        except NodeFailed as f:
                            failure = f
                            break
                        if out is not HALTED:
                            done_count += 1
                            finished(nid)
                        continue
                    running[asyncio.create_task(self.run_node(nid, extra))] = nid
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
                    await self.settle(list(running))
                    running.clear()
        except BaseException:
            await self.settle(list(running))
            raise
        if failure is not None:
            exc = None
            try:
                raise failure
            finally:  # no local of this frame may keep the exception its traceback holds
                failure = None
        return done_count == len(order)

    async def run_node(self, nid: str, extra: Mapping[str, Any] | None) -> Any:
        node = self.prep.nodes[nid]
        if self.state is not None:
            rec = self.state.steps.get((nid, None))
            if rec is not None:
                if rec.status == "completed":
                    return rec.result
                if rec.status == "skipped":
                    skip_view(self.steps_view, node)
                    return None
                if rec.status == "failed":
                    raise NodeFailed(self._error_at(nid, rec.error or {}, rec.attempt))
        scope = self.scope if extra is None else {**self.scope, **extra}
        if node.when is not None:
            try:
                go = _truthy(self.engine.render(node.when, scope))
            except StepError as e:
                await self._fail_node(nid, e, 0, 0.0)
            if not go:
                skip_view(self.steps_view, node)
                await self.emit("step_skipped", self._where(nid))
                return None
        kind = node.kind
        if kind == "task":
            result = await self.run_task(node, scope)  # type: ignore[arg-type]
        elif kind == "parallel":
            result = await run_group(self, node, extra)  # type: ignore[arg-type]
        elif kind == "foreach":
            result = await run_foreach(self, node, scope)  # type: ignore[arg-type]
        elif kind == "approval":
            result = await run_gate(self, node, scope)  # type: ignore[arg-type]
        else:
            result = await self.run_fail(node, scope)  # type: ignore[arg-type]
        if result is not HALTED:
            self.steps_view[nid] = {"result": result, "status": "completed"}
        return result

    def _where(self, nid: str, item_index: int | None = None) -> dict[str, Any]:
        if item_index is None:
            hit = self.prep.where.get(nid)
            if hit is not None:
                return dict(hit)
        out: dict[str, Any] = {"step": nid}
        chain = self.prep.chain.get(nid)
        if chain:
            out["branch"] = chain[-1]
        if item_index is not None:
            out["item_index"] = item_index
        if self.prep.phase.get(nid) == "on_failure":
            out["phase"] = "on_failure"
        if item_index is None:
            self.prep.where[nid] = dict(out)
        return out

    def _error_at(
        self, nid: str | None, error: dict[str, Any], attempts: int, item_index: int | None = None
    ) -> dict[str, Any]:
        chain = self.prep.chain.get(nid or "", ())
        return {
            "step": nid,
            "branch": chain[-1] if chain else None,
            "item_index": item_index,
            "code": error.get("code", "UNEXPECTED"),
            "message": error.get("message", ""),
            "detail": error.get("detail"),
            "attempts": attempts,
        }

    async def _fail_node(
        self,
        nid: str,
        exc: StepError,
        attempts: int,
        started: float,
        *,
        report: bool = True,
        item_index: int | None = None,
        attempted: bool = False,
        item: Any = None,
    ) -> NoReturn:
        """Journal a node's final failure and raise NodeFailed."""
        if self.simulate and exc.code == "TEMPLATE_ERROR":
            exc = StepError(exc.code, exc.message + _SIMULATE_HINT, exc.detail)
        err = self.redact(error_dict(exc))
        fields = self._where(nid, item_index)
        fields.update(
            attempt=attempts,
            duration_ms=self.ms(started) if started else 0,
            error=err,
            final=True,
        )
        if not report:
            fields["propagated"] = True
        ev = await self.emit("step_failed", fields)
        if attempted and attempts:
            undo_if_attempted(self, nid, item_index, ev["seq"], err, item)
        where = self._error_at(nid, err, attempts, item_index)
        if report:
            self.errors.append({**where, "phase": "on_failure" if "phase" in fields else "run"})
        raise NodeFailed(where)

    # -- task steps and fail nodes -------------------------------------------------------

    def action_of(self, nid: str, spec: Any, compensation: bool = False) -> Any:
        if not compensation and nid in self.overrides:
            return self.overrides[nid]
        if self.simulate and not isinstance(spec, ir.MockAction):
            return _SIMULATED
        return spec

    def render_args(self, value: Any, scope: Mapping[str, Any]) -> Any:
        const, v = self.prep.constant(value)
        if const:
            return v
        if self.simulate:  # mocks ignore their arguments: simulate checks flow, not data
            try:
                return self.engine.render(value, scope)
            except StepError:
                return {}
        return self.engine.render(value, scope)

    def render_key(self, template: str | None, scope: Mapping[str, Any]) -> str | None:
        if template is None:
            return None
        try:
            return self.engine.render_text(template, scope)
        except StepError:
            if self.simulate:
                return None
            raise

    async def run_task(self, node: ir.TaskStep, scope: Mapping[str, Any]) -> Any:
        nid = node.id
        t0 = self.clock.monotonic()
        rec = self.state.steps.get((nid, None)) if self.state is not None else None
        try:
            args = self.render_args(node.with_, scope)
            key: str | None
            if rec is not None and rec.idempotency_key is not None:
                key = rec.idempotency_key
            else:
                key = self.render_key(node.idempotency_key, scope)
        except StepError as e:
            await self._fail_node(nid, e, 0, t0)
        spec = self.action_of(nid, node.action.spec)
        if self.simulate and node.has_simulate and nid not in self.overrides:
            try:  # the step's declared stand-in result, shaped like what the saga reads
                simulated = self.engine.render(node.simulate, {**scope, "args": args})
            except StepError as e:
                await self._fail_node(nid, e, 0, t0)
            spec = ir.MockAction(result=simulated)
        comp = node.compensate
        try:
            result, _, _ = await run_attempts(
                self,
                nid,
                None,
                spec,
                args,
                scope,
                key,
                node.retry,
                node.timeout,
                node.deadline,
                node.keep,
                start_attempt=rec.attempt if rec is not None else 0,
                undo=comp is not None and self.prep.phase[nid] == "steps",
            )
        except AttemptsFailed as f:
            await self._fail_node(nid, f.exc, f.attempt, t0, attempted=True)
        return result

    async def run_fail(self, node: ir.FailNode, scope: Mapping[str, Any]) -> Any:
        try:
            message = self.engine.render_text(node.message, scope) if node.message else node.code
        except StepError as e:
            await self._fail_node(node.id, e, 0, 0.0)
        await self._fail_node(node.id, StepError(node.code, message), 0, 0.0)


_SIMULATED = ir.MockAction(result={})
_SIMULATE_HINT = (
    " (a simulated run: a step returns {} unless it declares the result to use, e.g."
    " `simulate: {ok: true}`)"
)
