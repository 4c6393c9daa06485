"""How much of what the outside world sends an action reads: a bounded amount, whatever it sends.

An http response body and a command's stdout become the step's result, which must end up under
64 KiB of JSON (after `keep:`) to be journaled. They are read up to `READ_LIMIT` bytes and no
further: a source that sends more (an endless chunked body, a command that never stops
printing) fails the attempt with RESULT_TOO_LARGE as soon as the limit is passed, so the
memory an attempt holds stays within a few MB of the limit. Nothing here ever buffers an
unbounded amount.
"""

from __future__ import annotations

from sagac.errors import StepError

__all__ = ["READ_LIMIT", "too_large"]

READ_LIMIT = 8 * 1024 * 1024  # bytes of an http body or a command's stdout


def too_large(what: str, hint: str, limit: int = READ_LIMIT) -> StepError:
    """RESULT_TOO_LARGE for `what` (e.g. "the response body") past `limit` bytes."""
    return StepError(
        "RESULT_TOO_LARGE",
        f"{what} is over the read limit of {limit // (1024 * 1024)} MiB (reading stopped "
        f"there); hint: {hint}",
        {"limit_bytes": limit},
    )
