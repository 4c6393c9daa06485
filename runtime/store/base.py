"""The store interface: where runs and their journals live.

A run is a row (`RunRecord`: status, input, definition hash, final report) plus its journal,
an append-only list of events (the run's state is whatever `journal.replay` makes of them).
The executor writes every state change through `append` and never starts an action before the
append that precedes it has returned: `append` is durable when it returns, and it must keep the
order of calls (one writer per run; a store with real I/O serialises its writes per run).
Implementations: `memory.py` and `sqlite.py` (with its `sqlite_*` parts) in this package.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]

# Every status a run can have (`RunRecord.status`; the report's `RunStatus`, plus `interrupted`:
# a run a signal stopped, which no report is written for).
RUN_STATUSES = (
    "running",
    "interrupted",
    "waiting_approval",
    "succeeded",
    "compensated",
    "compensation_failed",
    "failed",
)


@dataclass(slots=True)
class RunRecord:
    run_id: str
    saga: str
    version: int
    definition_hash: str
    input: Any
    status: str = "running"
    file: str | None = None
    created_at: str = ""
    updated_at: str = ""
    report: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Store(ABC):
    """An async journal store. Every method may raise `StoreError`."""

    @abstractmethod
    async def create_run(self, record: RunRecord) -> None:
        """Record a new run; raises StoreError when `record.run_id` already exists."""

    @abstractmethod
    async def get_run(self, run_id: str) -> RunRecord:
        """The run's record; raises RunNotFound."""

    @abstractmethod
    async def update_run(
        self, run_id: str, status: str, report: dict[str, Any] | None = None
    ) -> None:
        """Set the run's status (and its report when it has one)."""

    @abstractmethod
    async def append(
        self, run_id: str, events: Sequence[Event], report: dict[str, Any] | None = None
    ) -> None:
        """Append events to the run's journal, in order; durable when it returns. The run's
        final append carries its `report`: the run's status becomes `report["status"]` and the
        report is stored in the same write, so no reader sees the last event without it."""

    @abstractmethod
    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """The run's events with `seq` greater than `after_seq`, in order."""

    @abstractmethod
    async def list_runs(
        self, *, saga: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered by saga and status."""

    @abstractmethod
    async def add_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        """Make `users` members of the approver group `group` (`group:NAME` in a gate's
        approvers); returns those who were not members yet. Audited where the store keeps an
        audit log, with the operating-system user of this process."""

    @abstractmethod
    async def remove_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        """Take `users` out of `group`; returns those who were members. Audited like `add`."""

    @abstractmethod
    async def group_members(self, group: str | None = None) -> dict[str, list[str]]:
        """Approver groups (or the one named) and their members, sorted by name."""

    # A store that commits many appends at once (SQLite's writer queue) sets this: the
    # journal then lets events that no action waits for share the next commit.
    group_commit = False

    def submit_append(
        self, run_id: str, events: Sequence[Event], report: dict[str, Any] | None = None
    ) -> asyncio.Future[None]:
        """Start an append now, in call order; awaiting the result waits for durability."""
        return asyncio.ensure_future(self.append(run_id, events, report))

    async def cancel_request(self, run_id: str) -> dict[str, Any] | None:
        """{at, by, reason} when a cancel of the run was requested (durable stores only)."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (nothing to do for in-process stores)."""
