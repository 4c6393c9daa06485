"""Payments: charge a card, refund a charge, work out a refund.

A charge over CARD_LIMIT is declined (PAYMENT_DECLINED), so a large `amount` in the input makes a
run fail at the payment step and compensate what came before.
"""

from __future__ import annotations

from typing import Any

from sagac import StepError

from . import idempotency_key, make_id, record

CARD_LIMIT = 10_000
RESTOCKING_FEE = 0.10


def charge(
    amount: float, user_id: str, currency: str = "EUR", context: Any = None
) -> dict[str, Any]:
    """Capture `amount` from the user's card; returns the payment id."""
    if amount <= 0:
        raise StepError("PAYMENT_DECLINED", f"cannot charge a non-positive amount ({amount})")
    if amount > CARD_LIMIT:
        raise StepError(
            "PAYMENT_DECLINED",
            f"card declined: {amount} {currency} is over the demo limit of {CARD_LIMIT}",
        )
    record("payments.charge", context, amount=amount, user_id=user_id, currency=currency)
    payment_id = make_id("pay", user_id, amount, currency, idempotency_key(context))
    return {"id": payment_id, "amount": amount, "currency": currency, "status": "captured"}


def refund(payment_id: str, amount: float | None = None, context: Any = None) -> dict[str, Any]:
    """Give back `amount` (all of it when None) of a payment; returns the refund id."""
    record("payments.refund", context, payment_id=payment_id, amount=amount)
    refund_id = make_id("re", payment_id, amount, idempotency_key(context))
    return {"id": refund_id, "payment_id": payment_id, "amount": amount, "status": "refunded"}


def calculate_refund(payment_id: str, requested: float, reason: str) -> dict[str, Any]:
    """How much to refund: all of it, less a restocking fee when the buyer changed their mind."""
    fee = round(requested * RESTOCKING_FEE, 2) if reason == "changed_mind" else 0.0
    return {
        "payment_id": payment_id,
        "amount": round(requested - fee, 2),
        "fee": fee,
        "currency": "EUR",
    }
