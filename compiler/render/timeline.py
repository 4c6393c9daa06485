"""A run's timeline: every attempt, retry wait, approval wait, sleep or wait for a signal, and
compensation on a time axis.

`build_timeline` folds spec events (section 7) into rows and bars in milliseconds since the
first event; `layout` turns them into pixel boxes for the `timeline.svg.j2` template (a Gantt
chart drawn as inline SVG, so the report needs no script and no network). Events it does not
know, or without a readable `at`, are skipped: a timeline is a view, never a validator.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .model import short
from .overlay import error_code, parse_time

BarKind = Literal["attempt", "wait", "approval", "group", "compensation"]


@dataclass(frozen=True, slots=True)
class Bar:
    row: str  # row key
    start: float  # ms since the timeline's origin
    end: float
    kind: BarKind
    status: str  # a key of styles.STATUS_STYLES
    label: str
    open: bool = False  # still running when the events end


@dataclass(frozen=True, slots=True)
class Mark:
    row: str
    at: float
    status: str
    label: str


@dataclass(slots=True)
class Timeline:
    origin: datetime | None
    span_ms: float
    rows: list[tuple[str, str]] = field(default_factory=list)  # (key, label), top to bottom
    bars: list[Bar] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)


def _ms(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def format_ms(ms: float) -> str:
    if ms < 1:
        return f"{ms:.2f} ms" if ms else "0 ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.3g} s"
    minutes, seconds = divmod(ms / 1000, 60)
    if minutes < 60:
        return f"{minutes:.0f} m {seconds:.0f} s"
    return f"{minutes / 60:.0f} h {minutes % 60:.0f} m"


class _Fold:
    def __init__(self) -> None:
        self.bars: list[Bar] = []
        self.marks: list[Mark] = []
        self.rows: dict[str, str] = {}
        self.open: dict[tuple[str, str], tuple[float, str]] = {}  # (row, kind) -> (start, label)

    def row(self, key: str, label: str) -> str:
        self.rows.setdefault(key, label)
        return key

    def start(self, row: str, kind: str, at: float, label: str) -> None:
        self.open[(row, kind)] = (at, label)

    def close(
        self, row: str, kind: BarKind, at: float, status: str, label: str | None = None
    ) -> bool:
        opened = self.open.pop((row, kind), None)
        if opened is None:
            return False
        start, text = opened
        self.bars.append(Bar(row, start, max(at, start), kind, status, label or text))
        return True

    def close_or_guess(
        self, row: str, at: float, status: str, label: str, duration: float | None
    ) -> None:
        """Close the open attempt; without one, draw it from `duration_ms`, else mark it."""
        if self.close(row, "attempt", at, status, label):
            return
        if duration is not None and duration > 0:
            self.bars.append(Bar(row, at - duration, at, "attempt", status, label))
        else:
            self.marks.append(Mark(row, at, status, label))


def _approved(event: Mapping[str, Any]) -> bool:
    for key in ("approved", "decision", "outcome"):
        value = event.get(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return value.lower() in ("approve", "approved", "yes", "accept", "accepted")
    return True


def build_timeline(events: Iterable[Mapping[str, Any]]) -> Timeline:
    """Rows (steps first, then compensations, in order of first appearance) and their bars."""
    timed = []
    for i, e in enumerate(events):
        if not isinstance(e, Mapping):
            continue
        when = parse_time(e.get("at"))
        if when is not None:
            seq = _ms(e.get("seq"))
            timed.append((when, seq if seq is not None else math.inf, i, e))
    if not timed:
        return Timeline(None, 0.0)
    timed.sort(key=lambda t: (t[1], t[0], t[2]))  # by seq; events without one by time, last
    origin = min(t[0] for t in timed)
    fold = _Fold()
    last = 0.0
    for at_dt, _, _, e in timed:
        at = (at_dt - origin).total_seconds() * 1000
        last = max(last, at)
        kind, step = e.get("type"), e.get("step")
        if not isinstance(step, str):
            continue
        attempt = _ms(e.get("attempt"))
        n = f"#{attempt:.0f}" if attempt is not None else ""
        code = error_code(e.get("error"))
        duration = _ms(e.get("duration_ms"))
        row = fold.row(f"s:{step}", step)
        if kind == "step_started":
            fold.close(row, "wait", at, "pending")
            fold.start(row, "attempt", at, n)
        elif kind == "step_retrying":
            fold.close_or_guess(row, at, "failed", f"{n} {code or 'failed'}".strip(), duration)
            delay = _ms(e.get("delay_ms"))
            fold.start(row, "wait", at, f"retry in {format_ms(delay)}" if delay else "retry")
        elif kind == "step_completed":
            fold.close_or_guess(row, at, "completed", f"{n} ok".strip(), duration)
        elif kind == "step_failed":
            status = "cancelled" if code == "CANCELLED" else "failed"
            fold.close_or_guess(row, at, status, f"{n} {code or 'failed'}".strip(), duration)
        elif kind == "step_skipped":
            fold.marks.append(Mark(row, at, "skipped", "skipped"))
        elif kind == "group_started":
            fold.start(row, "group", at, "parallel")
        elif kind == "group_completed":
            winner = e.get("winner")
            label = f"won by {winner}" if isinstance(winner, str) else "parallel"
            fold.close(row, "group", at, "completed", label)
        elif kind == "approval_requested":
            fold.start(row, "approval", at, "waiting for approval")
        elif kind == "approval_decided":
            ok = _approved(e)
            by = e.get("by") or e.get("approver")
            label = ("approved" if ok else "rejected") + (f" by {by}" if by else "")
            if not fold.close(row, "approval", at, "completed" if ok else "failed", label):
                fold.marks.append(Mark(row, at, "completed" if ok else "failed", label))
        elif kind in ("sleep_started", "wait_started"):  # parked: drawn as a gate's wait
            signal = e.get("signal")
            text = f"waiting for {signal}" if isinstance(signal, str) else "sleeping"
            fold.start(row, "approval", at, text)
        elif kind == "wait_ended":
            reason = e.get("reason")
            late = reason == "timeout"
            label = reason if isinstance(reason, str) else "ended"
            fold.close(row, "approval", at, "failed" if late else "completed", label)
        elif kind == "compensation_started":
            undo = fold.row(f"c:{step}", f"undo {step}")
            fold.start(undo, "compensation", at, n)
        elif kind in ("compensation_completed", "compensation_failed"):
            undo = fold.row(f"c:{step}", f"undo {step}")
            ok = kind == "compensation_completed"
            status = "compensated" if ok else "compensation_failed"
            label = f"{n} {'ok' if ok else code or 'failed'}".strip()
            if not fold.close(undo, "compensation", at, status, label):
                fold.marks.append(Mark(undo, at, status, label))
    for (row, kind), (start, text) in fold.open.items():
        status = "waiting" if kind in ("approval", "wait") else "running"
        fold.bars.append(Bar(row, start, max(last, start), kind, status, text, open=True))  # type: ignore[arg-type]
    keys = sorted(fold.rows, key=lambda k: k.startswith("c:"))  # stable: steps, then undos
    return Timeline(origin, last, [(k, fold.rows[k]) for k in keys], fold.bars, fold.marks)


# Layout ---------------------------------------------------------------------------------------

WIDTH, LABEL_W, RIGHT_PAD, AXIS_H, ROW_H, BAR_H = 1080, 190, 24, 30, 26, 14
CHAR_W = 6.4  # average width of an 11px sans-serif character


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Box:
    x: float
    y: float
    w: float
    h: float
    kind: BarKind | Literal["mark"]
    status: str
    tooltip: str
    text: str  # shown inside (or just after) the box; "" when it does not fit
    text_x: float
    text_inside: bool


def _nice_step(span: float, target: int = 8) -> float:
    raw = span / target
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0):
        if raw <= factor * power:
            return factor * power
    return 10.0 * power


def layout(timeline: Timeline) -> dict[str, Any]:
    """Pixel geometry of the chart: size, ticks, row bands and labels, boxes."""
    span = max(timeline.span_ms, 1.0)
    step = _nice_step(span)
    span = math.ceil(span / step) * step
    plot_w = WIDTH - LABEL_W - RIGHT_PAD
    index = {key: i for i, (key, _) in enumerate(timeline.rows)}

    def x(ms: float) -> float:
        return round(LABEL_W + ms / span * plot_w, 1)

    def y(row: str) -> float:
        return AXIS_H + index[row] * ROW_H

    ticks = [Tick(x(i * step), format_ms(i * step)) for i in range(int(span / step) + 1)]
    boxes: list[Box] = []
    starts: dict[str, list[float]] = {}
    for bar in timeline.bars:
        starts.setdefault(bar.row, []).append(x(bar.start))
    for bar in timeline.bars:
        x0, x1 = x(bar.start), x(bar.end)
        w = max(x1 - x0, 2.0)
        height = BAR_H if bar.kind not in ("wait", "group") else 6
        top = y(bar.row) + (ROW_H - height) / 2
        text = short(bar.label, 40)
        need = len(text) * CHAR_W + 8
        inside = bar.kind not in ("wait", "group") and w >= need
        # Text after the bar must end before the next bar of its row starts.
        limit = min([s for s in starts[bar.row] if s > x0 + 0.5] + [float(WIDTH)])
        fits_after = bar.kind != "wait" and x0 + w + 4 + need <= limit
        shown = text if (inside or fits_after) else ""
        name = timeline.rows[index[bar.row]][1]
        tooltip = f"{name}: {bar.label} · {format_ms(bar.end - bar.start)}"
        tooltip += " (still running)" if bar.open else ""
        boxes.append(
            Box(x0, top, w, height, bar.kind, bar.status, tooltip, shown,
                x0 + 4 if inside else x0 + w + 4, inside)
        )  # fmt: skip
    for mark in timeline.marks:
        cx = x(mark.at)
        tooltip = f"{timeline.rows[index[mark.row]][1]}: {mark.label} at {format_ms(mark.at)}"
        boxes.append(
            Box(
                cx,
                y(mark.row) + ROW_H / 2,
                0,
                0,
                "mark",
                mark.status,
                tooltip,
                short(mark.label, 30),
                cx + 8,
                False,
            )
        )
    rows = [
        {"y": AXIS_H + i * ROW_H, "label": short(label, 28), "full": label, "undo": key[:2] == "c:"}
        for i, (key, label) in enumerate(timeline.rows)
    ]
    return {
        "width": WIDTH,
        "height": AXIS_H + len(rows) * ROW_H + 8,
        "label_w": LABEL_W,
        "plot_right": WIDTH - RIGHT_PAD,
        "axis_h": AXIS_H,
        "row_h": ROW_H,
        "ticks": ticks,
        "rows": rows,
        "boxes": boxes,
        "span": format_ms(timeline.span_ms),
    }
