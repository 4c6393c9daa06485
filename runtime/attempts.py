"""One step's attempts: call its action until it succeeds or fails for good, journaling each.

`run_attempts` is the loop of a task step (foreach items run their own, sharing `attempt_limit`
and `retry_delay`): `step_started` is in the store before the action is called, an attempt is
bounded by the tightest of the step's `timeout`, its `deadline` and the saga's deadline, and a
failure is retried by the step's policies unless a deadline leaves no time for the next attempt.
`call_action` runs one attempt; a sync python action's thread cannot be interrupted, so on a
cancel by the run it is awaited and its result counted (carried on the CancelledError as
`sagac_result`). This module must never journal a step's final failure or raise NodeFailed:
the node that called it does both, once.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir
from sagac.runtime import codec
from sagac.runtime.actions import (
    StepContext,
    immediate_action,
    invoke,
    render_spec,
    spec_templates,
)
from sagac.runtime.errors import StepError

from .clock import Clock
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


class AttemptsFailed(Exception):
    """The step failed for good: `exc` is journaled as its last attempt's error, not yet as the
    step's final failure."""

    def __init__(self, exc: StepError, attempt: int, started: float, item: Any) -> None:
        super().__init__(exc.code)
        self.exc = exc
        self.attempt = attempt
        self.started = started
        self.item = item


async def run_attempts(
    ctx: RunContext,
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
    Returns (recorded result, attempt, seq of step_completed); raises AttemptsFailed or
    CancelledError."""
    clock = ctx.clock
    retry: RetryState | None = None
    attempt = start_attempt
    deadline_at = clock.monotonic() + deadline if deadline is not None else None
    where = ctx.prep.where.get(nid) if item_index is None else None
    if where is None:
        where = ctx.where(nid, item_index)
    emit = ctx.journal.emit
    instant = immediate_action(spec)  # a mock without delay: no coroutine, no context
    while True:
        attempt += 1
        await emit("step_started", {**where, "attempt": attempt, "idempotency_key": key})
        started = clock.monotonic()
        saga_at = ctx.saga_deadline_at
        limit, binding = attempt_limit(started, timeout, deadline_at, saga_at)
        try:
            if instant is not None:
                if limit is not None and limit <= 0:
                    raise TimeoutError
                result = instant(attempt)
            else:
                sctx = step_context(ctx, nid, attempt, key, limit, item_index, spec=spec)
                result = await call_action(ctx, spec, args, sctx, limit, scope)
            exc: StepError | None = None
            if isinstance(result, StepError):
                exc = result
        except StepError as e:
            # A value from here on: without its traceback, this frame holding it is no
            # reference cycle (each one is the garbage collector's work, a whole run's).
            exc = e.with_traceback(None)
        except TimeoutError:
            exc = timeout_error(binding, limit, timeout, deadline, ctx.saga.timeout)
        except asyncio.CancelledError as cancel:
            completed = getattr(cancel, "sagac_result", NO_RESULT)
            if not ctx.cancelled_by_run():
                raise
            if completed is not NO_RESULT:
                await _completed(
                    ctx, where, nid, item_index, attempt, started, completed, keep, undo, item
                )
                raise
            err = {"code": "CANCELLED", "message": "cancelled: the run is stopping"}
            ev = await emit(
                "step_failed",
                {
                    **where,
                    "attempt": attempt,
                    "duration_ms": ctx.ms(started),
                    "error": err,
                    "final": True,
                    "cancelled": True,
                },
            )
            ctx.undo_attempted(nid, item_index, ev["seq"], err, item)
            raise
        if exc is None:
            try:
                return await _completed(
                    ctx, where, nid, item_index, attempt, started, result, keep, undo, item
                )
            except StepError as e:
                exc = e.with_traceback(None)  # RESULT_TOO_LARGE: retried if a policy says
        if retry is None:
            retry = RetryState(policies)
        exc, nxt = retry_delay(retry, exc, binding, attempt, deadline, deadline_at, saga_at, clock)
        if nxt is None:
            raise AttemptsFailed(exc, attempt, started, item)
        delay, max_attempts = nxt
        await emit(
            "step_retrying",
            {
                **where,
                "attempt": attempt,
                "max_attempts": max_attempts,
                "delay_ms": int(delay * 1000),
                "error": ctx.redact(error_dict(exc)),
            },
        )
        await clock.sleep(delay)


def step_context(
    ctx: RunContext,
    nid: str,
    attempt: int,
    key: str | None,
    limit: float | None,
    item_index: int | None,
    compensating: bool = False,
    spec: Any = None,
) -> StepContext:
    """What an action sees of its attempt; `limit` seconds from now is its deadline. A command
    action (`spec`) also gets the hook that journals its process group."""
    deadline = None if limit is None else ctx.clock.now() + limit
    hook = None
    if isinstance(spec, ir.CommandAction):
        hook = functools.partial(_process_started, ctx, nid, attempt, item_index, compensating)
    return StepContext(
        ctx.run_id,
        ctx.plan.saga,
        nid,
        attempt,
        key,
        deadline,
        item_index,
        compensating,
        ctx.prep.base_dir,
        hook,
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
    await ctx.journal.emit("process_started", fields)


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
    clock: Clock,
) -> tuple[StepError, tuple[float, int] | None]:
    """The error to report and, when the step is to be tried again, (delay, attempts allowed in
    all). A deadline that passed is not retried; one that leaves no time for the next attempt
    ends the step with TIMEOUT or SAGA_TIMEOUT, the last error as its cause."""
    if binding != "timeout" and exc.code in ("TIMEOUT", "SAGA_TIMEOUT"):
        return exc, None
    nxt = retry.next_delay(exc.code, clock.random)
    if nxt is None:
        return exc, None
    now = clock.monotonic()
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


def timeout_error(
    binding: str,
    limit: float | None,
    timeout: float | None,
    deadline: float | None,
    saga_timeout: float | None,
) -> StepError:
    if binding == "saga":
        return StepError(
            "SAGA_TIMEOUT", f"the saga's timeout of {saga_timeout:g}s (active time) passed"
        )
    if binding == "deadline":
        return StepError("TIMEOUT", f"the step's deadline of {deadline:g}s passed")
    return StepError("TIMEOUT", f"the attempt took longer than {timeout:g}s")


async def _completed(
    ctx: RunContext,
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
    check_result_size(result, "later steps")
    recorded = ctx.redact(result)
    ev = await ctx.journal.emit(
        "step_completed",
        {**where, "attempt": attempt, "duration_ms": ctx.ms(started), "result": recorded},
    )
    if undo:
        ctx.undo.append(Undo(nid, item_index, ev["seq"], result, None, ctx.prep.chain[nid], item))
    return result, attempt, ev["seq"]


async def call_action(
    ctx: RunContext,
    spec: Any,
    args: Any,
    sctx: StepContext,
    limit: float | None,
    scope: Mapping[str, Any],
) -> Any:
    """One attempt of an action, bounded by `limit` seconds."""
    instant = immediate_action(spec)
    if instant is not None:  # takes no time: only a deadline already passed can stop it
        if limit is not None and limit <= 0:
            raise TimeoutError
        return instant(sctx.attempt)
    prep = ctx.prep
    templated = prep.spec_templated.get(id(spec))
    if templated is None:
        templated = prep.spec_templated[id(spec)] = bool(spec_templates(spec))
    rendered = render_spec(spec, args, scope, ctx.engine) if templated else None
    if isinstance(spec, ir.PythonAction):
        sync = prep.sync_python.get(id(spec))
        if sync is None:
            sync = _sync_python(spec)
            if spec.target.partition(":")[0] in sys.modules:
                prep.sync_python[id(spec)] = sync
            else:
                sync = True  # not imported yet: assume a thread, to be safe
        if sync:
            return await _call_python(ctx, spec, args, sctx, limit, rendered)
    if limit is None:
        return await invoke(spec, args, sctx, rendered_spec=rendered)
    if limit <= 0:
        raise TimeoutError
    async with asyncio.timeout(limit):
        return await invoke(spec, args, sctx, rendered_spec=rendered)


async def _call_python(
    ctx: RunContext, spec: Any, args: Any, sctx: StepContext, limit: float | None, rendered: Any
) -> Any:
    if limit is not None and limit <= 0:
        raise TimeoutError
    inner = asyncio.ensure_future(invoke(spec, args, sctx, rendered_spec=rendered))
    try:
        async with asyncio.timeout(limit):
            return await asyncio.shield(inner)
    except asyncio.CancelledError as cancel:
        if not ctx.cancelled_by_run() or (inner.done() and inner.cancelled()):
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
