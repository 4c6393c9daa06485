"""Submit: record a run for a worker (`runtime/worker.py`) to start, without running it.

`submit` validates the input, then stores the definition and a `queued` run in one write
(`Store.create_run`, which wakes waiting workers), and returns a `Submitted`: the run's id and
the run's approval token. That token (`approvals.new_token`) decides each approval gate of the
run once, whoever reaches the gate (a worker, a resume): the run keeps only its sha256, and the
clear token exists only in what `submit` returns. With a run-level idempotency key the key is
claimed first, then the run created: a submitter that died between the two left a claimed key
without a run, and the next submit with that key creates it. A repeat that finds its run gets
no token (it was handed to the first submitter). This module never runs a step, and never
stores or logs a clear token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagac.compiler.plan import Plan

from sagac.errors import RunNotFound, StoreError

from . import approvals
from .api import as_plan, synchronous
from .clock import new_run_id
from .inputs import validate_input
from .resume import claim_run_key, opened
from .store.base import Definition, RunRecord, Store


@dataclass(frozen=True, slots=True)
class Submitted:
    """What `submit` returns. `approval_token`: the clear token that decides the run's
    approval gates (`sagac approve RUN_ID --gate G --as USER --token T`), handed out here only;
    None when the saga has no approval gate, and when `existing` (a repeated idempotency key
    found its run: the token went to the first submitter). Its `str()` is the run id."""

    run_id: str
    existing: bool = False
    approval_token: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.run_id


async def submit(
    plan_or_path: Plan | str | Path,
    input: Any,
    *,
    store: Store | str,
    idempotency_key: str | None = None,
    run_id: str | None = None,
) -> Submitted:
    """Record a `queued` run of the saga with `input` (validated first: an invalid input
    records nothing) and its definition, for a worker to run; returns its id and its approval
    token (`Submitted`). With `idempotency_key`, at most one run of this saga per key: the
    same key and input again return the first run's id (`existing`, no token); another input
    raises IdempotencyConflict. `store` is a Store or a URL. `run_id` chooses the new run's id
    (an existing key's run keeps its own)."""
    plan = as_plan(plan_or_path)
    validate_input(plan, input)
    run_id = run_id or new_run_id()
    async with opened(store) as s:
        if idempotency_key is not None:
            owner_run = await claim_run_key(s, plan.saga, idempotency_key, run_id, input)
            if owner_run != run_id:
                if await _exists(s, owner_run):
                    return Submitted(owner_run, existing=True)
                run_id = owner_run  # its submitter died after claiming the key: create it
        # Absolute, so that a worker started in another folder finds the saga's actions.
        file = plan.file
        if file is not None and Path(file).is_file():
            file = str(Path(file).resolve())
        # A token only where there is a gate to decide: none to keep safe otherwise.
        gated = any(n.kind == "approval" for n in plan.nodes.values())
        token, token_digest = approvals.new_token() if gated else (None, None)
        record = RunRecord(
            run_id,
            plan.saga,
            plan.version,
            plan.hash,
            input,
            status="queued",
            file=file,
            approval_token_sha256=token_digest,
        )
        try:
            await s.create_run(record, Definition(plan.hash, plan.saga, plan.source, file))
        except StoreError:
            # Two repeats of a dead submitter's key both created its run: one write won.
            if idempotency_key is None or not await _exists(s, run_id):
                raise
            return Submitted(run_id, existing=True)
    return Submitted(run_id, approval_token=token)


async def _exists(store: Store, run_id: str) -> bool:
    try:
        await store.get_run(run_id)
    except RunNotFound:
        return False
    return True


submit_sync = synchronous(submit, "submit", "`asubmit` for synchronous programs.")
