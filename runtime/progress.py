"""Live progress of foreach nodes: a rich progress bar (rate, ETA) or periodic plain lines.

`BatchProgress.show(event)` takes the run's events (as `on_event` gives them) and returns True
for the ones it rendered: a foreach's `step_started`, its `batch_progress` events, and its end.
In a terminal (a rich `Console` given) each foreach gets a bar; otherwise one line at most every
`interval` seconds, and always the last. It only reads events: it never changes a run, and a
fast foreach (tens of thousands of items a second) costs it one update per journaled batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Any

__all__ = ["BatchProgress", "eta_text"]


def eta_text(remaining: int, rate: float) -> str:
    """`1h02m`, `4m05s`, `12s`; `?` while the rate is unknown."""
    if remaining <= 0:
        return "0s"
    if rate <= 0:
        return "?"
    s = int(remaining / rate + 0.5)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class BatchProgress:
    def __init__(
        self,
        stream: IO[str],
        console: Any = None,
        *,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.console = console
        self.interval = interval
        self.clock = clock
        self.bar: Any = None  # rich.progress.Progress while a foreach runs
        self.tasks: dict[str, Any] = {}  # foreach id -> rich task id
        self.totals: dict[str, int] = {}  # the foreach nodes seen, with their item counts
        self.last_line: dict[str, float] = {}

    def show(self, e: dict[str, Any]) -> bool:
        t = e["type"]
        step = str(e.get("step"))
        if t == "step_started" and e.get("kind") == "foreach":
            self.totals[step] = e.get("total", 0)
            self._start(step, e)
            return self.console is not None
        if t == "batch_progress" and step in self.totals:
            self._update(step, e)
            return True
        if t in ("step_completed", "step_failed") and step in self.totals:
            if e.get("item_index") is None:
                self._end(step)
            return False  # the usual line says how it ended
        if t in ("saga_completed", "saga_failed", "saga_waiting", "saga_interrupted"):
            self.close()
        return False

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
            self.tasks.clear()

    # -- a bar in a terminal ---------------------------------------------------------------

    def _start(self, step: str, e: dict[str, Any]) -> None:
        if self.console is None:
            return
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn("  [bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[rate]:>8.0f} items/s"),
                TextColumn("ETA {task.fields[eta]}"),
                TextColumn("[red]{task.fields[failed]}[/] failed"),
                console=self.console,
                refresh_per_second=8,
            )
            self.bar.start()
        self.tasks[step] = self.bar.add_task(
            step,
            total=e.get("total", 0),
            completed=e.get("processed", 0),
            rate=0.0,
            eta="?",
            failed=0,
        )

    def _update(self, step: str, e: dict[str, Any]) -> None:
        remaining = e["total"] - e["processed"]
        eta = eta_text(remaining, e.get("rate", 0.0))
        if self.bar is not None and step in self.tasks:
            self.bar.update(
                self.tasks[step],
                completed=e["processed"],
                rate=e.get("rate", 0.0),
                eta=eta,
                failed=e.get("failed", 0),
            )
            return
        now = self.clock()
        if remaining > 0 and now - self.last_line.get(step, -1e9) < self.interval:
            return
        self.last_line[step] = now
        print(
            f"  ▸ {step} {e['processed']}/{e['total']} ({e['percent']}%), "
            f"{e.get('rate', 0):.0f} items/s, ETA {eta}, {e.get('failed', 0)} failed "
            f"(batch {e['batch']}/{e['total_batches']})",
            file=self.stream,
            flush=True,
        )

    def _end(self, step: str) -> None:
        if self.bar is None or step not in self.tasks:
            return
        self.bar.refresh()
        self.tasks.pop(step)
        if not self.tasks:
            self.close()
