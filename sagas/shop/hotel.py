"""Hotel: hold a room, confirm the booking once the free-cancellation window is over, release.

Confirming charges the guest's card through `payments.charge`, so an amount over the demo card
limit is declined (PAYMENT_DECLINED) and the hold is released.
"""

from __future__ import annotations

from typing import Any

from . import idempotency_key, make_id, record
from .payments import charge


def hold_room(hotel: str, guest_id: str, nights: int, context: Any = None) -> dict[str, Any]:
    """Put a tentative hold on a room; returns the hold id."""
    record("hotel.hold", context, hotel=hotel, guest_id=guest_id, nights=nights)
    return {"hold_id": make_id("hold", hotel, guest_id, nights, idempotency_key(context))}


def release_hold(hold_id: str, context: Any = None) -> dict[str, Any]:
    """Release a hold: the room is for sale again."""
    record("hotel.release", context, hold_id=hold_id)
    return {"hold_id": hold_id, "released": True}


def confirm(hold_id: str, guest_id: str, amount: float, context: Any = None) -> dict[str, Any]:
    """Charge the guest and turn the hold into a booking; returns the booking and payment."""
    payment = charge(amount, guest_id, context=context)
    record("hotel.confirm", context, hold_id=hold_id, payment_id=payment["id"])
    return {"booking_id": make_id("bk", hold_id), "payment_id": payment["id"]}
