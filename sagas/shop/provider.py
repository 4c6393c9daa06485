"""A payment provider with a hosted checkout page and a webhook (the callback pattern).

`start_checkout` opens a checkout and returns at once; the provider calls back later, when the
customer has paid. In this demo the "provider" writes what it would keep to an outbox folder
($SAGAC_DEMO_OUTBOX, default `.sagac/outbox`): `<order_id>.json` with the amount and
`<order_id>.token` with the callback token alone, so that a person can play the provider:

    sagac callback "$(cat .sagac/outbox/ord-2001.token)" --result '{"payment_id": "pay_2001"}'
    sagac callback "$(cat .sagac/outbox/ord-2001.token)" --error PAYMENT_DECLINED
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import make_id, record

OUTBOX_ENV = "SAGAC_DEMO_OUTBOX"


def start_checkout(
    order_id: str, amount: float, callback_token: str, context: Any = None
) -> dict[str, Any]:
    """Open a hosted checkout for `amount`; the provider will call back with its outcome."""
    record("provider.start_checkout", context, order_id=order_id, amount=amount)
    outbox = Path(os.environ.get(OUTBOX_ENV) or ".sagac/outbox")
    outbox.mkdir(parents=True, exist_ok=True)
    checkout_id = make_id("chk", order_id, amount)
    pending = {"checkout_id": checkout_id, "order_id": order_id, "amount": amount}
    (outbox / f"{order_id}.json").write_text(json.dumps(pending) + "\n", encoding="utf-8")
    token_file = outbox / f"{order_id}.token"
    token_file.write_text(callback_token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    return {"checkout_id": checkout_id}
