"""Driving runs from a command: a SIGINT or SIGTERM stops them cleanly, what they used is
closed, and the runs a signal stopped are named with how to continue them.

Shared by `sagac run` and the durable commands. It never decides a run's outcome: it only
awaits it and reports an interruption.
"""

from __future__ import annotations

import sys
from typing import Any

from sagac.errors import ExitCode


async def closing(store: Any, coro: Any) -> Any:
    """Await `coro` (which drives runs) and close what it used. A SIGINT or SIGTERM stops it
    cleanly (see `sagac.runtime.interrupts`); then the `Interrupt` is returned instead."""
    import asyncio

    from sagac import aclose_clients, stop_on_signals

    try:
        with stop_on_signals() as interrupt:
            try:
                return await coro
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if interrupt.signal is None or task is None:
                    raise
                task.uncancel()
                return interrupt
    finally:
        await aclose_clients()
        await store.close()


def interrupted(outcome: Any) -> int | None:
    """When a signal stopped the command: say which runs it left resumable and how to go
    on; the exit code (128 + the signal's number). None for any other outcome."""
    from sagac import Interrupt

    if not isinstance(outcome, Interrupt):
        return None
    for run_id in outcome.runs:
        print(
            f"sagac: run {run_id} stopped by {outcome.name}: its work in flight was stopped, "
            f"nothing was undone, and it is resumable (status interrupted). Continue it with:\n"
            f"  sagac resume {run_id}",
            file=sys.stderr,
        )
    if not outcome.runs:
        print(
            f"sagac: stopped by {outcome.name} (no run in a durable journal to resume)",
            file=sys.stderr,
        )
    return ExitCode(outcome.exit_code)  # 128 + the signal: SIGINT or SIGTERM
