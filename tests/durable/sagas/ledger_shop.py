"""Test actions that behave like a payment API with idempotency keys, writing a ledger.

Every call appends one JSON line to the file named by SAGAC_TEST_LEDGER: `{"action", "key",
"effective", "pid"}`. A call whose (action, key) is already in the ledger is a replay: it is
recorded with `effective: false` and changes nothing, as a real API would answer a retried
request. SAGAC_TEST_KILL_IN=ACTION makes the process SIGKILL itself inside that action, after
the ledger line is written: the remote side acted, the caller never heard back.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from sagac import StepError


def _call(action: str, context: Any) -> dict[str, Any]:
    path = os.environ["SAGAC_TEST_LEDGER"]
    key = context.idempotency_key
    seen = False
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            seen = any(
                (e := json.loads(line))["action"] == action and e["key"] == key and e["effective"]
                for line in f
                if line.strip() and line.endswith("\n")  # not a line still being written
            )
    line = {"action": action, "key": key, "effective": not seen, "pid": os.getpid()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("SAGAC_TEST_KILL_IN") == action:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"id": f"{action}-{key}", "action": action}


def charge(order_id: str, context: Any = None) -> dict[str, Any]:
    return _call("charge", context)


def refund(payment_id: str, context: Any = None) -> dict[str, Any]:
    return _call("refund", context)


def reserve(order_id: str, context: Any = None) -> dict[str, Any]:
    return _call("reserve", context)


def release(order_id: str, context: Any = None) -> dict[str, Any]:
    return _call("release", context)


def ship(order_id: str, fail: bool = False, context: Any = None) -> dict[str, Any]:
    if fail:
        raise StepError("SHIP_FAILED", "the courier said no")
    return _call("ship", context)


async def slow(order_id: str, seconds: float = 1.0, context: Any = None) -> dict[str, Any]:
    import asyncio

    out = _call("slow", context)
    await asyncio.sleep(seconds)
    return out


def leaky(token: str, context: Any = None) -> dict[str, Any]:
    """Returns the secret it was given (as a careless API might): the runtime must redact it."""
    return {"echo": token, "header": f"Bearer {token}"}
