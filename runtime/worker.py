"""The worker: a long-running process that claims runnable runs from a store and drives them.

`run_worker(store, ...)` registers the process (`Store.heartbeat`, every third of the lease's
time to live), then loops: claim up to the free slots (`Store.claim_runs`, which writes this
worker's leases atomically), drive each claimed run in a task of its own under that lease
(`leases.held` adopts and renews it; `resume.resume` starts a queued run from its empty
journal, continues any other one, and resolves overdue approval gates), and when nothing is
runnable wait for a wake-up (`Store.wait_for_work`) no longer than `poll` or the next wake time
(`Store.next_wake`: a gate's deadline, a lease running out). Each run runs the definition the
store kept with it (`resume.stored_plan`), never the file as it is now.

Failures: a store error in the loop (`StoreUnavailable`: the server went away) is logged and
retried after a capped, jittered backoff; a run whose drive failed is retried by this worker
under its own lease (renewed meanwhile; if this worker dies, the lease expires and another
worker takes the run). A lease that could not be renewed stops its run as a crash would.

Stopping: the first SIGTERM or SIGINT claims nothing new, marks the worker `stopping`, lets the
runs in flight go on for up to `grace` seconds, then cancels what is left through the
executor's interrupt path (nothing half-done is journaled; the run is left `interrupted`, its
lease released, runnable for the next worker), forgets the worker and returns 0. A second
signal stops at once (128 + the signal). One JSON line per run transition goes to `log`.

This module never writes a journal itself: runs move only through `resume.resume`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagac.compiler.plan import Plan

from sagac.errors import SagacError, StoreError

from .clock import rfc3339
from .interrupts import Interrupt, stop_on_signals
from .leases import LEASE_TTL, held, owner_id
from .report import WAITING
from .resume import plan_of, resume, stored_plan
from .store.base import RunRecord, Store, WorkerInfo

BACKOFF_FIRST = 0.2  # seconds before the first retry after a store error
BACKOFF_CAP = 5.0  # the longest wait between retries
Log = Callable[[dict[str, Any]], None]
WORKER_SLEEP_LIMIT = 1.0  # seconds: a worker waits in-process for sleeps no longer than this


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 4  # runs driven at once
    lease_ttl: float = LEASE_TTL  # seconds; renewed (and heartbeats sent) every third of it
    poll: float = 1.0  # the longest idle wait when no wake-up comes
    grace: float = 30.0  # after a SIGTERM: how long runs in flight may go on
    sagas: Path | None = None  # where python actions import from when a run's folder is gone
    exit_when_idle: bool = False  # return once nothing is runnable, in flight or due soon
    sleep_limit: float = WORKER_SLEEP_LIMIT  # sleeps this short are waited, longer ones park


def backoff(failures: int) -> float:
    """The wait before retry number `failures` (1, 2, ...): doubling, capped, jittered so that
    workers that failed together do not retry together."""
    first: float = BACKOFF_FIRST * 2 ** (failures - 1)
    return min(BACKOFF_CAP, first) * random.uniform(0.5, 1.0)


async def run_worker(
    store: Store,
    *,
    concurrency: int = 4,
    lease_ttl: float = LEASE_TTL,
    poll: float = 1.0,
    grace: float = 30.0,
    sagas: str | Path | None = None,
    exit_when_idle: bool = False,
    log: Log | None = None,
    sleep_limit: float = WORKER_SLEEP_LIMIT,
) -> int:
    """Claim and drive runnable runs of `store` until SIGTERM or SIGINT (or, with
    `exit_when_idle`, until there is nothing left to do); returns the exit code: 0 after a
    graceful stop, 128 + the signal when a second signal stopped it at once. `log` receives one
    dict per transition (`at`, `worker`, `event`, `run_id`, `saga`, ...)."""
    options = WorkerOptions(
        concurrency,
        lease_ttl,
        poll,
        grace,
        Path(sagas) if sagas else None,
        exit_when_idle,
        sleep_limit,
    )
    return await Worker(store, options, log).run()


class Worker:
    """One worker process's state: its id, its runs in flight, its stop requests."""

    def __init__(self, store: Store, options: WorkerOptions, log: Log | None = None) -> None:
        self.store, self.options = store, options
        self.id = owner_id()
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._log_to = log
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._plans: dict[str, Plan] = {}
        self._stopping = asyncio.Event()  # first signal: claim nothing new
        self._now = asyncio.Event()  # second signal: stop at once
        self._slot_freed = asyncio.Event()
        self._beat_now = asyncio.Event()
        self._cancelled: set[asyncio.Task[None]] = set()  # drives cancelled by a stop
        self._closing = False
        self._interrupt: Interrupt | None = None

    # -- the outline -----------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        watcher = loop.create_task(self._watch_signals())
        # Runs started under this context see the signal (`interrupts.received`): cancelled
        # after the grace period, they journal `saga_interrupted` and are left resumable.
        with stop_on_signals(watcher) as interrupt:
            self._interrupt = interrupt
            o = self.options
            self.log(
                "worker_started",
                host=self.host,
                pid=self.pid,
                concurrency=o.concurrency,
                lease_ttl=o.lease_ttl,
                poll=o.poll,
                grace=o.grace,
            )
            heart = loop.create_task(self._heartbeats())
            try:
                await self._claim_loop()
                await self._drain()
            finally:
                self._closing = True
                self._beat_now.set()
                for task in (watcher, heart):
                    task.cancel()
                await asyncio.gather(watcher, heart, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await self.store.remove_worker(self.id)
        stopped_now = self._now.is_set() and interrupt.signal is not None
        self.log("worker_stopped", exit_code=interrupt.exit_code if stopped_now else 0)
        return interrupt.exit_code if stopped_now else 0

    def log(self, event: str, run_id: str | None = None, **fields: Any) -> None:
        if self._log_to is None:
            return
        line: dict[str, Any] = {"at": rfc3339(time.time()), "worker": self.id, "event": event}
        if run_id is not None:
            line["run_id"] = run_id
        line.update(fields)
        self._log_to(line)

    def info(self) -> WorkerInfo:
        state = "stopping" if self._stopping.is_set() else "running"
        return WorkerInfo(self.id, self.host, self.pid, self.options.concurrency, state=state)

    # -- claiming --------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._slot_freed.clear()
            free = self.options.concurrency - len(self._tasks)
            if free > 0:
                try:
                    claimed = await self.store.claim_runs(self.id, self.options.lease_ttl, free)
                    next_wake = None if claimed else await self.store.next_wake()
                except StoreError as e:
                    failures += 1
                    delay = backoff(failures)
                    self.log(
                        "error",
                        where="claim",
                        code=e.code,
                        message=str(e),
                        retry_in=round(delay, 3),
                    )
                    await self._pause(delay)
                    continue
                failures = 0
                for run_id in claimed:
                    self._start(run_id)
                if claimed:
                    continue  # there may be more
                if self.options.exit_when_idle and not self._tasks and not self._due(next_wake):
                    self.log("idle")
                    return
                await self._idle(self._timeout(next_wake), claim=True)
            else:
                await self._idle(self.options.poll, claim=False)

    def _timeout(self, next_wake: float | None) -> float:
        if next_wake is None:
            return self.options.poll
        return max(0.0, min(self.options.poll, next_wake - time.time()))

    def _due(self, next_wake: float | None) -> bool:
        """Whether something becomes runnable within one lease TTL (a lease of another
        worker running out, a gate's deadline): an idle-exiting worker waits for it."""
        return next_wake is not None and next_wake - time.time() <= self.options.lease_ttl

    async def _idle(self, timeout: float, *, claim: bool) -> None:
        """Wait for work (when a slot is free), a freed slot or a stop, at most `timeout`."""
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._stopping.wait()),
            asyncio.ensure_future(self._slot_freed.wait()),
        ]
        if claim:
            waits.append(asyncio.ensure_future(self.store.wait_for_work(timeout)))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            done = await asyncio.gather(*waits, return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, StoreError):  # the next claim reports and backs off
                self.log("error", where="wait", code=outcome.code, message=str(outcome))

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less when a stop is asked."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- driving one run -------------------------------------------------------------------

    def _start(self, run_id: str) -> None:
        self.log("claimed", run_id)
        # Claimed again while a task of ours that lost the run's lease is still ending (a
        # long store outage): the new one starts once the old one is gone.
        previous = self._tasks.get(run_id)
        task = asyncio.get_running_loop().create_task(self._own(run_id, previous))
        self._tasks[run_id] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._tasks.get(run_id) is task:
                del self._tasks[run_id]
            self._slot_freed.set()

        task.add_done_callback(done)

    async def _own(self, run_id: str, previous: asyncio.Task[None] | None = None) -> None:
        """Drive `run_id` under this worker's lease until it finishes or parks, retrying
        after a failure (the lease renewed meanwhile) unless the worker is stopping."""
        if previous is not None:
            await asyncio.wait([previous])
        began = time.monotonic()
        saga: str | None = None
        failures = 0
        leases = []
        # The lease the claim wrote just now is adopted, not taken again; after waiting for a
        # previous task it may be older than it looks: taken again to be sure.
        ttl = self.options.lease_ttl
        try:
            async with held(self.store, run_id, self.id, ttl, claimed=previous is None) as lease:
                leases.append(lease)
                while True:
                    try:
                        record = await self.store.get_run(run_id)
                        saga = record.saga
                        plan = await self._plan(record)
                        step = "started" if record.status == "queued" else "resumed"
                        self.log(step, run_id, saga=saga, status=record.status)
                        report = await resume(
                            run_id,
                            store=self.store,
                            plan=plan,
                            owner=self.id,
                            record=record,
                            sleep_limit=self.options.sleep_limit,
                        )
                    except Exception as e:  # a store error, a bug: try again later
                        failures += 1
                        delay = backoff(failures)
                        code = getattr(e, "code", type(e).__name__)
                        self.log("error", run_id, saga=saga, code=code, message=str(e))
                        if self._stopping.is_set() or lease.lost:
                            break
                        self.log("retry", run_id, saga=saga, retry_in=round(delay, 3))
                        await self._pause(delay)
                        if self._stopping.is_set():
                            break
                        continue
                    took = int((time.monotonic() - began) * 1000)
                    if report.status in WAITING:
                        gates = [w.id for w in report.waiting]
                        parked = [p.id for p in report.parked]
                        self.log(
                            "parked",
                            run_id,
                            saga=saga,
                            status=report.status,
                            gates=gates,
                            nodes=parked,
                        )
                    else:
                        self.log(
                            "finished", run_id, saga=saga, status=report.status, duration_ms=took
                        )
                    break
        except asyncio.CancelledError:
            if leases and leases[0].lost:  # another worker took it: this one writes nothing
                self.log("lease_lost", run_id, saga=saga)
                raise
            self.log("interrupted", run_id, saga=saga)
            self.log("released", run_id, saga=saga)
            raise
        except SagacError as e:
            # The lease could not be taken again (another owner has it, or the store is gone):
            # the claim's lease runs out and whoever claims the run next continues it.
            self.log("error", run_id, saga=saga, where="lease", code=e.code, message=str(e))
            return
        self.log("released", run_id, saga=saga)

    async def _plan(self, record: RunRecord) -> Plan:
        """The definition the run was submitted (or started) with, compiled once."""
        plan = self._plans.get(record.definition_hash)
        if plan is None:
            stored = await self.store.definition(record.definition_hash)
            # A run recorded before definitions were kept runs its file.
            plan = plan_of(record) if stored is None else stored_plan(stored, self.options.sagas)
            self._plans[record.definition_hash] = plan
        return plan

    # -- heartbeats and stopping -----------------------------------------------------------

    async def _heartbeats(self) -> None:
        # Ends on `_closing`, not only on cancellation: Python 3.11's `wait_for` drops a cancel
        # that comes as its wait completes (the stop sets `_beat_now` just before cancelling),
        # and this loop would then beat, and keep its worker alive, forever.
        while not self._closing:
            try:
                await self.store.heartbeat(self.info())
            except StoreError as e:
                self.log("error", where="heartbeat", code=e.code, message=str(e))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), self.options.lease_ttl / 3)
            self._beat_now.clear()

    async def _watch_signals(self) -> None:
        """Cancelled by each SIGTERM or SIGINT (`stop_on_signals`): the first stops claiming,
        the second stops at once."""
        task = asyncio.current_task()
        assert task is not None
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if self._closing or self._interrupt is None or self._interrupt.signal is None:
                    raise
                task.uncancel()
                if not self._stopping.is_set():
                    self._stopping.set()
                    self._beat_now.set()
                    self.log(
                        "worker_stopping",
                        signal=self._interrupt.name,
                        in_flight=sorted(self._tasks),
                        grace=self.options.grace,
                    )
                else:
                    self._now.set()
                    for t in self._tasks.values():  # again: command actions are killed now
                        t.cancel()
                        self._cancelled.add(t)

    async def _drain(self) -> None:
        """After a stop: let the runs in flight go on for up to the grace period (less when a
        second signal comes), then cancel what is left and wait for it to be journaled."""
        deadline = time.monotonic() + self.options.grace
        now = asyncio.ensure_future(self._now.wait())
        try:
            while self._tasks and not self._now.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                waits: set[asyncio.Future[Any]] = {now, *self._tasks.values()}
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            now.cancel()
        remaining = list(self._tasks.values())
        if remaining:
            self.log("cancelling", in_flight=sorted(self._tasks))
        for task in remaining:
            # Once: a second cancel would cut short the run's own journaling of the stop.
            if task not in self._cancelled:
                task.cancel()
                self._cancelled.add(task)
        await asyncio.gather(*remaining, return_exceptions=True)
