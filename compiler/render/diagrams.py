"""A plan as Mermaid, DOT, SVG (Graphviz `dot`) or a self-contained HTML page.

Each renderer builds the renderer-neutral model (`model.build_diagram`) and hands it to its
template; this module only adds what is specific to a language (shapes, colours as attributes).
SVG comes from running Graphviz `dot` as a subprocess, never through a shell; without `dot` the
renderers raise `GraphvizMissing` (exit 69). Nothing here fetches anything from a network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping

from markupsafe import Markup

from sagac.errors import GraphvizFailed, GraphvizMissing

from ..ir import require_kinds
from ..plan import Plan
from . import styles
from .model import SHAPES, DCluster, Diagram, DNode, build_diagram
from .overlay import NodeRun
from .templating import Verbatim, dot_string, render

Overlay = Mapping[str, NodeRun]
DOT_TIMEOUT = 60.0

# Each shape of `model.SHAPES` (checked below, at import).
_MERMAID_SHAPES: dict[str, tuple[str, str]] = {
    "task": ("(", ")"),
    "irreversible": ("[[", "]]"),
    "approval": ("{{", "}}"),
    "foreach": ("[/", "/]"),
    "fail": (">", "]"),
    "compensation": ("[", "]"),
    "fork": ("([", "])"),
    "sleep": ("[\\", "/]"),
    "wait": ("[/", "\\]"),
    "call": ("[[", "]]"),
    "switch": ("{", "}"),
    "join": ("((", "))"),
    "start": ("((", "))"),
    "end": ("(((", ")))"),
    "failed": ("([", "])"),
}

_DOT_SHAPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "task": ("shape=box", ("rounded", "filled")),
    "irreversible": ("shape=box, peripheries=2", ("filled",)),
    "approval": ("shape=hexagon", ("filled",)),
    "foreach": ("shape=box3d", ("filled",)),
    "fail": ("shape=box", ("filled", "diagonals")),
    "compensation": ("shape=box", ("rounded", "filled", "dashed")),
    "fork": ("shape=box", ("rounded", "filled", "bold")),
    "sleep": ("shape=invtrapezium", ("filled",)),
    "wait": ('shape=cds, margin="0.25,0.16"', ("filled",)),
    "call": ("shape=component", ("filled",)),
    "switch": ('shape=diamond, margin="0.04,0.02"', ("filled",)),
    "join": ("shape=circle, fixedsize=true, width=0.42, fontsize=8", ("filled",)),
    "start": ("shape=circle, fixedsize=true, width=0.55, fontsize=9", ("filled",)),
    "end": ("shape=doublecircle, fixedsize=true, width=0.5, fontsize=9", ("filled",)),
    "failed": ("shape=box", ("rounded", "filled")),
}

require_kinds(_MERMAID_SHAPES, "diagrams._MERMAID_SHAPES", SHAPES)
require_kinds(_DOT_SHAPES, "diagrams._DOT_SHAPES", SHAPES)


def _style(node: DNode) -> styles.Style:
    if node.status is not None:
        return styles.STATUS_STYLES[node.status]
    return styles.KIND_STYLES[node.kind]


# Mermaid -------------------------------------------------------------------------------------


def _mermaid_classes(diagram: Diagram) -> list[tuple[str, str, list[str]]]:
    """(class name, classDef body, node keys) for every kind and status used."""
    by_class: dict[str, list[str]] = {}
    for node in [*diagram.root.walk(), *diagram.legend.walk()]:
        by_class.setdefault(f"k_{node.kind}", []).append(node.key)
        if node.status is not None:
            by_class.setdefault(f"st_{node.status}", []).append(node.key)
    out = []
    for table, prefix in ((styles.KIND_STYLES, "k_"), (styles.STATUS_STYLES, "st_")):
        for name, style in table.items():
            keys = by_class.get(prefix + name)
            if keys:
                body = [f"fill:{style.fill}", f"stroke:{style.stroke}", f"color:{style.text}"]
                body.append(f"stroke-width:{style.width:g}px")
                if style.dashed:
                    body.append("stroke-dasharray:5 3")
                out.append((prefix + name, ",".join(body), keys))
    return out


_MERMAID_CLUSTERS = {
    "group": "fill:#f8fafc,stroke:#94a3b8,stroke-width:1.2px",
    "branch": "fill:#ffffff,stroke:#cbd5e1,stroke-width:1px,stroke-dasharray:4 3",
    "call": "fill:#f5f7ff,stroke:#818cf8,stroke-width:1.2px",
    "on_failure": "fill:#fff1f2,stroke:#fda4af,stroke-width:1.2px",
    "legend": "fill:#ffffff,stroke:#cbd5e1,stroke-width:1px",
}


def _clusters(cluster: DCluster) -> list[DCluster]:
    return [c for m in cluster.clusters for c in (m, *_clusters(m))]


def render_mermaid(plan: Plan, overlay: Overlay | None = None, expand: bool = False) -> str:
    """A Mermaid `flowchart TD` that GitHub renders in Markdown (```mermaid fences)."""
    diagram = build_diagram(plan, overlay, expand)
    arrows = {"flow": "-->", "undo": "-.-", "rollback": "-.->"}
    edges = [(e.src, arrows[e.role], e.label, e.dst) for e in diagram.edges if e.role in arrows]
    undo_links = [i for i, e in enumerate(diagram.edges) if e.role in ("undo", "rollback")]
    return render(
        "mermaid",
        "diagram.mmd.j2",
        diagram=diagram,
        shapes=_MERMAID_SHAPES,
        edges=edges,
        undo_links=",".join(map(str, undo_links)),
        classes=_mermaid_classes(diagram),
        cluster_styles=[
            (c.key, _MERMAID_CLUSTERS[c.role]) for c in [*_clusters(diagram.root), diagram.legend]
        ],
        undo_color=styles.UNDO_EDGE,
    )


# DOT -----------------------------------------------------------------------------------------


def _dot_attrs(node: DNode) -> Verbatim:
    shape, base = _DOT_SHAPES[node.shape]
    style = _style(node)
    flags = list(base)
    if style.dashed and "dashed" not in flags:
        flags.append("dashed")
    link = f", href={dot_string(node.link)}" if node.link else ""
    return Verbatim(
        f'{shape}, style="{",".join(flags)}", fillcolor="{style.fill}", '
        f'color="{style.stroke}", fontcolor="{style.text}", penwidth={style.width:g}{link}'
    )


def render_dot(plan: Plan, overlay: Overlay | None = None, expand: bool = False) -> str:
    """Graphviz DOT text; `dot -Tsvg` (or any other Graphviz layout) accepts it."""
    diagram = build_diagram(plan, overlay, expand)
    return render(
        "dot",
        "diagram.dot.j2",
        diagram=diagram,
        attrs=_dot_attrs,
        style_of=_style,
        font=styles.FONT,
        flow_color=styles.FLOW_EDGE,
        undo_color=styles.UNDO_EDGE,
    )


# SVG (Graphviz) ------------------------------------------------------------------------------


def dot_binary() -> str | None:
    """The `dot` executable on PATH, or None."""
    return shutil.which("dot")


def dot_to_svg(dot: str) -> str:
    """Run `dot -Tsvg` on DOT text (a subprocess, no shell); raises `GraphvizMissing`."""
    binary = dot_binary()
    if binary is None:
        raise GraphvizMissing()
    try:
        done = subprocess.run(
            [binary, "-Tsvg"],
            input=dot.encode(),
            capture_output=True,
            timeout=DOT_TIMEOUT,
            check=False,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
    except subprocess.TimeoutExpired as e:
        raise GraphvizFailed(f"`dot` did not finish within {DOT_TIMEOUT:g}s") from e
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip()[-400:]
        raise GraphvizFailed(f"`dot` exited with {done.returncode}: {detail}")
    return done.stdout.decode()


def render_svg(plan: Plan, overlay: Overlay | None = None, expand: bool = False) -> str:
    """An SVG document of the diagram, laid out by Graphviz `dot`."""
    return dot_to_svg(render_dot(plan, overlay, expand))


_SVG_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.S)
_SVG_SIZE = re.compile(r'(<svg\b[^>]*?)\s(width|height)="[^"]*"', re.S)


def inline_svg(svg: str) -> Markup:
    """An SVG document as an element for an HTML page (no XML prologue, scales to fit)."""
    body = _SVG_PROLOGUE.sub("", svg, count=1)
    body = re.sub(r"<!--.*?-->\s*", "", body, flags=re.S)
    size = re.search(r'<svg\b[^>]*?\swidth="([\d.]+)pt"', body)
    width = f' style="max-width:{float(size.group(1)) * 4 / 3:.0f}px"' if size else ""
    while _SVG_SIZE.search(body):
        body = _SVG_SIZE.sub(r"\1", body, count=1)
    body = body.replace("<svg", f'<svg class="diagram" role="img"{width}', 1)
    return Markup(body.strip())  # Graphviz escaped every label's text
