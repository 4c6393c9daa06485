"""Renderers: a compiled saga (`Plan`) as Mermaid, DOT, SVG, an HTML page, or a run's report.

Every renderer takes an optional run overlay (node id -> `NodeRun`), built from the spec's
events by `overlay_from_events` or by hand; run data is plain dicts, never runtime objects.
SVG and HTML need Graphviz `dot` and raise `GraphvizMissing` (exit 69) without it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagac.errors import GraphvizFailed, GraphvizMissing

    from ..plan import Plan
    from .diagrams import (
        dot_binary,
        render_dot,
        render_mermaid,
        render_svg,
    )
    from .overlay import NodeRun, overlay_from_events
    from .pages import overlay_with_report, render_html, render_report_html

# Loaded on first use (jinja2 and the templates cost more than most commands take in all):
# `sagac diagram --help` and everything that only needs FORMATS import none of them.
_EXPORTS = {
    "GraphvizFailed": "diagrams",
    "GraphvizMissing": "diagrams",
    "dot_binary": "diagrams",
    "render_dot": "diagrams",
    "render_mermaid": "diagrams",
    "render_svg": "diagrams",
    "NodeRun": "overlay",
    "overlay_from_events": "overlay",
    "overlay_with_report": "pages",
    "render_html": "pages",
    "render_report_html": "pages",
}

FORMATS = ("mermaid", "dot", "svg", "html")

__all__ = [
    "FORMATS",
    "GraphvizFailed",
    "GraphvizMissing",
    "NodeRun",
    "dot_binary",
    "overlay_from_events",
    "overlay_with_report",
    "render",
    "render_dot",
    "render_html",
    "render_mermaid",
    "render_report_html",
    "render_svg",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def render(
    plan: Plan, fmt: str, overlay: Mapping[str, NodeRun] | None = None, expand: bool = False
) -> str:
    """The diagram of `plan` in `fmt` (one of `FORMATS`); `expand` draws each called saga
    inline."""
    from .diagrams import render_dot, render_mermaid, render_svg
    from .pages import render_html

    renderers = {
        "mermaid": render_mermaid,
        "dot": render_dot,
        "svg": render_svg,
        "html": render_html,
    }
    if fmt not in renderers:
        raise ValueError(f"unknown diagram format {fmt!r}: use one of {', '.join(FORMATS)}")
    return renderers[fmt](plan, overlay, expand)
