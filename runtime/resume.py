"""Durable runs: start, resume, cancel and decide runs whose journal lives in a store.

`start` runs a saga under its lease, at most once per run-level idempotency key. `resume`
continues a crashed, paused or cancelled run from its journal: completed steps are replayed
(never called again), started-but-unfinished ones re-run with their journaled key, and an
interrupted compensation carries on. Before anything runs it takes the run's lease (exactly one
of two concurrent resumers proceeds; the other gets RunBusy, exit 75), refuses a changed
definition unless forced (exit 65), and resolves overdue approval gates by their `on_timeout`.
A run whose file is gone runs the definition its store kept (`definition_of`, `stored_plan`).
`resume_all` does that for every unfinished run. The CLI and `sagac.resume/approve/reject` are
thin layers over this module.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from sagac.compiler.plan import Plan

from sagac.errors import DefinitionChanged, DefinitionUnavailable, IdempotencyConflict, UsageError

from . import approvals, callbacks
from .api import aresume, arun, as_plan, drive, synchronous  # noqa: F401  (re-exported)
from .clock import new_run_id
from .context import DEFAULT_SLEEP_LIMIT
from .inputs import input_hash, validate_input
from .journal import RunState, replay
from .leases import held
from .report import CompensationInfo, ErrorInfo, Failure, RunReport
from .store.base import Definition, Parked, RunRecord, Store

FINAL = frozenset({"succeeded", "compensated", "compensation_failed", "failed"})


async def start(
    plan_or_path: Plan | str | Path,
    input: Any,
    *,
    store: Store,
    idempotency_key: str | None = None,
    owner: str | None = None,
    run_id: str | None = None,
    **run_kwargs: Any,
) -> RunReport:
    """Run a saga under its lease. With `idempotency_key`, at most one run of this saga (by
    name) per key: a second call with the same input returns the first run's report (resuming
    it if it is unfinished); with a different input it raises IdempotencyConflict."""
    plan = as_plan(plan_or_path)
    validate_input(plan, input)  # invalid input changes nothing, not even a key claim
    run_id = run_id or new_run_id()
    if idempotency_key is not None:
        owner_run = await claim_run_key(store, plan.saga, idempotency_key, run_id, input)
        if owner_run != run_id:
            return await _existing(store, owner_run, plan, input, owner, run_kwargs)
    async with held(store, run_id, owner):
        return await arun(plan, input, store=store, run_id=run_id, **run_kwargs)


async def claim_run_key(store: Store, saga: str, key: str, run_id: str, input: Any) -> str:
    """Claim `saga`'s run-level idempotency `key` for `run_id` with `input`; returns the run the
    key belongs to (`run_id` when it was free). Another input under the key raises
    IdempotencyConflict."""
    digest = input_hash(input)
    owner_run, owner_digest = await store.claim_key(saga, key, run_id, digest)
    if owner_digest != digest:
        raise IdempotencyConflict(
            f"idempotency key {key!r} of saga {saga!r} was first used by run {owner_run} with"
            " a different input",
            hint="use a new key for a different request, or repeat the original input",
        )
    return owner_run


async def _existing(
    store: Store,
    run_id: str,
    plan: Plan,
    input: Any,
    owner: str | None,
    run_kwargs: Mapping[str, Any],
) -> RunReport:
    """The run an idempotency key already belongs to: its report, or resumed to one."""
    from sagac.errors import RunNotFound

    try:
        record = await store.get_run(run_id)
    except RunNotFound:
        # The first caller claimed the key and died before its run existed: start it now.
        async with held(store, run_id, owner):
            return await arun(plan, input, store=store, run_id=run_id, **run_kwargs)
    if record.status in FINAL and record.report is not None:
        return RunReport.model_validate(record.report)
    waiting = record.status == "waiting_approval" and record.report is not None
    if waiting and not await _has_news(store, record):  # nothing a resume could change
        return RunReport.model_validate(record.report)
    keep = {
        k: v for k, v in run_kwargs.items() if k in ("on_event", "clock", "secrets", "sleep_limit")
    }
    return await resume(run_id, store=store, plan=plan, owner=owner, **keep)


def plan_of(record: RunRecord, plan: Plan | str | Path | None = None) -> Plan:
    """The run's definition: `plan` when given, else the file it was started from."""
    if plan is not None:
        return as_plan(plan)
    if not record.file:
        raise DefinitionUnavailable(
            f"run {record.run_id} does not record its definition file",
            hint="pass the saga file explicitly (sagac resume RUN_ID --file FILE)",
        )
    if not Path(record.file).is_file():
        raise DefinitionUnavailable(
            f"the definition of run {record.run_id} was {record.file}, which no longer exists",
            hint="pass the saga file explicitly (sagac resume RUN_ID --file FILE)",
        )
    return as_plan(record.file)


async def definition_of(
    store: Store, record: RunRecord, plan: Plan | str | Path | None = None
) -> Plan:
    """`plan_of`, except that a run whose file is gone (or not recorded) runs the definition
    the store kept with it (`Store.definition`) instead of raising DefinitionUnavailable."""
    if plan is None and not (record.file and Path(record.file).is_file()):
        stored = await store.definition(record.definition_hash)
        if stored is not None:
            return stored_plan(stored)
    return plan_of(record, plan)


def stored_plan(definition: Definition, sagas: Path | None = None) -> Plan:
    """The plan of a definition kept in a store: its hash is the stored one. Python actions
    import from the folder of the file it was compiled from when that folder exists here,
    else from `sagas` (the folder holding the saga files on this machine)."""
    from sagac.compiler.pipeline import compile_text

    from sagac.errors import DefinitionError

    file = definition.file
    if sagas is not None and (file is None or not Path(file).parent.is_dir()):
        file = str(sagas / (Path(file).name if file else f"{definition.saga}.yaml"))
    c = compile_text(definition.source, file or f"<{definition.saga}>")
    if c.plan is None or not c.ok():
        raise DefinitionError(c.diagnostics)
    if c.plan.hash != definition.hash:  # the store returned another text than it was given
        raise DefinitionUnavailable(
            f"the stored definition {definition.hash} of saga {definition.saga!r} compiles"
            f" to {c.plan.hash}",
            hint="the store is damaged: resume the run with its file (--file FILE)",
        )
    return c.plan


async def resume(
    run_id: str,
    *,
    store: Store,
    plan: Plan | str | Path | None = None,
    force: bool = False,
    owner: str | None = None,
    on_event: Any = None,
    clock: Any = None,
    secrets: Mapping[str, str] | None = None,
    record: RunRecord | None = None,
    sleep_limit: float = DEFAULT_SLEEP_LIMIT,
) -> RunReport:
    """Continue `run_id` to its end (or until it parks again) and return its report.
    `record`: the run's record as its caller read it just now (a worker, under the lease its
    claim took), not read again. A `waiting` run whose wake time is more than `sleep_limit`
    seconds away (or unknown: a wait for a signal that has not come) is left as it is: its
    stored report is returned (`not_due`), nothing is written."""
    if record is None:
        record = await store.get_run(run_id)
    if record.status in FINAL and record.report is not None:
        return RunReport.model_validate(record.report)
    if not_due(record, sleep_limit) and not parked_on_call(record):
        assert record.report is not None
        return RunReport.model_validate(record.report)
    the_plan = await definition_of(store, record, plan)
    changed = the_plan.hash != record.definition_hash
    if changed and not force:
        raise DefinitionChanged(
            f"run {run_id} started under definition {record.definition_hash}, but "
            f"{the_plan.file or 'the given definition'} is now {the_plan.hash}",
            hint="resume with the definition the run started with, or pass --force to "
            "continue under the new one (audited)",
        )
    async with held(store, run_id, owner) as lease:
        state = replay(await store.load_events(run_id))
        if state.finished:
            # Crashed after its last event and before its report was stored: nothing to run.
            report = report_from_journal(state, record)
            await store.update_run(run_id, report.status, report.to_json_dict())
            return report
        if changed:
            kept = Definition(the_plan.hash, the_plan.saga, the_plan.source, the_plan.file)
            await store.rebind_definition(run_id, kept, lease.owner)
        # A run with an empty journal (submitted, or crashed before its first commit) has no
        # gate to expire; a queued one becomes `running` with its `saga_started` (one commit).
        if state.last_seq and await approvals.expire_overdue(store, run_id, lease.owner):
            state = replay(await store.load_events(run_id))  # with the timeouts it journaled
        return await drive(
            the_plan,
            record,
            state,
            store,
            on_event=on_event,
            clock=clock,
            secrets=secrets,
            sleep_limit=sleep_limit,
        )


def not_due(record: RunRecord, sleep_limit: float = DEFAULT_SLEEP_LIMIT) -> bool:
    """Whether `record` is a `waiting` run that nothing would move now: its wake time (a
    sleep's due time, a timeout, or now once a signal, callback or cancel came) is unknown or
    more than `sleep_limit` seconds away."""
    if record.status != "waiting" or record.report is None:
        return False
    wake = record.meta.get("wake_at")
    return wake is None or wake - time.time() > sleep_limit


def parked_on_call(record: RunRecord) -> bool:
    """Whether `record` waits for a child run (a `call`): resumed by hand, it drives the child
    again when the child can move (a decision, a signal, a crash), else it parks again."""
    parked = (record.report or {}).get("parked") or ()
    return any(p.get("kind") == "call" for p in parked)


def report_from_journal(state: RunState, record: RunRecord) -> RunReport:
    """The report of a finished run, rebuilt from its journal alone (already redacted)."""
    final = state.final_event or {}
    failure = final.get("failure")
    comps = []
    for c in state.compensation_log:
        error = c.get("error")
        comps.append({**c, "error": _only(error, ErrorInfo) if error else None})
    return RunReport.model_validate(
        {
            "run_id": record.run_id,
            "saga": record.saga,
            "version": record.version,
            "status": final.get("status", state.status),
            "failure": _only(failure, Failure) if failure else None,
            "errors": [_only(e, ErrorInfo) for e in state.errors],
            "compensations": [_only(c, CompensationInfo) for c in comps],
            "needs_attention": final.get("needs_attention", []),
            "output": final.get("output"),
            "duration_ms": final.get("duration_ms", 0),
            "started_at": state.started_at or record.created_at,
            "finished_at": final.get("at"),
            "definition_hash": record.definition_hash,
            "children": {k: e["child_run_id"] for k, e in state.calls.items()},
        }
    )


def _only(data: Mapping[str, Any], model: Any) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k in model.model_fields}


async def runnable(store: Store, sleep_limit: float = DEFAULT_SLEEP_LIMIT) -> list[RunRecord]:
    """Unfinished runs that a resume would move on: queued ones (submitted, never started),
    running ones (crashed), interrupted ones (stopped by a signal), runs waiting at a gate with
    a decision, an overdue gate or a cancel request, and parked ones whose wake time is due
    (within `sleep_limit`)."""
    out = []
    for status in ("queued", "running", "interrupted", "waiting_approval", "waiting"):
        for record in await store.list_runs(status=status, limit=1_000_000):
            if status == "waiting_approval" and not await _has_news(store, record):
                continue
            if not_due(record, sleep_limit):
                continue
            out.append(record)
    out.sort(key=lambda r: r.created_at)
    return out


async def _has_news(store: Store, record: RunRecord) -> bool:
    if record.meta.get("cancel_requested_at"):
        return True

    for row in await approvals.pending(store, record.run_id):
        if row["deadline_epoch"] is not None and row["deadline_epoch"] <= time.time():
            return True
    events = await store.load_events(record.run_id)
    waiting_since = max((e["seq"] for e in events if e["type"] == "saga_waiting"), default=0)
    return any(e["type"] == "approval_decided" and e["seq"] > waiting_since for e in events)


async def resume_all(store: Store, **kwargs: Any) -> list[tuple[str, RunReport | Exception]]:
    """Resume every runnable run, one after another; each outcome or the error it raised."""
    from sagac.errors import SagacError

    out: list[tuple[str, RunReport | Exception]] = []
    for record in await runnable(store, kwargs.get("sleep_limit", DEFAULT_SLEEP_LIMIT)):
        try:
            out.append((record.run_id, await resume(record.run_id, store=store, **kwargs)))
        except SagacError as e:
            out.append((record.run_id, e))
    return out


async def cancel(store: Store, run_id: str, *, by: str, reason: str | None = None) -> bool:
    """Record a cancel request; the process running the run (or the next resume) obeys it.
    False when the run had already been asked to cancel."""
    if not store.shared:  # nothing else can run it: nobody would hear the request
        raise UsageError(
            "cancel requests need a durable store",
            hint="run the saga with --store sqlite:///PATH (the default)",
        )
    await store.get_run(run_id)
    return await store.request_cancel(run_id, by, reason)


# -- synchronous front doors (sagac.resume / approve / reject) ---------------------------------


@contextlib.asynccontextmanager
async def opened(store: Store | str) -> AsyncIterator[Store]:
    """`store`, or the store at that URL, opened here and closed afterwards."""
    if not isinstance(store, str):
        yield store
        return
    from .store import open_store

    fresh = open_store(store)
    try:
        yield fresh
    finally:
        await fresh.close()


@synchronous
async def resume_sync(run_id: str, *, store: Store | str, **kwargs: Any) -> RunReport:
    """`resume` for synchronous programs (sagac.resume; runs its own event loop)."""
    async with opened(store) as s:
        return await resume(run_id, store=s, **kwargs)


@synchronous
async def cancel_sync(
    run_id: str, *, store: Store | str, by: str, reason: str | None = None
) -> bool:
    """Ask a run to stop and compensate (sagac.cancel); see `cancel`."""
    async with opened(store) as s:
        return await cancel(s, run_id, by=by, reason=reason)


@synchronous
async def decide_sync(
    run_id: str,
    gate: str,
    *,
    store: Store | str,
    approved: bool,
    by: str,
    token: str,
    comment: str | None = None,
    value: Any = None,
    then_resume: bool = False,
    **resume_kwargs: Any,
) -> RunReport | None:
    """Record a decision (and, with `then_resume`, continue the run): sagac.approve/reject."""
    async with opened(store) as s:
        await approvals.decide(
            s, run_id, gate, approved=approved, by=by, token=token, comment=comment, value=value
        )
        if not then_resume:
            return None
        return await resume(run_id, store=s, **resume_kwargs)


@synchronous
async def callback_sync(
    token: str,
    *,
    store: Store | str,
    result: Any = callbacks.NO_RESULT,
    error: str | None = None,
    message: str | None = None,
    by: str | None = None,
) -> Parked:
    """Report the outcome of a callback step (sagac.callback): its `result`, or an `error` code
    and `message`; see `callbacks.complete`. `store` is a Store or a URL."""
    async with opened(store) as s:
        return await callbacks.complete(
            s, token, result=result, error=error, message=message, by=by
        )


def approve(
    run_id: str,
    gate: str,
    *,
    store: Store | str,
    by: str,
    token: str,
    comment: str | None = None,
    value: Any = None,
    resume: bool = False,
    **resume_kwargs: Any,
) -> RunReport | None:
    """Approve a waiting gate (sagac.approve); returns the resumed run's report with `resume`."""
    return decide_sync(
        run_id,
        gate,
        store=store,
        approved=True,
        by=by,
        token=token,
        comment=comment,
        value=value,
        then_resume=resume,
        **resume_kwargs,
    )


def reject(
    run_id: str,
    gate: str,
    *,
    store: Store | str,
    by: str,
    token: str,
    reason: str,
    resume: bool = False,
    **resume_kwargs: Any,
) -> RunReport | None:
    """Reject a waiting gate (sagac.reject): the run fails with APPROVAL_REJECTED and
    compensates when resumed."""
    return decide_sync(
        run_id,
        gate,
        store=store,
        approved=False,
        by=by,
        token=token,
        comment=reason,
        then_resume=resume,
        **resume_kwargs,
    )
