"""Couriers: book a pickup with one of several providers, and cancel it.

Each provider answers after a fixed latency, so the fastest available one wins an `any` race.
A provider named in `outage` answers UNAVAILABLE, which lets a demo show failover.
"""

from __future__ import annotations

import time
from typing import Any

from sagac import StepError

from . import make_id, record

LATENCY_S = {"swiftpost": 0.05, "parcelnet": 0.12, "cargoline": 0.2}


def book(
    provider: str,
    order_id: str,
    weight_kg: float,
    outage: list[str] | None = None,
    context: Any = None,
) -> dict[str, Any]:
    """Book a pickup; returns the provider and its booking id."""
    # A short, fixed wait: the runtime runs sync actions off the event loop.
    time.sleep(LATENCY_S[provider])
    if provider in (outage or []):
        raise StepError("UNAVAILABLE", f"{provider} is not answering")
    record("providers.book", context, provider=provider, order_id=order_id, weight_kg=weight_kg)
    return {"provider": provider, "booking_id": make_id(provider[:3], order_id, weight_kg)}


def cancel(provider: str, booking_id: str, context: Any = None) -> dict[str, Any]:
    """Cancel a pickup booked with `book`."""
    record("providers.cancel", context, provider=provider, booking_id=booking_id)
    return {"provider": provider, "booking_id": booking_id, "status": "cancelled"}
