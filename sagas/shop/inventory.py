"""Inventory: reserve stock for an order and release it again.

The SKU "out-of-stock" is never available (OUT_OF_STOCK), so an input that orders it makes the
reservation fail after the payment went through.
"""

from __future__ import annotations

from typing import Any

from sagac import StepError

from . import make_id, record

UNAVAILABLE_SKU = "out-of-stock"


def _sku(item: Any) -> str:
    # Items are {"sku": ..., "qty": ...} mappings, or bare SKU strings.
    return str(item.get("sku")) if isinstance(item, dict) else str(item)


def reserve(order_id: str, items: list[Any], context: Any = None) -> dict[str, Any]:
    """Hold the items of an order; returns the reservation id."""
    missing = [_sku(item) for item in items if _sku(item) == UNAVAILABLE_SKU]
    if missing:
        raise StepError("OUT_OF_STOCK", f"not in stock: {', '.join(missing)}")
    record("inventory.reserve", context, order_id=order_id, items=items)
    return {"reservation_id": make_id("res", order_id, items), "lines": len(items)}


def release(
    order_id: str, reservation_id: str | None = None, context: Any = None
) -> dict[str, Any]:
    """Release an order's reservation. Keyed by order, so it also works when the reserve call
    timed out and left no result: releasing nothing is a success."""
    record("inventory.release", context, order_id=order_id, reservation_id=reservation_id)
    return {"order_id": order_id, "released": True}


def allocate(order_id: str, reservation_id: str, context: Any = None) -> dict[str, Any]:
    """Pick the warehouse that ships a reservation; returns the allocation."""
    record("inventory.allocate", context, order_id=order_id, reservation_id=reservation_id)
    return {"allocation_id": make_id("alloc", reservation_id), "warehouse": "ams-1"}


def deallocate(allocation_id: str, context: Any = None) -> dict[str, Any]:
    """Give an allocation's warehouse slot back."""
    record("inventory.deallocate", context, allocation_id=allocation_id)
    return {"allocation_id": allocation_id, "released": True}
