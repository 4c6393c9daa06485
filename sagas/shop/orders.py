"""Orders: check an order before anything is charged, and record what happened to it."""

from __future__ import annotations

from typing import Any

from . import record

MAX_QTY = 10


def validate(order_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Decide whether the shop takes the order. Never fails: the saga turns `ok: false` into a
    `fail` node, a data decision rather than an error."""
    bulk = [item["sku"] for item in items if item.get("qty", 1) > MAX_QTY]
    if bulk:
        return {"ok": False, "reason": f"bulk quantities go through sales: {', '.join(bulk)}"}
    return {"ok": True, "reason": ""}


def record_dispatch(
    order_id: str, courier: str, booking_id: str, context: Any = None
) -> dict[str, Any]:
    """Note which courier carries an order."""
    record(
        "orders.record_dispatch", context, order_id=order_id, courier=courier, booking_id=booking_id
    )
    return {"order_id": order_id, "courier": courier, "booking_id": booking_id}
