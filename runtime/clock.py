"""Time for the runtime: a monotonic clock for timing, a wall clock for events, and sleeps.

Everything in the executor that waits on purpose (retry backoff, the delay between foreach
batches) sleeps through a `Clock`, so tests inject a `FakeClock` that records each delay and
advances its own time instead of waiting. Per-attempt timeouts are real `asyncio.timeout`s,
computed from the clock's monotonic time, so a fake clock also moves step and saga deadlines.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from datetime import UTC, datetime


class Clock:
    """The real clock."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> float:
        """Wall-clock epoch seconds (for event timestamps only)."""
        return time.time()

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)

    def random(self) -> float:
        """Uniform in [0, 1): the source of full jitter."""
        return self._random.random()


class FakeClock(Clock):
    """A clock whose sleeps take no real time: each delay is recorded in `sleeps` and moves
    `monotonic()` and `now()` forward by that much."""

    def __init__(self, start: float = 1_700_000_000.0, seed: int | None = 0) -> None:
        super().__init__(seed)
        self.offset = 0.0
        self.start = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def now(self) -> float:
        return self.start + self.offset

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.offset += max(delay, 0.0)
        await asyncio.sleep(0)


# The last millisecond and the last second formatted, each with its text as one tuple: replaced
# in one store, so threads (the journal's writer stamps audit entries) never pair a time with
# another's text.
_last_ms: tuple[int, str] = (-1, "")
_last_second: tuple[int, str] = (-1, "")


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 time (an event's `at`): the inverse of `rfc3339`."""
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rfc3339(epoch: float) -> str:
    """`2024-05-01T12:00:00.123Z` (every event carries one: the last millisecond and the last
    second are cached)."""
    global _last_ms, _last_second
    ms = int(epoch * 1000)
    hit = _last_ms
    if hit[0] == ms:
        return hit[1]
    sec, frac = divmod(ms, 1000)
    prefix = _last_second
    if prefix[0] != sec:
        prefix = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _last_second = prefix
    text = f"{prefix[1]}.{frac:03d}Z"
    _last_ms = (ms, text)
    return text


DEFAULT_CLOCK = Clock()


def new_run_id() -> str:
    """A new run id: 32 hex digits, as uuid4().hex, but the first 12 are the creation time in
    milliseconds (then 80 random bits, from the OS). Ids made later sort later, so a run's rows
    land at the end of the journal's indexes by run instead of at a random place in them: a
    commit touches the same few last pages instead of splitting pages in the middle."""
    return f"{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{os.urandom(10).hex()}"
