"""The one attempt loop: call an action until it succeeds or fails for good.

Task steps, foreach items and compensations all run their action through `Attempts.run`: the
attempts, the retry policies, backoff, the per-attempt bound (the tightest of the `timeout`,
the step's `deadline` and the saga's) and cancellation live here once, and so does journaling
each outcome. A kind of caller subclasses `Outcomes` (one shared, stateless object; a call's
own state sits on its `Attempts`) to say only what differs: the event before each attempt
(`START`), and the events and records of a completion (`completion`, `recorded`), a retry
(`retry`), a final failure (`failure`, `failure_recorded`: by default none, AttemptsFailed goes
to the node) and a cancel by the run (`cancellation`, `cancel_recorded`). A task step's is
`TaskOutcomes` (`TASK`, used by `tasks.run_task`).

The rule this module keeps (docs/runtime.md, "Attempts and cancellation"): **an attempt has
ended before its loop moves on**, so a step's compensation never starts before its forward
action has ended. Async actions are cancelled and awaited; a command's process group is ended
and reaped (`actions.command`); a sync python action's thread cannot be interrupted, so it is
awaited: on a cancel by the run its late result counts as the step's (carried on the
CancelledError as `sagac_result`), after a timeout the attempt fails with TIMEOUT once the
thread returned, with `detail.overran_ms` (and `detail.late_result`). Whether a python action
is sync is decided from its imported callable (`actions.calls_in_thread`), never guessed.

This module must never journal a task step's final failure or raise NodeFailed (the node does
both, once), and never starts anything after an attempt while that attempt's action may still
be running.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from sagac.compiler import ir
from sagac.runtime import codec
from sagac.runtime.actions import (
    StepContext,
    calls_in_thread,
    invoke,
    render_spec,
    spec_templates,
)
from sagac.runtime.actions.mock import immediate

from sagac.errors import StepError

from .outcomes import Undo, error_dict
from .processes import identity
from .retry import RetryState

if TYPE_CHECKING:
    from .context import RunContext

MAX_RESULT_BYTES = 64 * 1024
NO_RESULT: Any = object()  # a cancelled attempt without a result to count


def check_result_size(result: Any, needed_by: str) -> None:
    """RESULT_TOO_LARGE when `result` is over MAX_RESULT_BYTES of JSON; `needed_by` says who
    reads it, for the hint (`keep:` the fields they need)."""
    if result and not isinstance(result, int | float | bool):
        size = codec.size(result)
        if size > MAX_RESULT_BYTES:
            raise StepError(
                "RESULT_TOO_LARGE",
                f"the result is {size} bytes of JSON, over the limit of {MAX_RESULT_BYTES}; "
                f"hint: list the fields {needed_by} need under `keep:`",
                {"bytes": size},
            )


def kept(keep: tuple[str, ...] | None, result: Any) -> Any:
    """The fields of a mapping result that `keep:` names (other results whole)."""
    if keep is not None and isinstance(result, dict):
        return {k: result[k] for k in keep if k in result}
    return result


class AttemptsFailed(Exception):
    """The action failed for good: `exc` is its last attempt's error, not yet journaled as the
    step's final failure."""

    def __init__(self, exc: StepError, attempt: int, started: float, item: Any = None) -> None:
        super().__init__(exc.code)
        self.exc = exc
        self.attempt = attempt
        self.started = started
        self.item = item


class Overran(TimeoutError):
    """A sync action's thread outlived its attempt's bound by `seconds`; the attempt ended when
    it returned (`result`, or NO_RESULT when it raised)."""

    def __init__(self, seconds: float, result: Any) -> None:
        super().__init__()
        self.seconds = seconds
        self.result = result


Journaled = tuple[str, dict[str, Any]] | None  # an event to journal (type, fields), or none


class Outcomes:
    """What one kind of caller journals and records of its attempts: a subclass per kind
    (`TaskOutcomes`, a compensation's, a foreach item's), one shared instance each, holding no
    state. The state is the `Attempts` passed in: one class for every caller, so the hot loop
    only ever sees one type (the interpreter specialises its attribute reads)."""

    START: ClassVar[str | None] = None  # the event journaled before each attempt, if any
    WHAT: ClassVar[str] = "the attempt"  # who took too long, in a TIMEOUT message
    COMPENSATING: ClassVar[bool] = False  # the action undoes the step (`StepContext`)
    # The attempts call `call` instead of the action (a callback step's: its token, the action,
    # then its outcome from the store).
    CALLS: ClassVar[bool] = False
    __slots__ = ()

    async def call(self, a: Attempts, attempt: int, limit: float | None) -> Any:
        """One attempt, in place of the action call (when CALLS): its result, or raises as the
        action would."""
        raise NotImplementedError

    def completion(self, a: Attempts, attempt: int, started: float, result: Any) -> Journaled:
        """The event that records a result (raise StepError to fail the attempt instead)."""
        raise NotImplementedError

    def recorded(self, a: Attempts, seq: int) -> Any:
        """The completion is journaled (as `seq`, 0 without an event): what `run` returns."""
        raise NotImplementedError

    def retry(
        self,
        a: Attempts,
        attempt: int,
        started: float,
        exc: StepError,
        delay: float,
        max_attempts: int,
    ) -> tuple[str, dict[str, Any]]:
        """The event saying the attempt failed and the action runs again after `delay`."""
        raise NotImplementedError

    def failure(
        self, a: Attempts, exc: StepError, attempt: int, started: float
    ) -> tuple[str, dict[str, Any]]:
        """The event of the final failure. By default there is none: AttemptsFailed is raised
        for the node, which journals it."""
        raise AttemptsFailed(exc, attempt, started)

    def failure_recorded(self, a: Attempts, seq: int, exc: StepError, attempt: int) -> Any:
        """The final failure is journaled as `seq`: what `run` returns (or raises)."""
        raise NotImplementedError

    def cancellation(self, a: Attempts, attempt: int, started: float) -> Journaled:
        """The event of an attempt the run cancelled (nothing to count), if any."""
        return None

    def cancel_recorded(self, a: Attempts, seq: int) -> None:
        """The cancellation is journaled as `seq`."""


class Attempts:
    """The attempts of one action call (a step, an item, a compensation): `run` is the loop,
    the same for all; `outcomes` says what each outcome journals and records."""

    __slots__ = (
        "args",
        "attempt",
        "batch",
        "callback",
        "ctx",
        "cursor",
        "deadline",
        "item_index",
        "keep",
        "key",
        "nid",
        "outcomes",
        "owner",
        "policies",
        "result",
        "saga_bound",
        "scope",
        "spec",
        "subject",
        "timeout",
        "where",
    )
    # The callers' own state, set by them when they use it (the Outcomes objects are shared
    # and hold none): the attempt and result `completion` recorded; `subject` (a task step's
    # foreach item or None, a compensation's Undo, a foreach item); `owner` (a task step's
    # "compensable" flag, a foreach item's Items); a foreach item's `batch` and `cursor`; a
    # callback step's `callback` (`callbacks.Waiting`).
    attempt: int
    result: Any
    subject: Any
    owner: Any
    batch: int
    cursor: str | None
    callback: Any

    def __init__(
        self,
        outcomes: Outcomes,
        ctx: RunContext,
        nid: str,
        item_index: int | None,
        where: dict[str, Any],
        spec: Any,
        args: Any,
        scope: Mapping[str, Any],
        key: str | None,
        policies: tuple[ir.RetryPolicy, ...],
        timeout: float | None,
        deadline: float | None,
        keep: tuple[str, ...] | None,
        saga_bound: bool,
    ) -> None:
        self.outcomes = outcomes
        self.ctx = ctx
        self.nid = nid
        self.item_index = item_index
        self.where = where
        self.spec = spec
        self.args = args
        self.scope = scope
        self.key = key
        self.policies = policies
        self.timeout = timeout
        self.deadline = deadline
        self.keep = keep
        self.saga_bound = saga_bound

    async def run(self, start_attempt: int = 0, retried: tuple[str, ...] = ()) -> Any:
        """Attempt until `completion` accepts a result; returns what `recorded` makes of it.
        `retried`: the codes of the retries journaled before a resume, which count. Raises
        AttemptsFailed, or CancelledError once what the run's own cancel left is journaled."""
        ctx = self.ctx
        out = self.outcomes
        clock = ctx.clock
        emit = ctx.emit
        retry: RetryState | None = None
        if retried:
            retry = RetryState(self.policies)
            for code in retried:
                retry.count(code)
        attempt = start_attempt
        deadline = self.deadline
        deadline_at = None if deadline is None else clock.monotonic() + deadline
        spec = self.spec
        # A mock without delay: no coroutine, no context.
        instant = immediate(spec) if type(spec) is ir.MockAction else None
        start = out.START
        calls = out.CALLS
        while True:
            attempt += 1
            if start is not None:
                await emit(start, {**self.where, "attempt": attempt, "idempotency_key": self.key})
            started = clock.monotonic()
            saga_at = ctx.saga_deadline_at if self.saga_bound else None
            if deadline_at is None and saga_at is None:
                limit, binding = self.timeout, "timeout"
            else:
                limit, binding = attempt_limit(started, self.timeout, deadline_at, saga_at)
            try:
                if calls:
                    result = await out.call(self, attempt, limit)
                elif instant is not None:
                    if limit is not None and limit <= 0:
                        raise TimeoutError
                    result = instant(attempt)
                else:
                    sctx = step_context(ctx, self.nid, attempt, self.key, limit, self, spec)
                    result = await call_action(ctx, spec, self.args, sctx, limit, self.scope)
                if isinstance(result, StepError):
                    raise result
                done = out.completion(self, attempt, started, result)
            except StepError as e:
                # A value from here on: without its traceback, this frame holding it is no
                # reference cycle (each one is the garbage collector's work, a whole run's).
                exc = e.with_traceback(None)
            except TimeoutError as e:
                exc = self.timed_out(binding, e)
            except asyncio.CancelledError as cancel:
                if ctx.cancelled_by_run():
                    await self._cancelled(cancel, attempt, started)
                raise
            else:
                return out.recorded(self, 0 if done is None else (await emit(*done))["seq"])
            if retry is None:
                retry = RetryState(self.policies)
            exc, nxt = retry_delay(
                retry, exc, binding, attempt, deadline, deadline_at, saga_at, ctx
            )
            if nxt is None:
                return await self.give_up(exc, attempt, started)
            delay, max_attempts = nxt
            await emit(*out.retry(self, attempt, started, exc, delay, max_attempts))
            await clock.sleep(delay)

    async def _cancelled(
        self, cancel: asyncio.CancelledError, attempt: int, started: float
    ) -> None:
        """The run cancelled the attempt: a thread that ran to its end despite it counts as
        completed; anything else is journaled as cancelled."""
        out = self.outcomes
        late = getattr(cancel, "sagac_result", NO_RESULT)
        if late is not NO_RESULT:
            try:
                done = out.completion(self, attempt, started, late)
            except StepError:
                pass  # not recordable (too large): the attempt counts as cancelled
            else:
                out.recorded(self, 0 if done is None else (await self.ctx.emit(*done))["seq"])
                return
        cancelled = out.cancellation(self, attempt, started)
        if cancelled is not None:
            out.cancel_recorded(self, (await self.ctx.emit(*cancelled))["seq"])

    async def give_up(self, exc: StepError, attempt: int, started: float) -> Any:
        """The action failed for good (`attempt` 0: before its first attempt, e.g. its
        arguments did not render): journal `failure` and return what `failure_recorded` does
        (or raise what it raises)."""
        out = self.outcomes
        event = out.failure(self, exc, attempt, started)
        return out.failure_recorded(self, (await self.ctx.emit(*event))["seq"], exc, attempt)

    def timed_out(self, binding: str, e: TimeoutError) -> StepError:
        """The TIMEOUT (or SAGA_TIMEOUT) of an attempt; an overrunning thread is in its detail."""
        ctx = self.ctx
        if binding == "saga":
            exc = StepError(
                "SAGA_TIMEOUT", f"the saga's timeout of {ctx.saga.timeout:g}s (active time) passed"
            )
        elif binding == "deadline":
            exc = StepError("TIMEOUT", f"the step's deadline of {self.deadline:g}s passed")
        else:
            what = self.outcomes.WHAT
            exc = StepError("TIMEOUT", f"{what} took longer than {self.timeout:g}s")
        if isinstance(e, Overran):
            detail: dict[str, Any] = {"overran_ms": int(e.seconds * 1000)}
            if e.result is not NO_RESULT:
                late = kept(self.keep, e.result)
                if codec.size(late) <= MAX_RESULT_BYTES:
                    detail["late_result"] = late
            exc.detail = detail
        return exc


class TaskOutcomes(Outcomes):
    """A task step's: `step_started` before each attempt, `step_completed` with the kept result
    (an Undo entry when the step is compensable: `owner` True), `step_retrying` between
    attempts; its final failure goes to the node (AttemptsFailed)."""

    START: ClassVar[str | None] = "step_started"
    __slots__ = ()

    def completion(self, a: Attempts, attempt: int, started: float, result: Any) -> Journaled:
        ctx = a.ctx
        keep = a.keep
        if keep is not None and isinstance(result, dict):
            result = {k: result[k] for k in keep if k in result}
        check_result_size(result, "later steps")
        a.result = result
        a.attempt = attempt
        return "step_completed", {
            **a.where,
            "attempt": attempt,
            "duration_ms": int((ctx.clock.monotonic() - started) * 1000),
            "result": ctx.engine.redact(result) if ctx.redacting else result,
        }

    def recorded(self, a: Attempts, seq: int) -> tuple[Any, int, int]:
        if a.owner:
            ctx, nid = a.ctx, a.nid
            ctx.undo.append(
                Undo(nid, a.item_index, seq, a.result, None, ctx.prep.chain[nid], a.subject)
            )
        return a.result, a.attempt, seq

    def retry(
        self,
        a: Attempts,
        attempt: int,
        started: float,
        exc: StepError,
        delay: float,
        max_attempts: int,
    ) -> tuple[str, dict[str, Any]]:
        return "step_retrying", {
            **a.where,
            "attempt": attempt,
            "max_attempts": max_attempts,
            "delay_ms": int(delay * 1000),
            "error": a.ctx.redact(error_dict(exc)),
        }

    def cancellation(self, a: Attempts, attempt: int, started: float) -> Journaled:
        return "step_failed", {
            **a.where,
            "attempt": attempt,
            "duration_ms": a.ctx.ms(started),
            "error": cancelled_error(),
            "final": True,
            "cancelled": True,
        }

    def cancel_recorded(self, a: Attempts, seq: int) -> None:
        a.ctx.undo_attempted(a.nid, a.item_index, seq, cancelled_error(), a.subject)


TASK = TaskOutcomes()


def cancelled_error() -> dict[str, Any]:
    """The error of an attempt the run cancelled (a fresh dict: events keep what they get)."""
    return {"code": "CANCELLED", "message": "cancelled: the run is stopping"}


def step_context(
    ctx: RunContext,
    nid: str,
    attempt: int,
    key: str | None,
    limit: float | None,
    loop: Attempts,
    spec: Any = None,
    callback_token: str | None = None,
) -> StepContext:
    """What an action sees of its attempt; `limit` seconds from now is its deadline. A command
    action (`spec`) also gets the hook that journals its process group."""
    deadline = None if limit is None else ctx.clock.now() + limit
    compensating = loop.outcomes.COMPENSATING
    hook = None
    if isinstance(spec, ir.CommandAction):
        hook = functools.partial(_process_started, ctx, nid, attempt, loop.item_index, compensating)
    return StepContext(
        ctx.run_id,
        ctx.plan.saga,
        nid,
        attempt,
        key,
        deadline,
        loop.item_index,
        compensating,
        ctx.prep.base_dir,
        hook,
        callback_token,
    )


async def _process_started(
    ctx: RunContext, nid: str, attempt: int, item_index: int | None, compensating: bool, pgid: int
) -> None:
    """Journal a command's process group (durable before its output is read): a resume after
    sagac was killed ends it before the step runs again (`processes.end_orphans`)."""
    fields = {**ctx.where(nid, item_index), "attempt": attempt}
    if compensating:
        fields["compensation"] = True
    fields.update(identity(pgid))
    await ctx.emit("process_started", fields)


def attempt_limit(
    started: float, timeout: float | None, deadline_at: float | None, saga_at: float | None
) -> tuple[float | None, str]:
    """How long an attempt begun at `started` may take, and which bound sets it: the step's
    `timeout`, its `deadline` or the saga's."""
    limit, binding = timeout, "timeout"
    if deadline_at is not None and (limit is None or deadline_at - started < limit):
        limit, binding = deadline_at - started, "deadline"
    if saga_at is not None and (limit is None or saga_at - started < limit):
        limit, binding = saga_at - started, "saga"
    return limit, binding


def retry_delay(
    retry: RetryState,
    exc: StepError,
    binding: str,
    attempt: int,
    deadline: float | None,
    deadline_at: float | None,
    saga_at: float | None,
    ctx: RunContext,
) -> tuple[StepError, tuple[float, int] | None]:
    """The error to report and, when the action is to be tried again, (delay, attempts allowed
    in all). A deadline that passed is not retried; one that leaves no time for the next
    attempt ends the step with TIMEOUT or SAGA_TIMEOUT, the last error as its cause."""
    if binding != "timeout" and exc.code in ("TIMEOUT", "SAGA_TIMEOUT"):
        return exc, None
    nxt = retry.next_delay(exc.code, ctx.clock.random)
    if nxt is None:
        return exc, None
    if deadline_at is None and saga_at is None:
        return exc, nxt
    now = ctx.clock.monotonic()
    if deadline_at is not None and now + nxt[0] >= deadline_at:
        return StepError(
            "TIMEOUT",
            f"the step's deadline of {deadline:g}s leaves no time for attempt "
            f"{attempt + 1} (last error: {exc.code})",
            {"cause": error_dict(exc)},
        ), None
    if saga_at is not None and now + nxt[0] >= saga_at:
        return StepError(
            "SAGA_TIMEOUT",
            f"the saga's deadline leaves no time for attempt {attempt + 1}",
            {"cause": error_dict(exc)},
        ), None
    return exc, nxt


def templated(ctx: RunContext, spec: Any) -> bool:
    """Whether the action spec has templated fields (rendered with the scope on each call)."""
    hit = ctx.prep.spec_templated.get(id(spec))
    if hit is None:
        hit = ctx.prep.spec_templated[id(spec)] = bool(spec_templates(spec))
    return hit


async def call_action(
    ctx: RunContext,
    spec: Any,
    args: Any,
    sctx: StepContext,
    limit: float | None,
    scope: Mapping[str, Any],
) -> Any:
    """One attempt of an action, bounded by `limit` seconds; it has ended when this returns or
    raises (a sync python action's thread included: see `_in_thread`)."""
    if limit is not None and limit <= 0:
        raise TimeoutError
    prep = ctx.prep
    hit = prep.spec_templated.get(id(spec))  # inline: the hot path
    if hit is None:
        hit = templated(ctx, spec)
    rendered = render_spec(spec, args, scope, ctx.engine) if hit else None
    if isinstance(spec, ir.PythonAction):
        sync = prep.sync_python.get(id(spec))
        if sync is None:  # decided once per spec, from the imported callable
            sync = prep.sync_python[id(spec)] = await calls_in_thread(spec, prep.base_dir)
        if sync:
            return await _in_thread(ctx, spec, args, sctx, limit, rendered)
    if limit is None:
        return await invoke(spec, args, sctx, rendered_spec=rendered)
    async with asyncio.timeout(limit):
        return await invoke(spec, args, sctx, rendered_spec=rendered)


async def _in_thread(
    ctx: RunContext, spec: Any, args: Any, sctx: StepContext, limit: float | None, rendered: Any
) -> Any:
    """A sync python action: its thread cannot be interrupted, so the attempt ends when it
    returns. Past `limit` the thread is awaited and Overran raised; on a cancel by the run it is
    awaited and its result carried on the CancelledError (`sagac_result`). A cancel from
    outside (the process is going down) abandons it."""
    inner = asyncio.ensure_future(invoke(spec, args, sctx, rendered_spec=rendered))
    try:
        async with asyncio.timeout(limit):
            return await asyncio.shield(inner)
    except TimeoutError:
        bound_at = ctx.clock.monotonic()
    except asyncio.CancelledError as cancel:
        if inner.cancelled() or not ctx.cancelled_by_run():
            inner.cancel()
            raise
        await _thread_end(ctx, inner, cancel)
        raise  # unreachable: _thread_end raises `cancel`
    result = await _thread_end(ctx, inner, None)
    raise Overran(ctx.clock.monotonic() - bound_at, result)


async def _thread_end(
    ctx: RunContext, inner: asyncio.Future[Any], cancel: asyncio.CancelledError | None
) -> Any:
    """Await a sync action's thread through any cancel by the run; its result, or NO_RESULT
    when it raised. When the run cancelled the attempt, raise that cancel, carrying the result."""
    while True:
        try:
            result = await asyncio.shield(inner)
        except asyncio.CancelledError as again:
            if inner.cancelled() or not ctx.cancelled_by_run():
                inner.cancel()
                raise
            cancel = cancel or again
            continue
        except StepError:
            result = NO_RESULT
        break
    if cancel is not None:
        if result is not NO_RESULT:
            cancel.sagac_result = result  # type: ignore[attr-defined]
        raise cancel
    return result
