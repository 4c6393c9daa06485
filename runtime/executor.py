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
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from sagac.compiler import ir
from sagac.compiler.plan import Plan
from sagac.compiler.templates import is_template
from sagac.runtime.actions import (
    StepContext,
    immediate_action,
    invoke,
    render_spec,
    spec_templates,
)
from sagac.runtime.errors import StepError
from sagac.runtime.templates import TemplateEngine

from .clock import DEFAULT_CLOCK, Clock, rfc3339
from .events import EventCallback, Journal
from .journal import RunState
from .report import ErrorInfo, Failure, RunReport
from .retry import RetryState
from .store.base import RunRecord, Store

MAX_RESULT_BYTES = 64 * 1024
_json_text = json.JSONEncoder(default=str).encode  # json.dumps builds an encoder per call
CANCEL_POLL_SECONDS = 0.2  # how often a running saga looks for a `sagac cancel` request
HALTED: Any = object()  # a node that cannot finish now (an approval gate waiting)
_FALSE_TEXT = frozenset({"", "false", "0", "no", "none", "null", "off"})


class NodeFailed(Exception):
    """A node failed for good; `error` is the report's view of it."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("code"))
        self.error = error


@dataclass(slots=True)
class Undo:
    """A compensation to run: one completed (or, with `on: attempted`, attempted) step."""

    step: str
    item_index: int | None
    order: int  # seq of the event that ended the step: LIFO key
    result: Any
    error: dict[str, Any] | None
    branches: tuple[str, ...]  # enclosing group branches, outermost first
    item: Any = None  # the foreach item (its `as` name in the compensation's scope)
    block: Any = None  # a checkpoints.ItemBlock: many foreach items, undone newest first


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
            hit = (not _has_template(value), value)
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


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, Mapping):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_template(v) for v in value)
    return False


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_TEXT
    return bool(value)


def _sync_python(spec: Any) -> bool:
    """Whether `spec` is a python action whose (already imported) function is sync: its thread
    cannot be interrupted, so on cancel the executor awaits it and counts its result."""
    if not isinstance(spec, ir.PythonAction):
        return False
    module_name, _, attrs = spec.target.partition(":")
    obj: Any = sys.modules.get(module_name)
    for part in attrs.split("."):
        obj = getattr(obj, part, None)
    return obj is not None and not inspect.iscoroutinefunction(obj)


def error_dict(exc: StepError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.detail is not None:
        out["detail"] = exc.detail
    return out


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
        self.run_id = run_id or (state.run_id if state else None) or uuid.uuid4().hex
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
        self.internal: set[asyncio.Task[Any]] = set()
        self.saga_deadline_at: float | None = None
        self.saga_timed_out = False
        self.cancel_seen: dict[str, Any] | None = None  # a cancel request, once seen
        self.approval_tokens: dict[str, str] = {}  # gate -> clear token, never journaled
        self.comp_failed = any(c["status"] != "ok" for c in self.comp_log)
        self.items: dict[str, list[Any]] = {}  # foreach id -> its rendered items
        self.started_wall = self.clock.now()
        self.t0 = self.clock.monotonic()

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
        state = self.state
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
            await self.emit(
                "saga_started",
                {
                    "saga": self.plan.saga,
                    "version": self.plan.version,
                    "definition_hash": self.plan.hash,
                    "input": self.redact(self.input),
                },
            )
        else:
            self.started_wall = _epoch(state.started_at) or self.started_wall
            self.t0 -= max(self.clock.now() - self.started_wall, 0.0)
            await self.store.update_run(self.run_id, "running")
            await self.emit("saga_resumed", {"from_seq": state.last_seq})
            self._restore(state)

        if self.saga.timeout is not None:
            remaining = self.saga.timeout - (self.clock.now() - self.started_wall)
            self.saga_deadline_at = self.clock.monotonic() + remaining
        if state is not None and state.failure is not None:
            self.failure = state.failure
        else:
            if state is not None:  # a cancel asked for while nothing ran the run
                request = await self.store.cancel_request(self.run_id)
                if request is not None:
                    await self._cancel_requested(request)
            if self.failure is None:
                await self._forward()
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
                return await self._finish(status, output)
        if self.failure is None:
            return await self._finish("waiting_approval", None)
        if state is None or state.failure is None:
            await self.emit("saga_compensating", {"failure": self.failure})
        from .compensation import compensate

        await compensate(self, self.undo)
        await self._on_failure()
        if self.comp_failed:
            status = "compensation_failed"
        elif any(c["status"] == "ok" for c in self.comp_log):
            status = "compensated"
        else:
            status = "failed"
        return await self._finish(status, None)

    def fail_run(self, error: dict[str, Any], attempts: int = 0) -> None:
        if self.failure is None:
            self.failure = {**error, "attempts": attempts or error.get("attempts", 0)}
            if error.get("step") is None:
                self.errors.append({**error, "phase": "run"})

    async def _forward(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        timer = None
        if self.saga_deadline_at is not None:
            delay = max(self.saga_deadline_at - self.clock.monotonic(), 0.0) + 0.01
            timer = asyncio.get_running_loop().call_later(delay, self._saga_timeout, task)
        watcher = None
        if type(self.store).cancel_request is not Store.cancel_request:
            watcher = asyncio.create_task(self._watch_cancel(task))
        try:
            await self.run_scope("steps")
        except NodeFailed as f:
            self.fail_run(f.error)
        except asyncio.CancelledError:
            if not (self.saga_timed_out or self.cancel_seen) or self.aborting:
                raise
            task.uncancel()
            self.internal.discard(task)
            if self.cancel_seen is not None:
                await self._cancel_requested(self.cancel_seen)
                return
            self.fail_run(
                {
                    "step": None,
                    "branch": None,
                    "item_index": None,
                    "code": "SAGA_TIMEOUT",
                    "message": f"the saga's deadline of {self.saga.timeout:g}s passed",
                }
            )
        finally:
            if timer is not None:
                timer.cancel()
            if watcher is not None:
                watcher.cancel()
                await asyncio.wait([watcher])

    async def _watch_cancel(self, task: asyncio.Task[Any]) -> None:
        """Poll the store for a cancel request (`sagac cancel`, perhaps from another process);
        on one, stop the forward run as a saga timeout would: nothing new starts, in-flight
        work is cancelled, and the run compensates with CANCELLED."""
        while True:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            request = await self.store.cancel_request(self.run_id)
            if request is not None:
                self.cancel_seen = request
                self.cancel(task)
                return

    async def _cancel_requested(self, request: dict[str, Any]) -> None:
        by, reason = request.get("by"), request.get("reason")
        await self.emit("cancel_requested", {"by": by, "reason": reason})
        self.fail_run(
            {
                "step": None,
                "branch": None,
                "item_index": None,
                "code": "CANCELLED",
                "message": f"cancelled by {by}" + (f": {reason}" if reason else ""),
            }
        )

    def _saga_timeout(self, task: asyncio.Task[Any]) -> None:
        self.saga_timed_out = True
        self.cancel(task)

    def _restore(self, state: RunState) -> None:
        """Results and pending compensations of what the journal says already happened."""
        for (nid, idx), rec in state.steps.items():
            node = self.prep.nodes.get(nid)
            if node is None:
                continue
            if idx is None and rec.status == "completed":
                self.steps_view[nid] = {"result": rec.result, "status": "completed"}
            elif idx is None and rec.status == "skipped":
                self.steps_view[nid] = {"result": None, "status": "skipped"}
            comp = getattr(node, "compensate", None)
            if comp is None or self.prep.phase[nid] != "steps":
                continue
            if isinstance(node, ir.ForeachNode) and idx is None:
                continue
            if rec.status == "completed" or (rec.status == "failed" and comp.on == "attempted"):
                self.undo.append(
                    Undo(nid, idx, rec.seq, rec.result, rec.error, self.prep.chain[nid])
                )
        for nid, done in state.items_done.items():  # foreach items, one block per checkpoint
            node = self.prep.nodes.get(nid)
            if getattr(node, "compensate", None) is not None and self.prep.phase[nid] == "steps":
                chain = self.prep.chain[nid]
                self.undo.extend(
                    Undo(nid, None, b.seq, None, None, chain, block=b) for b in done.blocks
                )
        self.undo.sort(key=lambda u: u.order)

    async def _finish(self, status: str, output: Any) -> RunReport:
        failure = self.failure
        needs = []
        for c in self.comp_log:
            if c["status"] != "ok" and c["step"] not in needs:
                needs.append(c["step"])
        waiting = status == "waiting_approval"
        duration = self.ms(self.t0)
        if waiting:
            await self.emit("saga_waiting", {"status": status, "waiting": sorted(self.waiting)})
        elif status == "succeeded":
            await self.emit(
                "saga_completed",
                {"status": status, "output": self.redact(output), "duration_ms": duration},
            )
        else:
            await self.emit(
                "saga_failed",
                {
                    "status": status,
                    "failure": self.redact(failure),
                    "needs_attention": needs,
                    "duration_ms": duration,
                },
            )
        redact = self.redact
        # One validation of plain data: cheaper than building the nested models one by one.
        report = RunReport.model_validate(
            {
                "run_id": self.run_id,
                "saga": self.plan.saga,
                "version": self.plan.version,
                "status": status,
                "failure": _fields(redact(failure), Failure) if failure else None,
                "errors": [_fields(redact(e), ErrorInfo) for e in self.errors],
                "compensations": [
                    {
                        "step": c["step"],
                        "item_index": c.get("item_index"),
                        "status": c["status"],
                        "attempts": c["attempts"],
                        "error": _fields(redact(c["error"]), ErrorInfo) if c.get("error") else None,
                    }
                    for c in self.comp_log
                ],
                "needs_attention": needs,
                "output": redact(output),
                "duration_ms": duration,
                "started_at": rfc3339(self.started_wall),
                "finished_at": None if waiting else rfc3339(self.clock.now()),
                "definition_hash": self.plan.hash,
            }
        )
        await self.store.update_run(self.run_id, status, report.to_json_dict())
        if self.approval_tokens:  # never stored: only returned
            report.approval_tokens.update(self.approval_tokens)
        return report

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
                self.steps_view[nid] = {"result": None, "status": "skipped"}
                await self.emit("step_skipped", self._where(nid))
                return None
        kind = node.kind
        if kind == "task":
            result = await self.run_task(node, scope)  # type: ignore[arg-type]
        elif kind == "parallel":
            result = await self.run_group(node, extra)  # type: ignore[arg-type]
        elif kind == "foreach":
            from .foreach import run_foreach

            result = await run_foreach(self, node, scope)  # type: ignore[arg-type]
        elif kind == "approval":
            result = await self.run_gate(node, scope)  # type: ignore[arg-type]
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
            self._attempted(nid, item_index, ev["seq"], err, item)
        where = self._error_at(nid, err, attempts, item_index)
        if report:
            self.errors.append({**where, "phase": "on_failure" if "phase" in fields else "run"})
        raise NodeFailed(where)

    # -- task steps ---------------------------------------------------------------------

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
        comp = node.compensate
        try:
            result, _, _ = await self.attempts(
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
        except _Failed as f:
            await self._fail_node(nid, f.exc, f.attempt, t0, attempted=True)
        return result

    async def attempts(
        self,
        nid: str,
        item_index: int | None,
        spec: Any,
        args: Any,
        scope: Mapping[str, Any],
        key: str | None,
        policies: tuple[ir.RetryPolicy, ...],
        timeout: float | None,
        deadline: float | None,
        keep: tuple[str, ...] | None,
        *,
        start_attempt: int = 0,
        undo: bool = False,
        item: Any = None,
    ) -> tuple[Any, int, int]:
        """Call a step's action until it succeeds or fails for good; journal every attempt.
        Returns (recorded result, attempt, seq of step_completed); raises _Failed (already
        journaled as a retry, not yet as the final failure) or CancelledError."""
        clock = self.clock
        retry: RetryState | None = None
        attempt = start_attempt
        deadline_at = clock.monotonic() + deadline if deadline is not None else None
        where = self.prep.where.get(nid) if item_index is None else None
        if where is None:
            where = self._where(nid, item_index)
        emit = self.journal.emit
        redacted_key = self.redact(key)
        instant = immediate_action(spec)  # a mock without delay: no coroutine, no context
        while True:
            attempt += 1
            await emit(
                "step_started", {**where, "attempt": attempt, "idempotency_key": redacted_key}
            )
            started = clock.monotonic()
            limit, binding = timeout, "timeout"
            if deadline_at is not None and (limit is None or deadline_at - started < limit):
                limit, binding = deadline_at - started, "deadline"
            saga_at = self.saga_deadline_at
            if saga_at is not None and (limit is None or saga_at - started < limit):
                limit, binding = saga_at - started, "saga"
            try:
                if instant is not None:
                    if limit is not None and limit <= 0:
                        raise TimeoutError
                    result = instant(attempt)
                else:
                    ctx = StepContext(
                        self.run_id,
                        self.plan.saga,
                        nid,
                        attempt,
                        key,
                        None if limit is None else clock.now() + limit,
                        item_index,
                        False,
                        self.prep.base_dir,
                    )
                    result = await self.call(spec, args, ctx, limit, scope)
                exc: StepError | None = None
                if isinstance(result, StepError):
                    exc = result
            except StepError as e:
                # A value from here on: without its traceback, this frame holding it is no
                # reference cycle (each one is the garbage collector's work, a whole run's).
                exc = e.with_traceback(None)
            except TimeoutError:
                exc = _timeout_error(binding, limit, timeout, deadline, self.saga.timeout)
            except asyncio.CancelledError as cancel:
                completed = getattr(cancel, "sagac_result", _NOTHING)
                if not self.cancelled_by_run():
                    raise
                if completed is not _NOTHING:
                    await self._completed(
                        where, nid, item_index, attempt, started, completed, keep, undo, item
                    )
                    raise
                err = {"code": "CANCELLED", "message": "cancelled: the run is stopping"}
                ev = await emit(
                    "step_failed",
                    {
                        **where,
                        "attempt": attempt,
                        "duration_ms": self.ms(started),
                        "error": err,
                        "final": True,
                        "cancelled": True,
                    },
                )
                self._attempted(nid, item_index, ev["seq"], err, item)
                raise
            if exc is None:
                try:
                    return await self._completed(
                        where, nid, item_index, attempt, started, result, keep, undo, item
                    )
                except StepError as e:
                    exc = e.with_traceback(None)  # RESULT_TOO_LARGE: retried if a policy says
            if retry is None:
                retry = RetryState(policies)
            nxt = (
                None
                if binding != "timeout" and exc.code in ("TIMEOUT", "SAGA_TIMEOUT")
                else (retry.next_delay(exc.code, clock.random))
            )
            if nxt is not None:
                delay, max_attempts = nxt
                now = clock.monotonic()
                if deadline_at is not None and now + delay >= deadline_at:
                    nxt = None
                    exc = StepError(
                        "TIMEOUT",
                        f"the step's deadline of {deadline:g}s leaves no time for attempt "
                        f"{attempt + 1} (last error: {exc.code})",
                        {"cause": error_dict(exc)},
                    )
                elif saga_at is not None and now + delay >= saga_at:
                    nxt = None
                    exc = StepError(
                        "SAGA_TIMEOUT",
                        f"the saga's deadline leaves no time for attempt {attempt + 1}",
                        {"cause": error_dict(exc)},
                    )
            if nxt is None:
                raise _Failed(exc, attempt, started, item)
            await emit(
                "step_retrying",
                {
                    **where,
                    "attempt": attempt,
                    "max_attempts": max_attempts,
                    "delay_ms": int(delay * 1000),
                    "error": self.redact(error_dict(exc)),
                },
            )
            await clock.sleep(delay)

    async def _completed(
        self,
        where: dict[str, Any],
        nid: str,
        item_index: int | None,
        attempt: int,
        started: float,
        result: Any,
        keep: tuple[str, ...] | None,
        undo: bool,
        item: Any,
    ) -> tuple[Any, int, int]:
        if keep is not None and isinstance(result, dict):
            result = {k: result[k] for k in keep if k in result}
        if result and not isinstance(result, int | float | bool):
            size = len(_json_text(result))
            if size > MAX_RESULT_BYTES:
                raise StepError(
                    "RESULT_TOO_LARGE",
                    f"the result is {size} bytes of JSON, over the limit of {MAX_RESULT_BYTES}; "
                    "hint: list the fields later steps need under `keep:`",
                    {"bytes": size},
                )
        recorded = self.redact(result)
        ev = await self.journal.emit(
            "step_completed",
            {**where, "attempt": attempt, "duration_ms": self.ms(started), "result": recorded},
        )
        if undo:
            self.undo.append(
                Undo(nid, item_index, ev["seq"], result, None, self.prep.chain[nid], item)
            )
        return result, attempt, ev["seq"]

    def _attempted(
        self, nid: str, item_index: int | None, seq: int, error: dict[str, Any], item: Any
    ) -> None:
        """With `compensate.on: attempted`, a step that failed or was cancelled is undone too."""
        node = self.prep.nodes[nid]
        comp = getattr(node, "compensate", None)
        if comp is not None and comp.on == "attempted" and self.prep.phase[nid] == "steps":
            self.undo.append(Undo(nid, item_index, seq, None, error, self.prep.chain[nid], item))

    async def call(
        self, spec: Any, args: Any, ctx: StepContext, limit: float | None, scope: Mapping[str, Any]
    ) -> Any:
        """One attempt of an action, bounded by `limit` seconds."""
        instant = immediate_action(spec)
        if instant is not None:  # takes no time: only a deadline already passed can stop it
            if limit is not None and limit <= 0:
                raise TimeoutError
            return instant(ctx.attempt)
        templated = self.prep.spec_templated.get(id(spec))
        if templated is None:
            templated = self.prep.spec_templated[id(spec)] = bool(spec_templates(spec))
        rendered = render_spec(spec, args, scope, self.engine) if templated else None
        if isinstance(spec, ir.PythonAction):
            sync = self.prep.sync_python.get(id(spec))
            if sync is None:
                sync = _sync_python(spec)
                if spec.target.partition(":")[0] in sys.modules:
                    self.prep.sync_python[id(spec)] = sync
                else:
                    sync = True  # not imported yet: assume a thread, to be safe
            if sync:
                return await self._call_python(spec, args, ctx, limit, rendered)
        if limit is None:
            return await invoke(spec, args, ctx, rendered_spec=rendered)
        if limit <= 0:
            raise TimeoutError
        async with asyncio.timeout(limit):
            return await invoke(spec, args, ctx, rendered_spec=rendered)

    async def _call_python(
        self, spec: Any, args: Any, ctx: StepContext, limit: float | None, rendered: Any
    ) -> Any:
        if limit is not None and limit <= 0:
            raise TimeoutError
        inner = asyncio.ensure_future(invoke(spec, args, ctx, rendered_spec=rendered))
        try:
            async with asyncio.timeout(limit):
                return await asyncio.shield(inner)
        except asyncio.CancelledError as cancel:
            if not self.cancelled_by_run() or (inner.done() and inner.cancelled()):
                inner.cancel()
                raise
            # A thread cannot be interrupted: wait for it, and count what it did.
            try:
                result = await asyncio.shield(inner)
            except StepError:
                raise cancel from None
            except asyncio.CancelledError:
                inner.cancel()
                raise
            cancel.sagac_result = result  # type: ignore[attr-defined]
            raise cancel
        except TimeoutError:
            inner.cancel()
            raise

    # -- groups, gates, fail nodes ------------------------------------------------------

    async def run_group(self, g: ir.ParallelGroup, extra: Mapping[str, Any] | None) -> Any:
        from .groups import run_group

        return await run_group(self, g, extra)

    async def run_gate(self, gate: ir.ApprovalGate, scope: Mapping[str, Any]) -> Any:
        nid = gate.id
        decided = self.state.approvals_decided.get(nid) if self.state else None
        if decided is not None:
            if decided.get("approved"):
                result = {
                    "approved": True,
                    "by": decided.get("by"),
                    "at": decided.get("decided_at", decided.get("at")),
                    "comment": decided.get("comment"),
                    "value": decided.get("value"),
                }
                await self.emit(
                    "step_completed",
                    {
                        **self._where(nid),
                        "attempt": 1,
                        "duration_ms": 0,
                        "result": self.redact(result),
                    },
                )
                return result
            by = decided.get("by")
            why = f": {decided['comment']}" if decided.get("comment") else ""
            await self._fail_node(
                nid,
                StepError(
                    decided.get("code", "APPROVAL_REJECTED"),
                    f"timed out{why}" if decided.get("timed_out") else f"rejected by {by}{why}",
                    {"by": by},
                ),
                1,
                0.0,
            )
        if self.state is None or nid not in self.state.approvals_requested:
            try:
                key = (
                    self.engine.render_text(gate.key, scope)
                    if gate.key is not None
                    else f"{self.plan.saga}:{self.run_id}:{nid}"
                )
                message = self.engine.render_text(gate.message, scope) if gate.message else None
            except StepError as e:
                await self._fail_node(nid, e, 0, 0.0)
            from . import approvals

            now = self.clock.now()
            # A single-use token for whoever decides: only its hash is journaled; the clear
            # token goes to the caller once (`RunReport.approval_tokens`).
            token, digest = approvals.new_token()
            await self.emit(
                "approval_requested",
                {
                    **self._where(nid),
                    "key": self.redact(key),
                    "message": self.redact(message),
                    "context": self.redact(approvals.message_context(gate.message, scope)),
                    "approvers": list(gate.approvers),
                    "deadline": rfc3339(now + gate.timeout) if gate.timeout else None,
                    "on_timeout": gate.on_timeout,
                    "definition_hash": self.plan.hash,
                    "token_sha256": digest,
                },
            )
            self.approval_tokens[nid] = token
        self.halting = True
        self.waiting.add(nid)
        return HALTED

    async def run_fail(self, node: ir.FailNode, scope: Mapping[str, Any]) -> Any:
        try:
            message = self.engine.render_text(node.message, scope) if node.message else node.code
        except StepError as e:
            await self._fail_node(node.id, e, 0, 0.0)
        await self._fail_node(node.id, StepError(node.code, message), 0, 0.0)

    # -- after a failure ----------------------------------------------------------------

    async def _on_failure(self) -> None:
        if not self.saga.on_failure:
            return
        report = {
            "run_id": self.run_id,
            "saga": self.plan.saga,
            "status": "compensation_failed" if self.comp_failed else "compensated",
            "failure": self.failure,
            "errors": list(self.errors),
            "compensations": list(self.comp_log),
        }
        extra = {"failure": self.failure, "report": self.redact(report)}
        self.halting = False  # a gate left waiting by the failed run does not hold these back
        saved = self.saga_deadline_at
        self.saga_deadline_at = None  # on_failure runs after the deadline too
        try:
            await self.run_scope("on_failure", extra)
        except NodeFailed:
            pass  # its errors are in the report; the status stays
        finally:
            self.saga_deadline_at = saved


class _Failed(Exception):
    def __init__(self, exc: StepError, attempt: int, started: float, item: Any) -> None:
        super().__init__(exc.code)
        self.exc = exc
        self.attempt = attempt
        self.started = started
        self.item = item


_NOTHING = object()
_SIMULATED = ir.MockAction(result={})


def _timeout_error(
    binding: str,
    limit: float | None,
    timeout: float | None,
    deadline: float | None,
    saga_timeout: float | None,
) -> StepError:
    if binding == "saga":
        return StepError("SAGA_TIMEOUT", f"the saga's deadline of {saga_timeout:g}s passed")
    if binding == "deadline":
        return StepError("TIMEOUT", f"the step's deadline of {deadline:g}s passed")
    return StepError("TIMEOUT", f"the attempt took longer than {timeout:g}s")


def _fields(data: dict[str, Any], model: type[Any]) -> dict[str, Any]:
    names = model.model_fields
    return {k: v for k, v in data.items() if k in names}


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
