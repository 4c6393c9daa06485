"""The payment provider of the callback tests: actions that hand their callback token on.

Each call appends a line to `$CB_DIR/calls.jsonl` ({"action", "token", "amount"}), which is
how the tests learn the token (as a real provider would receive it) and count the calls.
`fast_payment` calls back at once, before its step has parked, as a fast provider does.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from sagac import StepError

FAST: Any = None  # a Store: `fast_payment` calls back through it


def _log(**fields: Any) -> None:
    with (Path(os.environ["CB_DIR"]) / "calls.jsonl").open("a") as f:
        f.write(json.dumps(fields) + "\n")


async def start_payment(amount: int, context: Any, delay: float = 0.0) -> dict[str, Any]:
    await asyncio.sleep(delay)
    _log(
        action="start_payment", token=context.callback_token, amount=amount, attempt=context.attempt
    )
    return {"accepted": True, "echo": context.callback_token}


async def fast_payment(amount: int, context: Any) -> dict[str, Any]:
    """Calls back before returning, as a fast provider does: through `FAST` (a store of this
    process) or the store at `$CB_FAST_STORE` (another handle, as another process has)."""
    _log(
        action="start_payment", token=context.callback_token, amount=amount, attempt=context.attempt
    )
    import sagac

    if FAST is not None:
        await sagac.acallback(
            FAST, context.callback_token, result={"payment_id": f"p-{amount}"}, by="fast-psp"
        )
    else:
        await asyncio.to_thread(
            sagac.callback,
            context.callback_token,
            store=os.environ["CB_FAST_STORE"],
            result={"payment_id": f"p-{amount}"},
            by="fast-psp",
        )
    return {"accepted": True}


def flaky_start(amount: int, context: Any) -> dict[str, Any]:
    _log(action="flaky_start", token=context.callback_token, attempt=context.attempt)
    raise StepError("UNAVAILABLE", f"the provider is down; token {context.callback_token}")


def reserve(order: str) -> dict[str, Any]:
    _log(action="reserve", order=order)
    return {"reservation": f"r-{order}"}


def release(reservation: str) -> None:
    _log(action="release", reservation=reservation)


def refund(payment: Any, error: Any) -> None:
    _log(action="refund", payment=payment, error=error)


def hold(seconds: float = 60.0) -> dict[str, Any]:
    """Wait until `$CB_DIR/release` exists (at most `seconds`): keeps a run busy."""
    gate = Path(os.environ["CB_DIR"]) / "release"
    end = time.monotonic() + seconds
    while not gate.exists() and time.monotonic() < end:
        time.sleep(0.05)
    return {"held": True}


def fail_after(seconds: float) -> None:
    """Fail with UNAVAILABLE after `seconds`: a sibling that fails while a callback waits."""
    time.sleep(seconds)
    raise StepError("UNAVAILABLE", "gave up")


def start_and_hang(amount: int, context: Any) -> dict[str, Any]:
    """Hands its token on, then hangs until `$CB_DIR/release` exists: a crash hits it
    before it returned."""
    _log(
        action="start_payment", token=context.callback_token, amount=amount, attempt=context.attempt
    )
    hold(60.0)
    return {"accepted": True}
