"""Events reach `--events` and `on_event` in `seq` order with the SQLite store (issue 10, item
16): the branches of a parallel group commit concurrently, and the deferred events of one
commit used to be published after another branch's `step_started`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sagac.compiler.pipeline import compile_text
from sagac.runtime.api import arun
from sagac.runtime.store.sqlite import SqliteStore

from .durable_support import ROOT
from .durable_support import sagac as cli

# Wide and deep: many branches start (and commit their `step_started`) in the same turn, with
# deferred `group_started`/`step_completed` events between them.
PARALLEL = """
saga: fanout
actions:
  m: {mock: {result: {ok: true}}}
steps:
  - id: first
    action: m
  - parallel:
      id: fan
      mode: all
      branches:
BRANCHES
  - id: last
    action: m
"""


def parallel_saga() -> Any:
    branches = "\n".join(
        f"        - - {{id: b{i}a, action: m}}\n          - {{id: b{i}b, action: m}}"
        for i in range(8)
    )
    plan = compile_text(PARALLEL.replace("BRANCHES", branches), "fanout.yaml").plan
    assert plan is not None
    return plan


def assert_in_seq_order(seqs: list[int]) -> None:
    assert seqs == list(range(1, len(seqs) + 1)), seqs


def test_cli_events_file_is_in_seq_order_for_the_dashboard(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'j.db'}"
    for i in range(2):  # it was 4, 1, 2, 3, ... in every run
        events = tmp_path / f"events{i}.jsonl"
        r = cli(
            "run",
            "sagas/dashboard.yaml",
            "--input",
            "@sagas/inputs/dashboard.json",
            "--store",
            store,
            "--events",
            str(events),
            cwd=ROOT,
        )
        assert r.returncode == 0, r.stderr
        seqs = [json.loads(line)["seq"] for line in events.read_text().splitlines()]
        assert_in_seq_order(seqs)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_on_event_is_called_in_seq_order_with_sqlite(tmp_path: Path, kind: str) -> None:
    plan = parallel_saga()
    seen: dict[str, list[int]] = {}

    def record(event: dict[str, Any]) -> None:
        seen.setdefault(event["run_id"], []).append(event["seq"])

    async def record_async(event: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # let the other branches' commits land meanwhile
        record(event)

    async def main() -> dict[str, list[int]]:
        store = SqliteStore(tmp_path / "j.db")
        try:
            on_event = record if kind == "sync" else record_async
            # One at a time (a lone run commits inline), then three at once (group commit).
            reports = [await arun(plan, {}, store=store, on_event=on_event)]
            reports += await asyncio.gather(
                *(arun(plan, {}, store=store, on_event=on_event) for _ in range(3))
            )
            assert [r.status for r in reports] == ["succeeded"] * 4
            # What was published by the time each run returned, next to its journal.
            published = {r.run_id: list(seen[r.run_id]) for r in reports}
            for run_id in published:
                journal = [e["seq"] for e in await store.load_events(run_id)]
                assert len(journal) == 40 and published[run_id] == journal
            return published
        finally:
            await store.close()

    for seqs in asyncio.run(main()).values():
        assert_in_seq_order(seqs)


FAILING = """
saga: failing_fanout
actions:
  m: {mock: {result: {ok: true}}}
  bad: {mock: {fail: BOOM}}
steps:
  - parallel:
      id: fan
      mode: all
      branches:
BRANCHES
"""


def test_a_branch_cancelled_mid_commit_holds_back_no_later_event(tmp_path: Path) -> None:
    """A failing branch cancels its siblings while their appends are in flight: whatever they
    had not seen committed is never published, and every later event still is, in order, up
    to the run's last."""
    branches = "\n".join(
        f"        - - {{id: b{i}a, action: m}}\n          - {{id: b{i}b, action: m}}"
        for i in range(6)
    )
    text = FAILING.replace("BRANCHES", branches + "\n        - - {id: boom, action: bad}")
    plan = compile_text(text, "failing.yaml").plan
    assert plan is not None
    seen: list[dict[str, Any]] = []

    async def main() -> dict[str, int]:
        store = SqliteStore(tmp_path / "j.db")
        try:
            reports = await asyncio.gather(
                *(arun(plan, {}, store=store, on_event=seen.append) for _ in range(3))
            )
            assert {r.status for r in reports} == {"failed"}
            return {r.run_id: len(await store.load_events(r.run_id)) for r in reports}
        finally:
            await store.close()

    for run_id, length in asyncio.run(main()).items():
        published = [e["seq"] for e in seen if e["run_id"] == run_id]
        assert published == sorted(set(published))  # strictly increasing
        assert published[-1] == length  # the run's last event was published
