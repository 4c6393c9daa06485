"""Helpers of the `call` tests: run the checkout in a store and read back both runs. (Not
`conftest`: `from conftest import` would find another folder's.)"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagac.runtime import resume as durable
from sagac.runtime.report import RunReport
from sagac.runtime.store import open_store
from sagac.runtime.store.base import RunRecord, Store

SAGAS = Path(__file__).resolve().parent / "sagas"
CHECKOUT = SAGAS / "checkout.yaml"


@dataclass
class Runs:
    """A parent run and its child as the store holds them once the test's step is over."""

    report: RunReport
    parent: RunRecord
    child: RunRecord | None
    children: list[RunRecord]
    parent_events: list[dict[str, Any]]
    child_events: list[dict[str, Any]]


async def read(store: Store, report: RunReport) -> Runs:
    parent = await store.get_run(report.run_id)
    children = await store.children(report.run_id)
    child = children[0] if children else None
    return Runs(
        report,
        parent,
        child,
        children,
        await store.load_events(report.run_id),
        await store.load_events(child.run_id) if child else [],
    )


def checkout(
    url: str, data: dict[str, Any], then: Any = None, saga: Path = CHECKOUT, **kwargs: Any
) -> Runs:
    """Run `saga` (the checkout) with `data` in the store at `url` (then `await then(store, runs)`,
    whose RunReport, if any, is read back instead); both runs as the store holds them."""

    async def go() -> Runs:
        store = open_store(url)
        try:
            report = await durable.start(saga, data, store=store, **kwargs)
            runs = await read(store, report)
            if then is not None:
                later = await then(store, runs)
                if later is not None:
                    runs = await read(store, later)
            return runs
        finally:
            await store.close()

    return asyncio.run(go())


def ledger_lines(path: Path) -> list[tuple[str, str]]:
    """(action, idempotency key), in the order the actions were called."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(line["action"], line["key"]) for line in lines]


def types(events: list[dict[str, Any]], *wanted: str) -> list[tuple[str, str | None]]:
    return [(e["type"], e.get("step")) for e in events if e["type"] in wanted]
