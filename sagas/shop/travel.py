"""Travel: book a flight, a hotel and a car, and cancel each.

Prices follow from the input (cabin, travellers, nights), so a business-class trip for a few
people goes over the card limit of `shop.payments` and the payment step fails after every booking
has completed.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from . import make_id, record

FARE_PER_TRAVELLER = {"economy": 350, "business": 2400}
HOTEL_PER_NIGHT_PER_ROOM = 120
CAR_PER_DAY = 60


def _nights(depart: str, return_: str) -> int:
    return max(1, (date.fromisoformat(return_) - date.fromisoformat(depart)).days)


def book_flight(
    trip_id: str,
    origin: str,
    destination: str,
    depart: str,
    return_date: str,
    travellers: int,
    cabin: str = "economy",
    context: Any = None,
) -> dict[str, Any]:
    """A return flight for every traveller."""
    record(
        "travel.book_flight",
        context,
        trip_id=trip_id,
        origin=origin,
        destination=destination,
        depart=depart,
        return_date=return_date,
        travellers=travellers,
        cabin=cabin,
    )
    return {
        "booking_id": make_id("flt", trip_id, origin, destination, depart),
        "price": FARE_PER_TRAVELLER[cabin] * travellers,
    }


def cancel_flight(booking_id: str, context: Any = None) -> dict[str, Any]:
    """Cancel a flight booking (free within 24 hours)."""
    record("travel.cancel_flight", context, booking_id=booking_id)
    return {"booking_id": booking_id, "status": "cancelled"}


def book_hotel(
    trip_id: str, city: str, depart: str, return_date: str, travellers: int, context: Any = None
) -> dict[str, Any]:
    """Rooms for two travellers each, from arrival to departure."""
    rooms = (travellers + 1) // 2
    record(
        "travel.book_hotel",
        context,
        trip_id=trip_id,
        city=city,
        depart=depart,
        return_date=return_date,
        rooms=rooms,
    )
    return {
        "booking_id": make_id("htl", trip_id, city, depart),
        "price": HOTEL_PER_NIGHT_PER_ROOM * rooms * _nights(depart, return_date),
    }


def cancel_hotel(booking_id: str, context: Any = None) -> dict[str, Any]:
    """Cancel a hotel booking."""
    record("travel.cancel_hotel", context, booking_id=booking_id)
    return {"booking_id": booking_id, "status": "cancelled"}


def rent_car(
    trip_id: str, city: str, depart: str, return_date: str, context: Any = None
) -> dict[str, Any]:
    """A rental car for the whole stay."""
    record(
        "travel.rent_car",
        context,
        trip_id=trip_id,
        city=city,
        depart=depart,
        return_date=return_date,
    )
    return {
        "booking_id": make_id("car", trip_id, city, depart),
        "price": CAR_PER_DAY * _nights(depart, return_date),
    }


def cancel_car(booking_id: str, context: Any = None) -> dict[str, Any]:
    """Cancel a car rental."""
    record("travel.cancel_car", context, booking_id=booking_id)
    return {"booking_id": booking_id, "status": "cancelled"}
