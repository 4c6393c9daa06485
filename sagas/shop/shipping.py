"""Shipping: create a shipment and cancel it before pickup.

Only SHIPS_TO countries are served: any other `address.country` fails with
ADDRESS_UNDELIVERABLE, after payment and reservation have completed.
"""

from __future__ import annotations

from typing import Any

from sagac import StepError

from . import make_id, record

SHIPS_TO = frozenset({"AT", "BE", "DE", "DK", "ES", "FR", "IT", "NL", "PL", "SE"})


def create_shipment(
    order_id: str, address: dict[str, Any], items: list[Any], context: Any = None
) -> dict[str, Any]:
    """Book a parcel for the order; returns the shipment id and tracking number."""
    country = str(address.get("country", "")).upper()
    if country not in SHIPS_TO:
        raise StepError(
            "ADDRESS_UNDELIVERABLE", f"we do not ship to {country or 'an empty country'}"
        )
    record("shipping.create_shipment", context, order_id=order_id, address=address, items=items)
    shipment_id = make_id("shp", order_id, address)
    return {
        "id": shipment_id,
        "tracking_number": "TRK" + shipment_id[-8:].upper(),
        "country": country,
    }


def cancel_shipment(shipment_id: str, context: Any = None) -> dict[str, Any]:
    """Cancel a shipment that has not been picked up."""
    record("shipping.cancel_shipment", context, shipment_id=shipment_id)
    return {"id": shipment_id, "status": "cancelled"}
