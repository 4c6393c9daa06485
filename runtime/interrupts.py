"""SIGINT and SIGTERM stop a run cleanly: in-flight work ended, the run left resumable.

`stop_on_signals()` is entered by the task that drives runs (the CLI's). The first SIGINT or
SIGTERM is recorded and cancels that task: the executor cancels its in-flight nodes (a command
action stops its process group: SIGTERM, then SIGKILL after its grace), journals nothing of
what the cancel cut short, then journals `saga_interrupted` with the signal and sets the run's
status to `interrupted` (see `Executor.run`): a resume continues it at once. A second signal
cancels again, so a command still in its grace period is killed at once. The exit code for a
run stopped this way is 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a shell
reports a process the signal killed.

This module only turns signals into a cancellation and says which signal it was
(`received()`): it never writes anything itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Interrupt", "received", "stop_on_signals"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Interrupt:
    """The signal that stopped the driving task (None until one came), and the runs it
    stopped (their ids, in order)."""

    signal: int | None = None
    runs: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal or 0)


_CURRENT: contextvars.ContextVar[Interrupt | None] = contextvars.ContextVar(
    "sagac_interrupt", default=None
)


def received() -> Interrupt | None:
    """The Interrupt of the current task's `stop_on_signals` once a signal came, else None."""
    current = _CURRENT.get()
    return current if current is not None and current.signal is not None else None


@contextlib.contextmanager
def stop_on_signals(task: asyncio.Task[Any] | None = None) -> Iterator[Interrupt]:
    """Within a running loop's task: SIGINT and SIGTERM cancel this task (or `task`: a worker
    cancels a watcher of its own and stops gracefully), each time one comes, and are recorded
    on the yielded Interrupt. Where the loop cannot take signals (not the main thread,
    Windows), nothing is installed."""
    loop = asyncio.get_running_loop()
    task = task or asyncio.current_task()
    interrupt = Interrupt()

    def on_signal(sig: int) -> None:
        if interrupt.signal is None:
            interrupt.signal = sig
        if task is not None and not task.done():
            task.cancel()

    installed = []
    for sig in SIGNALS:
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(sig)
    token = _CURRENT.set(interrupt)
    try:
        yield interrupt
    finally:
        _CURRENT.reset(token)
        for sig in installed:
            loop.remove_signal_handler(sig)
