"""Test actions of the checkout and the reserve sagas, writing a ledger.

Every call appends one JSON line `{"action", "key", "pid"}` to the file named by
SAGAC_TEST_LEDGER. SAGAC_TEST_KILL_IN=ACTION makes the process SIGKILL itself inside that
action, after its ledger line is written (the remote side acted, the caller never heard back).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

from sagac import StepError


def _call(action: str, context: Any, fail: Any = False, code: str = "") -> dict[str, Any]:
    if fail is True or fail == "True":
        raise StepError(code, f"{action} failed")
    line = {"action": action, "key": context.idempotency_key, "pid": os.getpid()}
    with open(os.environ["SAGAC_TEST_LEDGER"], "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("SAGAC_TEST_KILL_IN") == action:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"id": f"{action}-{context.idempotency_key}"}


def charge(order_id: str, context: Any = None) -> dict[str, Any]:
    return _call("charge", context)


def refund(order_id: str, context: Any = None) -> dict[str, Any]:
    return _call("refund", context)


def ship(order_id: str, fail: Any = False, context: Any = None) -> dict[str, Any]:
    return _call("ship", context, fail, "SHIP_FAILED")


def hold(order_id: str, context: Any = None) -> dict[str, Any]:
    return _call("hold", context)


def unhold(order_id: str, context: Any = None) -> dict[str, Any]:
    return _call("unhold", context)


async def pick(
    order_id: str, fail: Any = False, slow: float = 0, context: Any = None
) -> dict[str, Any]:
    """Takes `slow` seconds, then picks."""
    await asyncio.sleep(slow)
    return _call("pick", context, fail, "PICK_FAILED")


def unpick(order_id: str, fail: Any = False, context: Any = None) -> dict[str, Any]:
    return _call("unpick", context, fail, "UNPICK_FAILED")
