"""Python-action helpers for tests/runtime/test_actions.py (imported from this folder)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

from sagac.errors import StepError

calls: list[dict[str, Any]] = []


def add(a: int, b: int = 0) -> dict[str, Any]:
    return {"sum": a + b}


def sleepy(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"thread": threading.get_ident()}


async def async_add(a: int, b: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"sum": a + b, "thread": threading.get_ident()}


async def forever() -> None:
    try:
        await asyncio.sleep(60)
    finally:
        calls.append({"forever": "cleaned up"})


def with_context(order_id: str, context: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "run_id": context.run_id,
        "step_id": context.step_id,
        "attempt": context.attempt,
        "key": context.idempotency_key,
    }


def declined(amount: float) -> None:
    raise StepError("PAYMENT_DECLINED", f"card declined for {amount}", {"amount": amount})


def declined_result(amount: float) -> StepError:
    return StepError("PAYMENT_DECLINED", "declined as a result")


def odd_detail() -> None:
    raise StepError("ODD", "detail is an object", {"when": object()})


def broken() -> None:
    return 1 / 0  # type: ignore[return-value]


def exits() -> None:
    sys.exit(3)


def stops() -> None:
    raise StopIteration("out of items")


def not_json() -> Any:
    return {"ids": {1, 2}}


def nan() -> float:
    return float("nan")


def tuples() -> Any:
    return {"pair": (1, 2), 3: "int key"}


class Greeter:
    async def __call__(self, name: str) -> str:
        return f"hello {name}"


greet = Greeter()
not_callable = 42
