"""Example actions for the sagas in this folder: a small, deterministic demo shop.

Every function here is a `python` action (`shop.payments:charge` and so on). The runtime puts the
saga file's folder on the import path, so `shop` is importable while those sagas run.

The actions stand in for real services: the same arguments give the same ids, and domain failures
come from the input (an amount over the card limit, the SKU "out-of-stock", ...) so a demo can show
a compensated run. They must never touch the network or any state outside this process, except
the optional ledger below.

If the environment variable SAGAC_DEMO_LEDGER names a file, every call appends one JSON line
`{"action": ..., "key": ..., "args": ...}` to it: a record of what the saga asked the outside world
to do, with the idempotency key it used, for checking retries, resumes and compensations.
If SAGAC_DEMO_DELAY is set (seconds), every call first sleeps that long: time enough to watch a
run, or to kill it and resume it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

__all__ = ["LEDGER_ENV", "idempotency_key", "make_id", "record"]

LEDGER_ENV = "SAGAC_DEMO_LEDGER"
DELAY_ENV = "SAGAC_DEMO_DELAY"


def idempotency_key(context: Any) -> str | None:
    """The step's idempotency key, or None when the runtime passed no context."""
    return getattr(context, "idempotency_key", None) if context is not None else None


def make_id(prefix: str, *parts: Any) -> str:
    """A stable id such as `pay_3f2a9c01de`: the same parts always give the same id."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return f"{prefix}_{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def record(action: str, context: Any, **args: Any) -> None:
    """Append one line to the demo ledger, if SAGAC_DEMO_LEDGER is set (after the demo delay)."""
    delay = float(os.environ.get(DELAY_ENV) or 0)
    if delay > 0:
        time.sleep(delay)
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    line = json.dumps(
        {"action": action, "key": idempotency_key(context), "args": args},
        sort_keys=True,
        default=str,
    )
    # One write of one line in append mode: lines from concurrent steps do not interleave.
    with open(path, "a", encoding="utf-8") as ledger:
        ledger.write(line + "\n")
