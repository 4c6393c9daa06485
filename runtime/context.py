"""The state of one run, and the operations every node handler shares.

A `RunContext` is built once per run by the `Executor` and handed to every node handler
(`scheduler.HANDLERS`), to compensation and to the phases: they read and change the run only
through its public attributes and methods. It holds what the run knows (the plan's derived
data, the template scope, the results templates see, the LIFO list of undos, the errors and the
failure), its journal (`emit`), and the run's own cancellation bookkeeping. It schedules nothing
itself: `run_scope` is the scheduler's, handed in at construction, so that this module imports
no handler and the handlers import no scheduler (no import cycle, `tests/test_layers.py`).

This module must never call an action, decide what a node does next, or journal anything but
through `emit`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

from sagac.compiler import ir
from sagac.compiler.plan import Plan
from sagac.runtime.templates import TemplateEngine

from sagac.errors import StepError

from .clock import DEFAULT_CLOCK, Clock, new_run_id
from .events import EventCallback, Journal
from .journal import RunState
from .outcomes import HALTED, NodeFailed, Undo, error_dict
from .prepared import prepared
from .store.base import Store

DEFAULT_SLEEP_LIMIT = 60.0  # seconds: `sagac run`'s and the API's `--sleep-limit`

ScopeRunner = Callable[["RunContext", str, "Mapping[str, Any] | None"], Awaitable[bool]]
"""Runs one list of nodes (the top-level steps, a branch, `on_failure`): `scheduler.run_scope`."""

SIMULATED = ir.MockAction(result={})
_SIMULATE_HINT = (
    " (a simulated run: a step returns {} unless it declares the result to use, e.g."
    " `simulate: {ok: true}`)"
)


class RunContext:
    """One run of one plan: what it knows so far and the operations its handlers share.

    `state` is the journal's replay when the run is resumed (None for a new run). The public
    attributes are the run's state; handlers change them only as documented on each.
    """

    def __init__(
        self,
        plan: Plan,
        input: Any,
        *,
        store: Store,
        run_scope: ScopeRunner,
        run_id: str | None = None,
        clock: Clock | None = None,
        on_event: EventCallback | None = None,
        secrets: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        simulate: bool = False,
        state: RunState | None = None,
        sleep_limit: float = DEFAULT_SLEEP_LIMIT,
    ) -> None:
        self.plan = plan
        self.saga = plan.definition
        self.prep = prepared(plan)
        self.store = store
        self._run_scope = run_scope
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
        # What templates see as `steps.<id>`: written by the scheduler and the handlers.
        self.steps_view: dict[str, dict[str, Any]] = {}
        self.scope: dict[str, Any] = {
            "input": input,
            "steps": self.steps_view,
            "run": {"id": self.run_id, "saga": plan.saga},
            "env": dict(env or {}),
            "secrets": self.engine.secrets,
        }
        self.undo: list[Undo] = []  # what a compensation would undo, in order of completion
        self.errors: list[dict[str, Any]] = list(state.errors) if state else []
        self.comp_log: list[dict[str, Any]] = list(state.compensation_log) if state else []
        self.comp_failed = any(c["status"] != "ok" for c in self.comp_log)
        self.failure: dict[str, Any] | None = None  # the run's failure, set once (`fail_run`)
        self.halting = False  # a node parked the run: start nothing new
        self.waiting: set[str] = set()  # the parked nodes: gates, sleeps, waits, ...
        # parked node -> (kind, when it is due or times out: epoch seconds or None, signal)
        self.parked: dict[str, tuple[str, float | None, str | None]] = {}
        # A sleep this long or shorter is waited in-process (active time); a longer one parks.
        self.sleep_limit = sleep_limit
        self.signals_taken: set[int] = set(state.signals_consumed) if state else set()
        self.aborting = False  # cancelled from outside: journal nothing more
        self.ending = False  # the run's last event is being written: a signal changes nothing
        self.internal: set[asyncio.Task[Any]] = set()  # tasks the run itself cancelled
        self.saga_deadline_at: float | None = None
        self.saga_timed_out = False
        self.cancel_seen: dict[str, Any] | None = None  # a cancel request, once seen
        # The run's record, read by its driver just before, showed no cancel request: the
        # first look before the steps is spared (the watcher still polls).
        self.cancel_checked = False
        self.approval_tokens: dict[str, str] = {}  # gate -> clear token, never journaled
        self.gate_requests: dict[str, dict[str, Any]] = {}  # gate -> its request, for the report
        self.items: dict[str, list[Any]] = {}  # foreach id -> its rendered items
        # switch id -> the case taken (journaled `case_chosen`): `steps.<id>.case`
        self.cases: dict[str, int | str | None] = dict(state.cases) if state else {}
        # How a `call` drives its child run (`api.drive`, set by `api`: not imported here).
        self.driver: Callable[..., Awaitable[Any]] | None = None
        # call id -> its child run's id
        self.calls = {k: e["child_run_id"] for k, e in state.calls.items()} if state else {}
        self.started_wall = self.clock.now()
        self.t0 = self.clock.monotonic()
        # The saga `timeout` counts active time: what earlier processes used (from the
        # journal), plus this process's time since `t_active`.
        self.active_before = state.active_seconds if state else 0.0
        self.t_active = self.t0

    async def run_scope(self, key: str, extra: Mapping[str, Any] | None = None) -> bool:
        """Run one list of nodes; True when every node finished, False when halted (a gate is
        waiting). Raises NodeFailed when a node failed for good (after cancelling the rest)."""
        return await self._run_scope(self, key, extra)

    # -- events and time -----------------------------------------------------------------

    def redact(self, value: Any) -> Any:
        return self.engine.redact(value) if self.redacting else value

    def keep_secret(self, text: str) -> None:
        """Mask `text` (a callback token) like a secret in everything the run journals."""
        self.engine.redactor.add([text])
        self.redacting = True

    def ms(self, since: float) -> int:
        return int((self.clock.monotonic() - since) * 1000)

    def active_ms(self) -> int:
        """Active time used so far (journaled when the run parks at a gate)."""
        return int((self.active_before + self.clock.monotonic() - self.t_active) * 1000)

    # -- parking -------------------------------------------------------------------------

    def park(self, nid: str, kind: str, due: float | None = None, signal: str | None = None) -> Any:
        """Park the run at node `nid` (a sleep, a wait, a callback, a call): start nothing
        new; the run ends `waiting` (`waiting_approval` when a gate is among the parked nodes)
        and a worker wakes it at `due` (epoch seconds), or when what it waits for comes.
        Returns HALTED, for the handler to return."""
        self.halting = True
        self.waiting.add(nid)
        self.parked[nid] = (kind, due, signal)
        return HALTED

    def parked_status(self) -> str:
        """The status of a run that parked."""
        return "waiting_approval" if self.gate_requests else "waiting"

    # -- cancellation --------------------------------------------------------------------

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

    # -- failures ------------------------------------------------------------------------

    def fail_run(self, error: dict[str, Any], attempts: int = 0) -> None:
        """Record the run's failure; the first one wins."""
        if self.failure is None:
            self.failure = {**error, "attempts": attempts or error.get("attempts", 0)}
            if error.get("step") is None:
                self.errors.append({**error, "phase": "run"})

    def failed_status(self) -> str:
        """The status of a failed run once compensation is over."""
        if self.comp_failed:
            return "compensation_failed"
        if any(c["status"] == "ok" for c in self.comp_log):
            return "compensated"
        return "failed"

    def where(self, nid: str, item_index: int | None = None) -> dict[str, Any]:
        """The fields that locate a node (or a foreach item) in its events."""
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

    def error_at(
        self, nid: str | None, error: dict[str, Any], attempts: int, item_index: int | None = None
    ) -> dict[str, Any]:
        """The report's view of a node's error (its `errors` entry, a NodeFailed's error)."""
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

    def undo_attempted(
        self, nid: str, item_index: int | None, seq: int, error: dict[str, Any], item: Any
    ) -> None:
        """With `compensate.on: attempted`, a step that failed or was cancelled is undone too."""
        node = ir.effectful(self.prep.nodes[nid])
        comp = node.compensate if node is not None else None
        if comp is not None and comp.on == "attempted" and self.prep.phase[nid] == "steps":
            self.undo.append(Undo(nid, item_index, seq, None, error, self.prep.chain[nid], item))

    async def fail_node(
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
        fields = self.where(nid, item_index)
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
            self.undo_attempted(nid, item_index, ev["seq"], err, item)
        where = self.error_at(nid, err, attempts, item_index)
        if report:
            self.errors.append({**where, "phase": "on_failure" if "phase" in fields else "run"})
        raise NodeFailed(where)

    # -- what an action gets --------------------------------------------------------------

    def action_of(self, nid: str, spec: Any, compensation: bool = False) -> Any:
        """The action to call for a step: its `fail=` override, a simulated stand-in, or its
        own spec."""
        if not compensation and nid in self.overrides:
            return self.overrides[nid]
        if self.simulate and not isinstance(spec, ir.MockAction):
            return SIMULATED
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
