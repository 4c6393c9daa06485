"""The payment provider of the server tests: it hands its callback token to the test by
writing it to `$SERVER_TEST_TOKENS` (as a real provider would receive it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def start_payment(context: Any) -> dict[str, Any]:
    with Path(os.environ["SERVER_TEST_TOKENS"]).open("a") as f:
        f.write(context.callback_token + "\n")
    return {"accepted": True}
