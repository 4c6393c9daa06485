"""`sagac run`: run a saga once and print its report.

A thin driver over the public API: parse the input, call `sagac.astart` (`arun` with a lease
and an optional idempotency key), print live progress (rich in a terminal; plain lines when
stderr is not a TTY or NO_COLOR is set) on stderr and the report (a table, or JSON with
`--json`) on stdout, and map the run's status to the exit code.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from sagac.errors import ExitCode, InputError, UsageError

from ._args import add_sleep_limit_option
from ._console import Progress, event_sink, print_diagnostics, print_report
from ._driving import closing, interrupted
from ._files import EventsFile
from ._input import add_input_option, read_input
from ._store import store_help


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a saga and print its report")
    p.add_argument("file", metavar="FILE")
    add_input_option(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--events", metavar="FILE", help="write every event as JSON lines (exit 73: cannot)"
    )
    p.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help=store_help(
            "journal store: `memory`, `sqlite:///PATH` or `postgresql://USER@HOST:PORT/DB`;"
            " a durable one lets the run be resumed"
        ),
    )
    p.add_argument(
        "--idempotency-key",
        metavar="K",
        help="start at most one run of this saga for K: the same K and input again returns (or "
        "resumes) that run; the same K with another input is refused (exit 64). Needs a "
        "durable store: refused with --store memory (exit 64)",
    )
    p.add_argument(
        "--fail",
        metavar="STEP[=CODE]",
        action="append",
        default=[],
        help="make STEP fail with CODE (default UNEXPECTED) instead of calling its action",
    )
    p.add_argument(
        "--simulate",
        action="store_true",
        help="call no action: each step returns its `simulate:` result, or {}",
    )
    add_sleep_limit_option(p, 60.0, "(`waiting`, exit 3) for a worker or `sagac resume`")
    p.add_argument(
        "--no-import",
        action="store_true",
        help="do not check python action targets before the run (E026): they are then "
        "imported when their step first runs (with --simulate they never are)",
    )
    p.set_defaults(func=run)


def _input_hint(plan: Any) -> str:
    """How to pass the input a saga needs, naming its required keys."""
    schema = plan.definition.input_schema or {}
    required = schema.get("required") or []
    example = "{" + ", ".join(f'"{k}": ...' for k in required) + "}"
    return (
        f"this saga takes input{' (' + ', '.join(required) + ')' if required else ''}: pass it "
        f"with --input '{example}', --input @input.json, or --input - to read stdin"
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from sagac import astart, compile_file, new_run_id, open_store, validate_input
    from sagac.errors import StoreError

    from ._store import default_store, explain_interruption

    # Checking python targets imports them now, as the run would, but before any side effect.
    c = compile_file(args.file, imports=not (args.no_import or args.simulate))
    if c.plan is None or not c.ok():
        print_diagnostics([c], "text")
        return ExitCode.INVALID_DEFINITION
    url = args.store or default_store()
    if args.idempotency_key is not None and url == "memory":
        raise UsageError(
            "--idempotency-key needs a durable store: --store memory forgets the key when"
            " the process ends",
            hint="drop --store memory (the default store is sqlite:///.sagac/sagac.db), or"
            " pass --store sqlite:///PATH",
        )
    run_id = new_run_id()
    seen: list[str] = []  # the run's id once an event says it (a keyed call may resume another)
    try:
        data = read_input("{}" if args.input is None else args.input)
        try:
            validate_input(c.plan, data)  # before anything is opened or run
        except InputError as e:
            if args.input is None:
                e.message = "no --input was given, and this saga requires input: " + e.message
                e.hint = _input_hint(c.plan)
            raise
        events = EventsFile(args.events) if args.events else None
        store = open_store(url)
        progress = Progress(sys.stderr)
        on_event = event_sink(progress, events, seen)
        try:
            begin = functools.partial(
                astart,
                idempotency_key=args.idempotency_key,
                run_id=run_id,
                sleep_limit=args.sleep_limit,
            )
            report = asyncio.run(
                _run(begin, c.plan, data, store, on_event, args.fail, args.simulate)
            )
        except StoreError as e:
            raise explain_interruption(e, seen[0] if seen else run_id, url, bool(seen)) from None
        finally:
            if events is not None:
                events.close()
        stopped = interrupted(report)
        if stopped is not None:
            return stopped
    except InputError as e:
        head = e.message.split(": ", 1)[0] if e.problems else e.message
        print(f"sagac: error[{e.code}]: {head}", file=sys.stderr)
        for problem in e.problems:
            print(f"  - {problem}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return ExitCode.INVALID_INPUT
    print_report(report, args.json)
    code: int = report.exit_code
    return code


async def _run(
    arun: Any, plan: Any, data: Any, store: Any, on_event: Any, fail: Any, simulate: bool
) -> Any:
    started = arun(plan, data, store=store, on_event=on_event, fail=fail, simulate=simulate)
    return await closing(store, started)
