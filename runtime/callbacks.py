"""Task steps with `callback:` (the `.waitForTaskToken` pattern): tokens, waiting, completing.

Each attempt of such a step gets a fresh single-use token (`approvals.new_token`): the token is in
scope as `callback.token` for the step's `with` and its action's templates and in a python
action's `context.callback_token`; only its sha256 is journaled (`callback_issued`, durable
before the action is called, which opens the store's parked row) and the clear token is masked
like a secret in everything the run journals. When the action returns, `callback_waiting` says so
(a resume never calls the action again for that attempt), and the step takes the outcome that
`sagac callback TOKEN` recorded on a pending row of the step (`wait_ended {reason: callback}`),
fails the attempt with CALLBACK_TIMEOUT past its deadline (`wait_ended {reason: timeout}`), or
parks (`CallbackPending`: the node returns HALTED, the run ends `waiting`). A result completes the
step; an error fails the attempt, and the step's retry policies (a new attempt, a new token),
compensation and `on: attempted` apply as for any failed attempt, all in `attempts.Attempts`.

`complete` is the other side: it checks a token and records its outcome through
`Store.complete_callback` (the compare-and-set that makes a token single-use; the store audits an
accepted one), and audits a refusal itself. This module never stores, journals or logs a clear
token, and never decides a retry itself.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from sagac.compiler import ir
from sagac.runtime.actions.mock import immediate

from sagac.errors import CallbackRefused, StepError, UnknownCallbackToken, UsageError

from .approvals import new_token, token_hash
from .attempts import Attempts, TaskOutcomes, call_action, cancelled_error, step_context
from .clock import rfc3339
from .journal import StepRecord
from .redaction import Redactor
from .store.base import AuditEntry, Parked, Store, os_user

if TYPE_CHECKING:
    from .context import RunContext

ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")


class CallbackPending(Exception):
    """The attempt's action returned and its callback has not come: the step parks, until
    `due` (epoch seconds: the earliest deadline of its tokens) at the latest."""

    def __init__(self, due: float | None) -> None:
        super().__init__()
        self.due = due


class Waiting:
    """A callback step's state across its attempts (`Attempts.callback`)."""

    __slots__ = ("node", "rejoin", "scope", "settled")

    def __init__(self, node: ir.TaskStep, scope: Mapping[str, Any]) -> None:
        self.node = node
        self.scope = scope
        # The first attempt to run is a resumed one whose action already ran: take its outcome.
        self.rejoin = False
        self.settled: tuple[str, int] | None = None  # journaled before a crash: apply it again


class CallbackOutcomes(TaskOutcomes):
    """A callback step's attempts: `call` journals `step_started` itself (none when it rejoins
    an attempt whose action already ran), then `callback_issued`, the action, `callback_waiting`
    and the outcome; completions, retries and cancels are journaled as for any task step."""

    START: ClassVar[str | None] = None
    CALLS = True
    __slots__ = ()

    async def call(self, a: Attempts, attempt: int, limit: float | None) -> Any:
        w: Waiting = a.callback
        if w.rejoin:
            w.rejoin = False
            return await _outcome(a, w, attempt)
        ctx = a.ctx
        await ctx.emit("step_started", {**a.where, "attempt": attempt, "idempotency_key": a.key})
        token, digest = new_token()
        ctx.keep_secret(token)
        scope = {**w.scope, "callback": {"token": token}}
        args = ctx.render_args(w.node.with_, scope)
        timeout = w.node.callback.timeout if w.node.callback is not None else None
        deadline = None if timeout is None else rfc3339(ctx.clock.now() + timeout)
        await ctx.emit(
            "callback_issued",
            {**a.where, "attempt": attempt, "token_sha256": digest, "deadline": deadline},
        )
        try:
            if limit is not None and limit <= 0:
                raise TimeoutError
            spec = a.spec
            instant = immediate(spec) if type(spec) is ir.MockAction else None
            if instant is not None:
                result = instant(attempt)
            else:
                sctx = step_context(ctx, a.nid, attempt, a.key, limit, a, spec, token)
                result = await call_action(ctx, spec, args, sctx, limit, scope)
            if isinstance(result, StepError):
                raise result
        except (StepError, TimeoutError):
            # The action failed: nothing waits for this token any more.
            await ctx.emit("wait_ended", {**a.where, "reason": "cancelled", "attempt": attempt})
            raise
        except asyncio.CancelledError:
            if ctx.cancelled_by_run():  # journaled cancelled by the loop: so is its token
                await ctx.emit("wait_ended", {**a.where, "reason": "cancelled", "attempt": attempt})
            raise
        await ctx.emit("callback_waiting", {**a.where, "attempt": attempt})
        return await _outcome(a, w, attempt)


CALLBACK = CallbackOutcomes()


async def attempts(
    ctx: RunContext,
    loop: Attempts,
    node: ir.TaskStep,
    scope: Mapping[str, Any],
    rec: StepRecord | None,
) -> Any:
    """Run a callback step's attempts (`loop`, made with CALLBACK): its result, or HALTED when
    it parks. A resumed step whose last attempt's action returned (or whose callback came, even
    for an earlier token) takes up that attempt instead of calling the action again. Raises
    AttemptsFailed as `Attempts.run` does."""
    w = loop.callback = Waiting(node, scope)
    start: int = 0
    retried: tuple[str, ...] = ()
    if rec is not None:
        start, retried = rec.attempt, tuple(rec.retried)
        w.settled = rec.settled
        if (
            rec.settled is not None
            or rec.returned
            or any(r.get("outcome") is not None for r in await _rows(ctx, node.id, pending=True))
        ):
            w.rejoin = True
            start -= 1
    try:
        result, _, _ = await loop.run(start, retried)
    except CallbackPending as pending:
        return ctx.park(node.id, "callback", pending.due)
    return result


async def _rows(ctx: RunContext, step: str, *, pending: bool = False) -> list[Parked]:
    rows = await ctx.store.parked(ctx.run_id)
    return [
        r
        for r in rows
        if r["kind"] == "callback"
        and r["step"] == step
        and (not pending or r["state"] == "pending")
    ]


async def _outcome(a: Attempts, w: Waiting, attempt: int) -> Any:
    """After the action of `attempt` returned: the callback's result, or raise its error,
    CALLBACK_TIMEOUT, or CallbackPending."""
    ctx = a.ctx
    settled, w.settled = w.settled, None
    if settled is not None:  # consumed (or timed out) before a crash: apply it again
        reason, which = settled
        if reason == "timeout":
            raise _timeout(w.node)
        row = next((r for r in await _rows(ctx, a.nid) if r["attempt"] == which), None)
        if row is not None and row.get("outcome") is not None:
            return _apply(row["outcome"])
    pending = await _rows(ctx, a.nid, pending=True)
    came = [r for r in pending if r.get("outcome") is not None]
    if came:
        first = min(came, key=lambda r: r.get("outcome_at") or "")
        await ctx.emit("wait_ended", {**a.where, "reason": "callback", "attempt": first["attempt"]})
        for r in pending:  # the step no longer waits for its other tokens
            if r is not first:
                await ctx.emit(
                    "wait_ended", {**a.where, "reason": "cancelled", "attempt": r["attempt"]}
                )
        return _apply(first["outcome"])
    now, late = ctx.clock.now(), False
    for r in pending:
        if r["due_epoch"] is not None and r["due_epoch"] <= now:
            await ctx.emit("wait_ended", {**a.where, "reason": "timeout", "attempt": r["attempt"]})
            late = late or r["attempt"] == attempt
    if late:
        raise _timeout(w.node)
    dues = [r["due_epoch"] for r in pending if r["due_epoch"] is not None]
    raise CallbackPending(min(dues, default=None))


async def abandon(ctx: RunContext) -> None:
    """The run compensates while callback steps wait (parked, or left waiting by an earlier
    process): nothing waits for their tokens any more (`wait_ended {reason: cancelled}`, so a
    late callback is refused), and each such step ends cancelled, as a step the run cancels
    mid-flight: `compensate.on: attempted` undoes it."""
    if not ctx.prep.callbacks:
        return
    rows = [r for r in await ctx.store.parked(ctx.run_id) if r["kind"] == "callback"]
    failed = {e.get("step") for e in ctx.errors}
    for r in rows:
        if r["state"] != "pending":
            continue
        nid = r["step"]
        where = ctx.where(nid)
        await ctx.emit("wait_ended", {**where, "reason": "cancelled", "attempt": r["attempt"]})
        view = ctx.steps_view.get(nid)
        if nid in failed or (view is not None and view["status"] == "completed"):
            continue
        failed.add(nid)
        error = cancelled_error()
        ended = await ctx.emit(
            "step_failed",
            {**where, "attempt": r["attempt"], "duration_ms": 0, "error": error, "final": True,
             "cancelled": True},
        )  # fmt: skip
        ctx.undo_attempted(nid, None, ended["seq"], error, None)


def _timeout(node: ir.TaskStep) -> StepError:
    timeout = node.callback.timeout if node.callback is not None else None
    return StepError("CALLBACK_TIMEOUT", f"no callback came within {timeout:g}s")


def _apply(outcome: Mapping[str, Any]) -> Any:
    """A recorded outcome: its result, or its error raised as the attempt's."""
    if "error" in outcome:
        error = outcome["error"] or {}
        code = error.get("code") or "UNEXPECTED"
        raise StepError(code, error.get("message") or f"the callback reported {code}")
    return outcome.get("result")


# -- completing a callback (`sagac callback`) -------------------------------------------------


NO_RESULT: Any = object()  # `complete` without a result: an error is reported


def outcome_of(result: Any, error: str | None, message: str | None) -> dict[str, Any]:
    """The outcome to record: `{"result": X}` or `{"error": {code, message}}`; UsageError for
    both or neither, or an error code that is not UPPER_SNAKE_CASE."""
    if (result is NO_RESULT) == (error is None):
        raise UsageError("give either a result or an error code")
    if error is None:
        return {"result": result}
    if not ERROR_CODE.match(error):
        raise UsageError(
            f"{error!r} is not an error code",
            hint="codes are upper case letters, digits and `_`, starting with a letter "
            "(PAYMENT_DECLINED)",
        )
    return {"error": {"code": error, "message": message or error}}


async def complete(
    store: Store,
    token: str,
    *,
    result: Any = NO_RESULT,
    error: str | None = None,
    message: str | None = None,
    by: str | None = None,
) -> Parked:
    """Record the outcome of the callback step that issued `token`: its `result`, or an `error`
    code (and `message`); `by` (default: the OS user) is audited. Returns the callback's row as
    updated (`run_id`, `step`, `attempt`, ...). Raises UsageError for a malformed outcome,
    CallbackRefused (audited, exit 77) when the token is unknown, used, late or no longer waited
    for."""
    outcome = outcome_of(result, error, message)
    by = by or os_user()
    outcome = Redactor([token]).redact(outcome)  # the clear token is never stored
    digest = token_hash(token)
    audit = AuditEntry(
        action="callback",
        outcome="accepted",
        actor=by,
        code=error,
        message=message if error is not None else None,
        detail={"token_sha256": digest},
    )
    try:
        return await store.complete_callback(digest, outcome, audit)
    except CallbackRefused as refusal:
        row = None if isinstance(refusal, UnknownCallbackToken) else await store.callback(digest)
        await store.audit(
            AuditEntry(
                action="callback",
                outcome="refused",
                run_id=row["run_id"] if row else None,
                gate=row["step"] if row else None,
                actor=by,
                code=refusal.code,
                message=refusal.message,
                detail={"token_sha256": digest},
            )
        )
        raise
