"""Sending a signal to a run (`sagac signal`): checked against the run's plan, then kept.

`send(store, run_id, name, data, by=...)` refuses, before anything is kept, a signal whose
name no `wait` of the run's definition (the one the store kept with the run) waits on
(`UNKNOWN_SIGNAL`) and data that does not match a waiting node's `schema`
(`INVALID_SIGNAL_DATA`, naming the first error and where). The store then keeps it with its
audit entry in one write (`Store.send_signal`), refusing a run that finished (`RUN_FINISHED`)
and more signals of a name than the saga has waits on it (`SIGNAL_ALREADY_SENT`), and wakes the
run when it is parked on such a wait. Every refusal is audited here (`signal`, `refused`, its
code). A `wait` consumes the signal (`waits.py`); this module never touches a journal.
"""

from __future__ import annotations

from typing import Any

from sagac.compiler import ir
from sagac.compiler.plan import Plan

from sagac.errors import InvalidSignalData, SignalRefused, UnknownSignal

from .api import synchronous
from .resume import opened, plan_of, stored_plan
from .store.base import AuditEntry, RunRecord, Signal, Store


async def send(store: Store, run_id: str, name: str, data: Any = None, *, by: str) -> Signal:
    """Send signal `name` with `data` (JSON) to run `run_id`, as `by`; returns the kept
    signal (its `signal_id`). Raises RunNotFound, or SignalRefused (audited, nothing kept)."""
    record = await store.get_run(run_id)
    try:
        waits = [
            n
            for n in (await _plan(store, record)).definition.walk()
            if isinstance(n, ir.WaitNode) and n.signal == name
        ]
        if not waits:
            raise UnknownSignal(
                f"saga {record.saga!r} has no `wait` on signal {name!r}: run {run_id} would"
                " never take it"
            )
        for wait in waits:
            check_data(wait, name, data)
        audit = AuditEntry(
            action="signal",
            outcome="accepted",
            run_id=run_id,
            gate=waits[0].id,
            actor=by,
            message=name,
            detail={"signal": name},
        )
        return await store.send_signal(run_id, name, data, audit, limit=len(waits))
    except SignalRefused as refusal:
        await store.audit(
            AuditEntry(
                action="signal",
                outcome="refused",
                run_id=run_id,
                actor=by,
                code=refusal.code,
                message=refusal.message,
                detail={"signal": name},
            )
        )
        raise


def check_data(wait: ir.WaitNode, name: str, data: Any) -> None:
    """Raise InvalidSignalData when `data` breaks `wait`'s `schema` (JSON Schema 2020-12)."""
    if wait.payload_schema is None:
        return
    from jsonschema import Draft202012Validator, FormatChecker

    validator = Draft202012Validator(wait.payload_schema, format_checker=FormatChecker())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/" + "/".join(str(p) for p in first.absolute_path)
        raise InvalidSignalData(
            f"the data of signal {name!r} does not match the schema of wait {wait.id!r}: at"
            f" {where}: {first.message}"
            + (f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else "")
        )


async def _plan(store: Store, record: RunRecord) -> Plan:
    """The definition the run runs: the one the store kept with it, else its file."""
    stored = await store.definition(record.definition_hash)
    return plan_of(record) if stored is None else stored_plan(stored)


@synchronous
async def send_sync(
    run_id: str, name: str, data: Any = None, *, store: Store | str, by: str
) -> Signal:
    """`send` for synchronous programs (sagac.signal; runs its own event loop)."""
    async with opened(store) as s:
        return await send(s, run_id, name, data, by=by)
