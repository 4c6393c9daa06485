"""Helpers for runtime tests: sagas and python action modules written to a temporary folder.

`SagaFactory(tmp_path).plan(yaml_text, actions=code)` writes `code` as a python module with a
unique name (so tests never share a cached import), replaces `MOD` in the YAML with that name,
compiles the saga and returns `(plan, module)`. The module starts with a `LOG` list and
`record(name, **fields)`: actions append what happened there, in order.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

from sagac.compiler.plan import Plan
from sagac.runtime.store.memory import MemoryStore

import sagac

PRELUDE = """\
import asyncio, time
from sagac import StepError
LOG = []
def record(name, **fields):
    LOG.append((name, fields) if fields else name)
"""


class SagaFactory:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def plan(self, saga_yaml: str, actions: str = "") -> tuple[Plan, Any]:
        name = f"acts_{uuid.uuid4().hex[:10]}"
        (self.dir / f"{name}.py").write_text(PRELUDE + textwrap.dedent(actions))
        path = self.dir / f"saga_{name}.yaml"
        path.write_text(textwrap.dedent(saga_yaml).replace("MOD", name))
        plan = sagac.load(path)
        if str(self.dir) not in sys.path:
            sys.path.insert(0, str(self.dir))
        importlib.invalidate_caches()
        module = importlib.import_module(name)
        return plan, module


class Recorder:
    """An `on_event` callback that keeps every event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    def steps(self, type_: str) -> list[Any]:
        return [
            e["step"] if e.get("item_index") is None else (e["step"], e["item_index"])
            for e in self.of(type_)
        ]


def run(plan: Plan, input: Any = None, **kwargs: Any) -> tuple[sagac.RunReport, Recorder]:
    rec = Recorder()
    report = sagac.run(plan, {} if input is None else input, on_event=rec, **kwargs)
    return report, rec


async def run_until(
    plan: Plan, input: Any, store: MemoryStore, stop_at: Any, **kwargs: Any
) -> tuple[str, Recorder]:
    """Start a run and cancel its task (as if the process died) at the first event for which
    `stop_at(event)` is true; returns the run id and the events seen."""
    rec = Recorder()
    run_id = uuid.uuid4().hex
    task: asyncio.Task[Any] | None = None

    def on_event(event: dict[str, Any]) -> None:
        rec(event)
        if task is not None and stop_at(event):
            task.cancel()

    task = asyncio.ensure_future(
        sagac.arun(plan, input, store=store, on_event=on_event, run_id=run_id, **kwargs)
    )
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the run finished before the chosen event")
    return run_id, rec
