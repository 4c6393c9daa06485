"""The step context: what an action may know about the call it is serving."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StepContext:
    """What an action may know about the call (python actions receive it as `context`)."""

    run_id: str
    saga: str
    step_id: str
    attempt: int  # 1-based
    idempotency_key: str | None
    deadline: float | None  # wall-clock epoch seconds by which this attempt must end
    item_index: int | None = None  # inside a foreach
    compensation: bool = False  # True when this call undoes the step
    base_dir: Path | None = None  # the saga file's folder: python actions import from here
    # Called by a command action with its process group's id once it started, before its
    # output is read: the executor journals the group, so a resume after a crash can end it.
    on_process: Callable[[int], Awaitable[None]] | None = None
    # A step with `callback:`: this attempt's single-use token, to hand to whoever will call
    # `sagac callback TOKEN` (never journaled: only its sha256 is).
    callback_token: str | None = None
