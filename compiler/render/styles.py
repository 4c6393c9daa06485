"""One palette for every renderer: node kinds, run statuses, and their words in the legend.

Mermaid `classDef`s, DOT attributes, the HTML page's CSS and the timeline's bars all read these
tables, so a colour means the same thing in every format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ..ir import require_kinds

# What a drawn node is styled as: each node shape of `model.NodeShape` (mypy checks that every
# one is listed here), and the parts of a diagram that are not saga nodes.
StyleKind = Literal[
    "task",
    "irreversible",
    "approval",
    "foreach",
    "fail",
    "compensation",
    "fork",
    "sleep",
    "wait",
    "call",
    "switch",
    "join",
    "terminal",
]


@dataclass(frozen=True, slots=True)
class Style:
    fill: str
    stroke: str
    text: str = "#0f172a"
    width: float = 1.2
    dashed: bool = False


# Shapes of the diagram, by what a node is. `task` is the default; the others stand out.
KIND_STYLES: dict[StyleKind, Style] = {
    "task": Style("#ffffff", "#475569"),
    "irreversible": Style("#fff7ed", "#c2410c", width=2.0),
    "approval": Style("#fefce8", "#a16207", width=1.6),
    "foreach": Style("#ecfeff", "#0e7490", width=1.6),
    "fail": Style("#fef2f2", "#b91c1c", width=1.6),
    "compensation": Style("#f5f3ff", "#7c3aed", text="#4c1d95", dashed=True),
    "fork": Style("#f1f5f9", "#64748b"),
    "sleep": Style("#f0f9ff", "#0369a1", width=1.6),
    "wait": Style("#fdf4ff", "#a21caf", width=1.6),
    "call": Style("#eef2ff", "#4338ca", width=1.6),
    "switch": Style("#f8fafc", "#334155", width=1.6),
    "join": Style("#f1f5f9", "#64748b"),
    "terminal": Style("#334155", "#334155", text="#ffffff"),
}

# The legend's words, for every kind a legend shows (not joins and terminals: they explain
# themselves).
KIND_WORDS: dict[StyleKind, str] = {
    "task": "task",
    "irreversible": "irreversible (pivot)",
    "approval": "approval gate",
    "foreach": "batch (foreach)",
    "fail": "fail",
    "compensation": "compensation",
    "fork": "parallel group",
    "sleep": "sleep (timer)",
    "wait": "wait for a signal",
    "call": "call (sub-saga)",
    "switch": "switch (one case runs)",
}

require_kinds(KIND_STYLES, "styles.KIND_STYLES", get_args(StyleKind))
require_kinds(KIND_WORDS, "styles.KIND_WORDS", set(get_args(StyleKind)) - {"join", "terminal"})

# Colours of a run overlay, by what happened. They replace the kind's colours; shapes stay.
STATUS_STYLES: dict[str, Style] = {
    "completed": Style("#dcfce7", "#15803d", text="#14532d"),
    "failed": Style("#fee2e2", "#dc2626", text="#7f1d1d", width=2.2),
    "skipped": Style("#f8fafc", "#94a3b8", text="#64748b", dashed=True),
    "compensated": Style("#ede9fe", "#6d28d9", text="#3b0764"),
    "compensation_failed": Style("#fecaca", "#7f1d1d", text="#450a0a", width=2.6),
    "waiting": Style("#fef3c7", "#d97706", text="#78350f", width=2.0),
    "running": Style("#dbeafe", "#2563eb", text="#1e3a8a", width=2.0),
    "pending": Style("#ffffff", "#cbd5e1", text="#94a3b8"),
    "cancelled": Style("#e5e7eb", "#6b7280", text="#374151", dashed=True),
}

STATUS_WORDS: dict[str, str] = {
    "completed": "completed",
    "failed": "failed",
    "skipped": "skipped",
    "compensated": "compensated",
    "compensation_failed": "compensation failed",
    "waiting": "waiting",
    "running": "running",
    "pending": "not run",
    "cancelled": "cancelled",
}

# A compensation node's colour in an overlay, by the compensation's own status.
COMPENSATION_STATUS = {"ok": "compensated", "failed": "compensation_failed", "running": "running"}

FLOW_EDGE = "#475569"
UNDO_EDGE = "#7c3aed"
FONT = "Helvetica,Arial,sans-serif"
