"""The live progress of a foreach: periodic plain lines with rate and ETA, or a rich bar."""

from __future__ import annotations

import io
from typing import Any

from sagac.runtime.progress import BatchProgress, eta_text


def progress(processed: int, batch: int, rate: float = 100.0) -> dict[str, Any]:
    return {
        "type": "batch_progress",
        "step": "each",
        "batch": batch,
        "total_batches": 10,
        "processed": processed,
        "total": 1000,
        "percent": processed / 10,
        "failed": 1,
        "rate": rate,
    }


STARTED = {"type": "step_started", "step": "each", "kind": "foreach", "total": 1000}


def test_eta_text():
    assert [eta_text(0, 5), eta_text(10, 0), eta_text(90, 2), eta_text(7500, 1)] == [
        "0s",
        "?",
        "45s",
        "2h05m",
    ]


def test_plain_lines_are_periodic_and_the_last_is_always_shown():
    now = [0.0]
    out = io.StringIO()
    view = BatchProgress(out, interval=2.0, clock=lambda: now[0])
    assert view.show(STARTED) is False  # the usual "started" line stays
    for b in range(1, 11):
        now[0] += 0.5
        assert view.show(progress(b * 100, b)) is True
    lines = out.getvalue().splitlines()
    assert lines == [
        "  ▸ each 100/1000 (10.0%), 100 items/s, ETA 9s, 1 failed (batch 1/10)",
        "  ▸ each 500/1000 (50.0%), 100 items/s, ETA 5s, 1 failed (batch 5/10)",
        "  ▸ each 900/1000 (90.0%), 100 items/s, ETA 1s, 1 failed (batch 9/10)",
        "  ▸ each 1000/1000 (100.0%), 100 items/s, ETA 0s, 1 failed (batch 10/10)",
    ]


def test_a_bar_in_a_terminal():
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    view = BatchProgress(out, console)
    assert view.show(STARTED) is True
    assert view.show(progress(400, 4, rate=50.0)) is True
    assert view.tasks  # a bar for the running foreach
    view.show({"type": "step_completed", "step": "each", "result": {}})
    assert view.bar is None  # stopped with its foreach
    text = out.getvalue()
    assert "each" in text and "400/1000" in text and "50 items/s" in text and "ETA 12s" in text
