"""An in-process store: runs and journals in dicts, gone when the process ends.

Used by `sagac run --store memory` (the default store is a SQLite journal) and by tests,
including resume tests: two executions that share one `MemoryStore` see the same journal, as
two processes would share a database file.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

from sagac.runtime.clock import rfc3339

from sagac.errors import RunNotFound, StoreError

from .base import Event, RunRecord, Store


class MemoryStore(Store):
    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._events: dict[str, list[Event]] = {}
        self._groups: dict[str, set[str]] = {}

    async def create_run(self, record: RunRecord) -> None:
        if record.run_id in self._runs:
            raise StoreError(f"run {record.run_id!r} already exists")
        now = rfc3339(time.time())
        record.created_at = record.created_at or now
        record.updated_at = now
        self._runs[record.run_id] = record
        self._events[record.run_id] = []

    async def get_run(self, run_id: str) -> RunRecord:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFound(f"no run {run_id!r} in this store") from None

    async def update_run(
        self, run_id: str, status: str, report: dict[str, Any] | None = None
    ) -> None:
        record = await self.get_run(run_id)
        record.status = status
        record.updated_at = rfc3339(time.time())
        if report is not None:
            record.report = report

    async def append(
        self, run_id: str, events: Sequence[Event], report: dict[str, Any] | None = None
    ) -> None:
        try:
            journal = self._events[run_id]
        except KeyError:
            raise RunNotFound(f"no run {run_id!r} in this store") from None
        journal.extend(events)
        if report is not None:
            await self.update_run(run_id, report["status"], report)

    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        try:
            journal = self._events[run_id]
        except KeyError:
            raise RunNotFound(f"no run {run_id!r} in this store") from None
        return [copy.deepcopy(e) for e in journal if e["seq"] > after_seq]

    async def list_runs(
        self, *, saga: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        runs = [
            r
            for r in reversed(self._runs.values())
            if (saga is None or r.saga == saga) and (status is None or r.status == status)
        ]
        return runs[:limit]

    async def add_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        members = self._groups.setdefault(group, set())
        added = [u for u in dict.fromkeys(users) if u not in members]
        members.update(added)
        return added

    async def remove_group_members(self, group: str, users: Sequence[str]) -> list[str]:
        members = self._groups.get(group, set())
        removed = [u for u in dict.fromkeys(users) if u in members]
        members.difference_update(removed)
        if not members:
            self._groups.pop(group, None)
        return removed

    async def group_members(self, group: str | None = None) -> dict[str, list[str]]:
        return {
            name: sorted(members)
            for name, members in sorted(self._groups.items())
            if group is None or name == group
        }
