"""Time for the runtime: a monotonic clock for timing, a wall clock for events, and sleeps.

Everything in the executor that waits on purpose (retry backoff, the delay between foreach
batches) sleeps through a `Clock`, so tests inject a `FakeClock` that records each delay and
advances its own time instead of waiting. Per-attempt timeouts are real `asyncio.timeout`s,
computed from the clock's monotonic time, so a fake clock also moves step and saga deadlines.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any


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


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def rfc3339(epoch: float) -> str:
    """`2024-05-01T12:00:00.123Z` (every event carries one: the whole second is cached)."""
    sec = int(epoch)
    if sec != _second[0]:
        _second[0] = sec
        _second[1] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    ms = int((epoch - sec) * 1000)
    return f"{_second[1]}.{ms:03d}Z"


DEFAULT_CLOCK = Clock()
