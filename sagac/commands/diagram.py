"""`sagac diagram` and `sagac report`: draw a saga, or a run of it, and report a run as HTML.

A run overlay comes from the durable journal (`--run RUN_ID`) or from an events file
(`--events FILE`, the JSON lines `sagac run --events` writes). The saga of a journaled run is
compiled again from the file the run recorded; a changed definition is drawn with a warning.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sagac import FORMATS
from sagac.commands._console import print_diagnostics
from sagac.commands._files import write_output
from sagac.commands._store import add_store_option, open_existing
from sagac.errors import ExitCode, UsageError

if TYPE_CHECKING:  # the compiler and renderers load when a command runs, not for `--help`
    from sagac import Compilation

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
    p.add_argument(
        "-o", "--output", metavar="OUT", help="write here instead of stdout (exit 73: cannot)"
    )
    p.add_argument(
        "--events",
        metavar="EVENTS",
        help="colour the diagram by a run: a JSON-lines events file (`sagac run --events`)",
    )
    p.add_argument("--run", metavar="RUN_ID", help="colour the diagram by a journaled run")
    p.add_argument(
        "--expand", action="store_true", help="draw each called saga (`call`) inline, as a cluster"
    )
    add_store_option(p)
    p.set_defaults(func=diagram)

    p = sub.add_parser(
        "report",
        help="write a run's self-contained HTML report",
        description="One HTML file with no network fetches: the run's diagram, a timeline of "
        "every attempt, retry and compensation, the errors, approvals and audit entries.",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="the file, or a folder for sagac-report-<RUN_ID>.html (the default, here);"
        " exit 73: cannot write it",
    )
    add_store_option(p)
    p.set_defaults(func=report)


def read_events(path: str) -> list[dict[str, Any]]:
    """Events from a JSON-lines file (or a JSON array); blank lines are skipped."""
    from sagac import TooLarge, read_limited

    try:
        text = read_limited(path, MAX_EVENTS_BYTES).decode("utf-8-sig")
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
    import asyncio

    store = open_existing(url, readonly=True)

    async def go() -> _Run:
        try:
            record = await store.get_run(run_id)
            events = await store.load_events(run_id)
            return _Run(
                record.file,
                record.definition_hash,
                record.report or {"run_id": run_id, "status": record.status},
                events,
                [_public(a) for a in await store.approvals(run_id)],
                await store.audit_log(run_id),
            )
        finally:
            await store.close()

    return asyncio.run(go())


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "token_sha256"}


def _compile(file: str) -> Compilation | None:
    """The compilation of `file`, printing its diagnostics; None when it has errors."""
    from sagac import compile_file

    c = compile_file(file)
    if c.plan is None or not c.ok():
        print_diagnostics([c], "text")
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
        write_output(output, text, "the diagram")  # whole or not at all; exit 73 if it cannot
    else:
        sys.stdout.write(text)


def _check_events(plan: Any, events: list[dict[str, Any]], path: str) -> None:
    """Refuse events of another saga (they would colour nothing, or the wrong steps); warn
    when they come from another definition of this one."""
    started = next((e for e in events if e.get("type") == "saga_started"), {})
    if started.get("saga") not in (None, plan.saga):
        raise UsageError(
            f"--events {path} holds a run of saga {started['saga']!r}, not {plan.saga!r}",
            hint="pass the saga that run belongs to, or that saga's events",
        )
    ids = {n.id for n in plan.definition.walk()}
    named = {e["step"] for e in events if isinstance(e.get("step"), str)}
    unknown = sorted(named - ids)
    if unknown:
        raise UsageError(
            f"--events {path} names steps {plan.saga!r} does not have: {', '.join(unknown)}",
            hint="pass the saga that run belongs to, or that saga's events",
        )
    if started.get("definition_hash") not in (None, plan.hash):
        print(
            f"sagac: warning: the events in {path} come from another definition of"
            f" {plan.saga!r}; drawing them on the definition as it is now",
            file=sys.stderr,
        )


def diagram(args: argparse.Namespace) -> int:
    from sagac import overlay_from_events, overlay_with_report, render

    if args.run and args.events:
        raise UsageError("--run and --events both name a run; give one")
    if args.run:
        run = _read_run(args.store, args.run)
        c = _run_plan(run, args.file)
        if c is None or c.plan is None:
            return ExitCode.INVALID_DEFINITION
        run_overlay = overlay_with_report(overlay_from_events(run.events), run.report)
        _write(render(c.plan, args.format, run_overlay, args.expand), args.output)
        return ExitCode.OK
    if not args.file:
        raise UsageError("name a saga FILE (or a run: --run RUN_ID)")
    c = _compile(args.file)
    if c is None or c.plan is None:
        return ExitCode.INVALID_DEFINITION
    overlay = None
    if args.events:
        events = read_events(args.events)
        _check_events(c.plan, events, args.events)
        overlay = overlay_from_events(events)
    _write(render(c.plan, args.format, overlay, args.expand), args.output)
    return ExitCode.OK


def report(args: argparse.Namespace) -> int:
    from sagac import render_report_html

    run = _read_run(args.store, args.run_id)
    c = _run_plan(run, None)
    if c is None or c.plan is None:
        return ExitCode.INVALID_DEFINITION
    html = render_report_html(c.plan, run.report, run.events, run.approvals, run.audit)
    name = f"sagac-report-{args.run_id}.html"
    out = Path(args.output or name)
    if out.is_dir():  # -o FOLDER: the report under its default name in that folder
        out = out / name
    write_output(out, html, "the report")  # whole or not at all; exit 73 if it cannot
    print(f"wrote {out}")
    return ExitCode.OK
