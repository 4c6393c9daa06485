"""`sagac resume`, `cancel`, `approve` and `reject`: act on runs in the durable journal.

Thin drivers over the public API (`sagac.aresume`, `acancel`, `adecide`). Exit codes beyond the
run's own (0/1/2/3): 64 usage (unknown run, bad arguments, reused idempotency key), 65 changed
definition (resume without --force), 70 the journal could not be written (the run is named
with its resume command), 73 the --events file cannot be written, 75 the run is held by
another process (its lease), 77 a decision was refused (and audited). With --json, stdout is
the JSON alone; lines for people go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from sagac.errors import ExitCode, SagacError, UsageError

from ._args import add_sleep_limit_option
from ._console import Progress, describe_request, event_sink, print_report
from ._driving import closing, interrupted
from ._store import (
    add_store_option,
    current_user,
    explain_interruption,
    live_workers,
    open_existing,
)

MAX_TOKEN_CHARS = 4096  # a token is ~43 characters: read no more than this from stdin


def register(sub: Any) -> None:
    p = sub.add_parser("resume", help="continue a crashed, paused or cancelled run")
    p.add_argument("run_id", metavar="RUN_ID", nargs="?")
    p.add_argument("--all", action="store_true", help="resume every unfinished run")
    p.add_argument("--file", metavar="FILE", help="the saga file (default: the run's own)")
    p.add_argument("--force", action="store_true", help="resume even though the definition changed")
    add_sleep_limit_option(p, 60.0, "again (a run parked until later is left as it is: exit 3)")
    _report_options(p)
    p.set_defaults(func=resume)

    p = sub.add_parser("cancel", help="ask a run to stop and compensate")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--reason", metavar="R", help="why (journaled and audited)")
    p.add_argument("--as", dest="user", metavar="USER", help="who asks (default: you)")
    p.add_argument(
        "--resume", action="store_true", help="carry the cancel out now when nothing runs it"
    )
    _report_options(p)
    p.set_defaults(func=cancel)

    for name, helptext in (("approve", "approve a waiting gate"), ("reject", "reject a gate")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("run_id", metavar="RUN_ID")
        p.add_argument("--gate", required=True, metavar="ID", help="the approval gate's id")
        p.add_argument(
            "--as",
            dest="user",
            required=True,
            metavar="USER",
            help="who decides: a claim, audited with your OS user (the token is the credential)",
        )
        p.add_argument(
            "--token",
            required=True,
            metavar="T",
            help="the token printed when the gate was reached (`-`: read it from stdin)",
        )
        if name == "approve":
            p.add_argument("--comment", metavar="C")
            p.add_argument("--value", metavar="JSON", help="data for the gate's result.value")
        else:
            p.add_argument("--reason", required=True, metavar="R", help="why (audited)")
        p.add_argument("--resume", action="store_true", help="continue the run once decided")
        p.add_argument("--file", metavar="FILE", help="the saga file (default: the run's own)")
        _report_options(p)
        p.set_defaults(func=decide, approved=name == "approve")


def _report_options(p: argparse.ArgumentParser) -> None:
    add_store_option(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print the report (or the decision) as JSON on stdout; other lines go to stderr",
    )
    p.add_argument(
        "--events",
        metavar="FILE",
        help="write every event of the runs this process drives, as JSON lines (exit 73: cannot)",
    )


def _driving(args: argparse.Namespace) -> tuple[Any, Any]:
    """The `on_event` of a command that may run a saga (progress lines, `--events`), and the
    events file to close after it."""
    from ._files import EventsFile

    events = EventsFile(args.events) if args.events else None
    return event_sink(Progress(sys.stderr), events), events


def _drive(args: argparse.Namespace, store: Any, coro: Any, driving: set[str], events: Any) -> Any:
    """Run `coro`, then close the store and the `--events` file. A journal that cannot be
    written while `coro` drives a run (its id in `driving`) names the run and how to continue
    it."""
    import asyncio

    from sagac.errors import StoreError

    try:
        return asyncio.run(closing(store, coro))
    except StoreError as e:
        if not driving:
            raise
        raise explain_interruption(e, next(iter(driving)), args.store) from None
    finally:
        if events is not None:
            events.close()


def resume(args: argparse.Namespace) -> int:
    from sagac import aresume, aresume_all

    if bool(args.run_id) == bool(args.all):
        raise UsageError("give either RUN_ID or --all", hint="sagac resume RUN_ID | --all")
    store = open_existing(args.store)
    on_event, events = _driving(args)
    if args.all:
        limit = args.sleep_limit
        every = aresume_all(store, force=args.force, on_event=on_event, sleep_limit=limit)
        outcomes = _drive(args, store, every, set(), events)
    else:
        one = aresume(
            args.run_id,
            store=store,
            plan=args.file,
            force=args.force,
            on_event=on_event,
            sleep_limit=args.sleep_limit,
        )
        report = _drive(args, store, one, {args.run_id}, events)
    stopped = interrupted(outcomes if args.all else report)
    if stopped is not None:
        return stopped
    if not args.all:
        print_report(report, args.json)
        return int(report.exit_code)
    worst, rows = ExitCode.OK, []
    for run_id, out in outcomes:
        if isinstance(out, Exception):
            code = getattr(out, "exit_code", ExitCode.FAILED)
            error = getattr(out, "code", "ERROR")
            rows.append({"run_id": run_id, "error": error, "message": str(out)})
            line = f"{run_id}  error[{error}] {out}"
        else:
            code = out.exit_code
            rows.append({"run_id": run_id, "status": out.status})
            line = f"{run_id}  {out.status}"
        if not args.json:
            print(line)
        worst = max(worst, code)
    if args.json:
        print(json.dumps(rows, indent=2))
    if not outcomes:
        print("nothing to resume", file=sys.stderr)
    return worst


def cancel(args: argparse.Namespace) -> int:
    from sagac import FINAL_STATUSES, acancel, aresume

    store = open_existing(args.store)
    by = args.user or current_user()
    info = sys.stderr if args.json else sys.stdout  # with --json, stdout is the JSON alone
    on_event, events = _driving(args)

    async def go() -> Any:
        first = await acancel(store, args.run_id, by=by, reason=args.reason)
        record = await store.get_run(args.run_id)
        note = "recorded" if first else "was already recorded"
        print(f"cancel request for run {args.run_id} {note} (status {record.status})", file=info)
        if record.status in FINAL_STATUSES:
            print("the run has already finished: nothing to cancel", file=sys.stderr)
            return record
        lease = await store.get_lease(args.run_id)
        if lease is not None:
            print(f"the process running it ({lease[0]}) stops and compensates", file=sys.stderr)
            return record
        if not args.resume:
            if await live_workers(store):
                print("nothing runs it now: a live worker carries it out", file=info)
            else:
                print(
                    f"nothing runs it now: `sagac resume {args.run_id}` carries it out", file=info
                )
            return record
        driving.add(args.run_id)
        return await aresume(args.run_id, store=store, on_event=on_event)

    driving: set[str] = set()
    out = _drive(args, store, go(), driving, events)
    if not hasattr(out, "exit_code"):  # a RunRecord: the request is recorded, nothing ran
        if args.json:
            print(
                json.dumps(
                    {"run_id": args.run_id, "cancel_requested": True, "status": out.status},
                    indent=2,
                )
            )
        return ExitCode.OK
    stopped = interrupted(out)
    if stopped is not None:
        return stopped
    print_report(out, args.json)
    return int(out.exit_code)


def decide(args: argparse.Namespace) -> int:
    from sagac import adecide, aresume, plan_of

    store = open_existing(args.store)
    token = sys.stdin.readline(MAX_TOKEN_CHARS).strip() if args.token == "-" else args.token
    value = None
    if getattr(args, "value", None) is not None:
        try:
            value = json.loads(args.value)
        except json.JSONDecodeError as e:
            raise UsageError(f"--value is not JSON: {e}") from None
    info = sys.stderr if args.json else sys.stdout  # with --json, stdout is the JSON alone
    on_event, events = _driving(args)

    async def go() -> Any:
        record = await store.get_run(args.run_id)
        rows = [r for r in await store.approvals(args.run_id) if r["gate"] == args.gate]
        if rows:  # what is being decided, before anything is recorded
            print("\n".join(describe_request(rows[0])), file=info)
        definition_hash = None
        # A file that is gone or broken cannot be compared; the stored hashes still bind.
        with contextlib.suppress(SagacError):
            definition_hash = plan_of(record, args.file).hash
        event = await adecide(
            store,
            args.run_id,
            args.gate,
            approved=args.approved,
            by=args.user,
            token=token,
            comment=args.comment if args.approved else args.reason,
            value=value,
            definition_hash=definition_hash,
        )
        verdict = "approved" if event["approved"] else "rejected"
        print(f"{verdict}: gate {args.gate} of run {args.run_id} by {args.user}", file=info)
        if not args.resume:
            if await live_workers(store):
                print("a live worker continues the run", file=info)
            else:
                print(f"continue the run with: sagac resume {args.run_id}", file=info)
            return event
        driving.add(args.run_id)
        return await aresume(args.run_id, store=store, plan=args.file, on_event=on_event)

    driving: set[str] = set()
    out = _drive(args, store, go(), driving, events)
    if isinstance(out, dict):  # the decision is recorded; the run was not continued
        if args.json:
            print(
                json.dumps(
                    {"run_id": args.run_id, "gate": args.gate, "decision": out},
                    indent=2,
                    default=str,
                )
            )
        return ExitCode.OK
    stopped = interrupted(out)
    if stopped is not None:
        return stopped
    print_report(out, args.json)
    return int(out.exit_code)
