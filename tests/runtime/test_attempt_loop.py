"""The one attempt loop: an action has ended before anything that depends on it starts.

Each test writes a python action module of a new name next to its saga, and never imports it
itself: the run imports it for the first time, inside the step (what used to make sagac guess
"sync" and leave the call running). The actions' side effects are lines appended to a file,
with `time.monotonic()` where the timing matters.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import sagac


def write_saga(tmp_path: Path, saga: str, actions: str) -> tuple[Path, Path]:
    """The saga (with MOD replaced by a fresh module name) and the file its actions append to."""
    name = f"loop_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(
        "import asyncio, time\nfrom sagac import StepError\n\n"
        "def note(path, *words):\n"
        "    with open(path, 'a') as f:\n"
        "        f.write(' '.join(str(w) for w in words) + '\\n')\n\n" + actions
    )
    out = tmp_path / f"{name}.log"
    path = tmp_path / f"{name}.yaml"
    path.write_text(saga.replace("MOD", name).replace("OUT", str(out)))
    return path, out


def lines(out: Path) -> list[list[str]]:
    return [line.split() for line in out.read_text().splitlines()] if out.exists() else []


def test_losing_any_branch_imported_first_there_is_cancelled_at_once(tmp_path):
    path, out = write_saga(
        tmp_path,
        """
saga: any_first_import
steps:
  - parallel:
      id: g
      mode: any
      branches:
        - [{id: fast, action: {mock: {result: {won: true}, delay: 300ms}}}]
        - [{id: slow, action: {python: "MOD:slow"}, with: {path: "OUT"}}]
""",
        """
async def slow(path):
    note(path, "started", time.monotonic())
    try:
        await asyncio.sleep(3)
    except asyncio.CancelledError:
        note(path, "cancelled", time.monotonic())
        raise
    note(path, "finished", time.monotonic())
    return {}
""",
    )
    won: list[float] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "step_completed" and event.get("step") == "fast":
            won.append(time.monotonic())

    report = sagac.run(sagac.load(path), {}, on_event=on_event)
    assert report.status == "succeeded"
    got = lines(out)
    assert [w[0] for w in got] == ["started", "cancelled"]
    assert float(got[1][1]) - won[0] < 0.1  # cancelled within 100 ms of the winner


def test_on_error_stop_cancels_in_flight_items_of_the_first_batch(tmp_path):
    path, out = write_saga(
        tmp_path,
        """
saga: stop_first_batch
steps:
  - foreach:
      id: each
      items: "{{ input.items }}"
      as: n
      action: {python: "MOD:item"}
      with: {n: "{{ n }}", path: "OUT"}
      batch: {size: 10, concurrency: 4}
      on_error: stop
""",
        """
async def item(n, path):
    if n == 0:
        await asyncio.sleep(0.1)
        raise StepError("BAD", "item 0 fails")
    try:
        await asyncio.sleep(2)
    except asyncio.CancelledError:
        note(path, "cancelled", n)
        raise
    note(path, "finished", n)
    return {}
""",
    )
    t0 = time.monotonic()
    report = sagac.run(sagac.load(path), {"items": [0, 1, 2, 3]})
    assert report.status == "failed" and report.failure.code == "BATCH_ITEM_FAILED"
    assert sorted(lines(out)) == [["cancelled", "1"], ["cancelled", "2"], ["cancelled", "3"]]
    assert time.monotonic() - t0 < 1.5  # nobody waited for the 2 s items


def test_an_async_action_past_its_timeout_is_cancelled(tmp_path):
    path, out = write_saga(
        tmp_path,
        """
saga: async_timeout
steps:
  - {id: a, action: {python: "MOD:slow"}, with: {path: "OUT"}, timeout: 100ms}
""",
        """
async def slow(path):
    try:
        await asyncio.sleep(0.4)
    except asyncio.CancelledError:
        note(path, "cancelled")
        raise
    note(path, "side effect")
    return {}
""",
    )

    async def main() -> sagac.RunReport:
        report = await sagac.arun(sagac.load(path), {})
        await asyncio.sleep(0.6)  # the loop lives on: a call left running would finish now
        return report

    report = asyncio.run(main())
    assert report.failure.code == "TIMEOUT"
    assert lines(out) == [["cancelled"]]


def test_attempted_undo_of_a_timed_out_sync_action_waits_for_its_thread(tmp_path):
    path, out = write_saga(
        tmp_path,
        """
saga: sync_timeout
actions:
  forward: {python: "MOD:forward"}
  undo: {python: "MOD:undo"}
steps:
  - id: a
    action: forward
    with: {path: "OUT"}
    timeout: 100ms
    compensate: {action: undo, with: {path: "OUT", code: "{{ error.code }}"}, on: attempted}
""",
        """
def forward(path):
    time.sleep(0.5)
    note(path, "forward")
    return {"done": True}

def undo(path, code):
    note(path, "undo", code)
    return {}
""",
    )
    report = sagac.run(sagac.load(path), {})
    time.sleep(0.6)  # a thread left running would append its line by now
    assert lines(out) == [["forward"], ["undo", "TIMEOUT"]]
    assert report.status == "compensated"
    assert report.failure.code == "TIMEOUT"
    detail = report.failure.detail
    assert 250 <= detail["overran_ms"] < 2000
    assert detail["late_result"] == {"done": True}
