"""`sagac diagram` and `sagac report`: draw a saga, or a run of it, and report a run as HTML.

A run overlay comes from the durable journal (`--run RUN_ID`) or from an events file
(`--events FILE`, the JSON lines `sagac run --events` writes). The saga of a journaled run is
compiled again from the file the run recorded; a changed definition is drawn with a warning.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagac.commands._store import add_store_option, open_existing
from sagac.compiler.errors import UsageError
from sagac.compiler.formatting import format_text
from sagac.compiler.pipeline import Compilation, compile_file
from sagac.compiler.render import (
    FORMATS,
    overlay_from_events,
    overlay_with_report,
    render,
    render_report_html,
)

EXIT_OK, EXIT_INVALID = 0, 65
MAX_EVENTS_BYTES = 256 * 1024 * 1024  # an events file is read whole: refuse a larger one


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diagram",
        help="draw a saga (Mermaid, DOT, SVG, HTML)",
        description="Draw a saga: forward edges solid, compensations dashed, parallel groups "
        "as clusters. svg and html need Graphviz `dot` (exit 69 without it).",
    )
    p.add_argument("file", metavar="FILE", nargs="?", help="the saga (default: the run's own)")
    p.add_argument("--format", "-f", choices=FORMATS, default="mermaid")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    p.add_argument(
        "--events",
        metavar="EVENTS",
        help="colour the diagram by a run: a JSON-lines events file (`sagac run --events`)",
    )
    p.add_argument("--run", metavar="RUN_ID", help="colour the diagram by a journaled run")
    add_store_option(p)
    p.set_defaults(func=diagram)

    p = sub.add_parser(
        "report",
        help="write a run's self-contained HTML report",
        description="One HTML file with no network fetches: the run's diagram, a timeline of "
        "every attempt, retry and compensation, the errors, approvals and audit entries.",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("-o", "--output", metavar="OUT", help="default: sagac-report-<RUN_ID>.html")
    add_store_option(p)
    p.set_defaults(func=report)


def read_events(path: str) -> list[dict[str, Any]]:
    """Events from a JSON-lines file (or a JSON array); blank lines are skipped."""
    from sagac.compiler.loader import TooLarge, read_limited

    try:
        text = read_limited(path, MAX_EVENTS_BYTES).decode("utf-8")
    except TooLarge:
        limit = MAX_EVENTS_BYTES // (1024 * 1024)
        raise UsageError(f"events file {path} is larger than {limit} MiB") from None
    except OSError as e:
        raise UsageError(f"cannot read events file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise UsageError(f"events file {path} is not UTF-8 ({e.reason} at byte {e.start})") from e
    try:
        if text.lstrip().startswith("["):
            data = json.loads(text)
            return [e for e in data if isinstance(e, dict)]
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}:{e.lineno}: not JSON lines: {e.msg}") from e


@dataclass(slots=True)
class _Run:
    file: str | None
    definition_hash: str
    report: dict[str, Any]
    events: list[dict[str, Any]]
    approvals: list[dict[str, Any]]
    audit: list[dict[str, Any]]


def _read_run(url: str, run_id: str) -> _Run:
    store = open_existing(url)

    async def go() -> _Run:
        try:
            record = await store.get_run(run_id)
            events = await store.load_events(run_id)
            approvals = getattr(store, "approvals", None)
            audit = getattr(store, "audit_log", None)
            return _Run(
                record.file,
                record.definition_hash,
                record.report or {"run_id": run_id, "status": record.status},
                events,
                [_public(a) for a in await approvals(run_id)] if approvals else [],
                await audit(run_id) if audit else [],
            )
        finally:
            await store.close()

    return asyncio.run(go())


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "token_sha256"}


def _compile(file: str) -> Compilation | None:
    """The compilation of `file`, printing its diagnostics; None when it has errors."""
    c = compile_file(file)
    if c.diagnostics and (c.plan is None or not c.ok()):
        lines = {c.file: c.document.line_text} if c.document else {}
        print(
            format_text(c.diagnostics, lambda f, n: lines[f](n) if f in lines else ""),
            file=sys.stderr,
        )
    return c if c.plan is not None and c.ok() else None


def _run_plan(run: _Run, file: str | None) -> Compilation | None:
    path = file or run.file
    if not path:
        raise UsageError("the run recorded no saga file", hint="name the saga: FILE")
    c = _compile(path)
    if c is not None and c.plan is not None and c.plan.hash != run.definition_hash:
        print(
            f"sagac: warning: {path} changed since the run; drawing it as it is now",
            file=sys.stderr,
        )
    return c


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def diagram(args: argparse.Namespace) -> int:
    if args.run and args.events:
        raise UsageError("--run and --events both name a run; give one")
    if args.run:
        run = _read_run(args.store, args.run)
        c = _run_plan(run, args.file)
        if c is None or c.plan is None:
            return EXIT_INVALID
        run_overlay = overlay_with_report(overlay_from_events(run.events), run.report)
        _write(render(c.plan, args.format, run_overlay), args.output)
        return EXIT_OK
    if not args.file:
        raise UsageError("name a saga FILE (or a run: --run RUN_ID)")
    c = _compile(args.file)
    if c is None or c.plan is None:
        return EXIT_INVALID
    overlay = overlay_from_events(read_events(args.events)) if args.events else None
    _write(render(c.plan, args.format, overlay), args.output)
    return EXIT_OK


def report(args: argparse.Namespace) -> int:
    run = _read_run(args.store, args.run_id)
    c = _run_plan(run, None)
    if c is None or c.plan is None:
        return EXIT_INVALID
    html = render_report_html(c.plan, run.report, run.events, run.approvals, run.audit)
    out = args.output or f"sagac-report-{args.run_id}.html"
    Path(out).write_text(html, encoding="utf-8")
    print(f"wrote {out}")
    return EXIT_OK
