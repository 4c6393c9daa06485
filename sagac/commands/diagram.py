"""`sagac diagram`: draw a saga as Mermaid, DOT, SVG or an HTML page, optionally with a run.

A run overlay comes from an events file (`--events FILE`, the JSON lines `sagac run --events`
writes). Drawing a run from the durable journal (`--run RUN_ID`) needs the journal's reader:
it is one call, `render(plan, fmt, overlay_from_events(journal.events(run_id)))`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sagac.compiler.errors import UsageError
from sagac.compiler.formatting import format_text
from sagac.compiler.pipeline import compile_file
from sagac.compiler.render import FORMATS, overlay_from_events, render

EXIT_OK, EXIT_INVALID = 0, 65


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diagram",
        help="draw a saga (Mermaid, DOT, SVG, HTML)",
        description="Draw a saga: forward edges solid, compensations dashed, parallel groups "
        "as clusters. svg and html need Graphviz `dot` (exit 69 without it).",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", "-f", choices=FORMATS, default="mermaid")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    p.add_argument(
        "--events",
        metavar="EVENTS",
        help="colour the diagram by a run: a JSON-lines events file (`sagac run --events`)",
    )
    p.set_defaults(func=diagram)


def read_events(path: str) -> list[dict[str, Any]]:
    """Events from a JSON-lines file (or a JSON array); blank lines are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read events file {path}: {e.strerror}") from e
    try:
        if text.lstrip().startswith("["):
            data = json.loads(text)
            return [e for e in data if isinstance(e, dict)]
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}:{e.lineno}: not JSON lines: {e.msg}") from e


def diagram(args: argparse.Namespace) -> int:
    c = compile_file(args.file)
    if c.diagnostics and (c.plan is None or not c.ok()):
        lines = {c.file: c.document.line_text} if c.document else {}
        print(
            format_text(c.diagnostics, lambda f, n: lines[f](n) if f in lines else ""),
            file=sys.stderr,
        )
    if c.plan is None or not c.ok():
        return EXIT_INVALID
    overlay = overlay_from_events(read_events(args.events)) if args.events else None
    text = render(c.plan, args.format, overlay)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK
