"""`sagac runs`, `show`, `events` and `audit`: read the durable journal, change nothing."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sagac.errors import ExitCode, UsageError

from ._args import duration, positive
from ._console import describe, describe_request, print_table
from ._store import add_store_option, open_existing, using


def register(sub: Any) -> None:
    p = sub.add_parser("runs", help="list runs in the journal, newest first")
    p.add_argument(
        "--status",
        metavar="S",
        help="only runs with this status: queued, running, interrupted, waiting_approval,"
        " waiting, succeeded, compensated, compensation_failed or failed; or `stuck`: unfinished"
        " runs that no lease covers and that have not moved for longer than --lease-ttl (a waiting"
        " run: since a decision, a cancel or a passed deadline made it runnable), each with why",
    )
    p.add_argument(
        "--lease-ttl",
        type=duration,
        default=30.0,
        metavar="DURATION",
        help="with --status stuck: the workers' lease TTL (default 30s)",
    )
    p.add_argument("--saga", metavar="NAME", help="only runs of this saga")
    p.add_argument(
        "--limit", type=positive, default=50, metavar="N", help="at most N runs (default 50)"
    )
    _options(p)
    p.set_defaults(func=runs)

    p = sub.add_parser(
        "show", help="a run: its report, steps, timeline, pending approvals, parent and children"
    )
    p.add_argument("run_id", metavar="RUN_ID")
    _options(p)
    p.set_defaults(func=show)

    p = sub.add_parser("events", help="a run's journal, event by event")
    p.add_argument("run_id", metavar="RUN_ID")
    _options(p)
    p.set_defaults(func=events)

    p = sub.add_parser("audit", help="the audit log: decisions, refusals, cancels, forced resumes")
    p.add_argument("run_id", metavar="RUN_ID", nargs="?")
    _options(p)
    p.set_defaults(func=audit)


def _options(p: argparse.ArgumentParser) -> None:
    add_store_option(p)
    p.add_argument("--json", action="store_true", help="JSON instead of text")


def _read(args: argparse.Namespace, fn: Any) -> Any:
    return using(open_existing(args.store, readonly=True), fn)


def runs(args: argparse.Namespace) -> int:
    from sagac import RUN_STATUSES

    if args.status == "stuck":
        return _stuck(args)
    if args.status is not None and args.status not in RUN_STATUSES:
        raise UsageError(
            f"--status {args.status!r} is not a run status: use one of"
            f" {', '.join(RUN_STATUSES)}, or stuck"
        )
    records = _read(
        args, lambda s: s.list_runs(saga=args.saga, status=args.status, limit=args.limit)
    )
    if args.json:
        rows = [{**r.summary(), "file": r.file} for r in records]
        print(json.dumps(rows, indent=2))
        return ExitCode.OK
    if not records:
        print("no runs", file=sys.stderr)
        return ExitCode.OK
    print(f"{'RUN':<32}  {'SAGA':<24}  {'STATUS':<19}  UPDATED")
    for r in records:
        flag = "  (cancel requested)" if r.meta.get("cancel_requested_at") else ""
        print(f"{r.run_id:<32}  {r.saga:<24}  {r.status:<19}  {r.updated_at}{flag}")
    return ExitCode.OK


def _stuck(args: argparse.Namespace) -> int:
    from sagac import astuck_runs

    found = _read(args, lambda s: astuck_runs(s, args.lease_ttl, limit=args.limit))
    if args.saga is not None:
        found = [(r, why) for r, why in found if r.saga == args.saga]
    if args.json:
        rows = [
            {
                "run_id": r.run_id,
                "saga": r.saga,
                "status": r.status,
                "created_at": r.created_at,
                "updated_at": r.updated_at,
                "why": why,
            }
            for r, why in found
        ]
        print(json.dumps(rows, indent=2))
        return ExitCode.OK
    if not found:
        print("no stuck runs", file=sys.stderr)
        return ExitCode.OK
    print(f"{'RUN':<32}  {'SAGA':<24}  {'STATUS':<19}  WHY")
    for r, why in found:
        print(f"{r.run_id:<32}  {r.saga:<24}  {r.status:<19}  {why}")
    return ExitCode.OK


def show(args: argparse.Namespace) -> int:
    from sagac import apending_approvals

    async def fetch(s: Any) -> dict[str, Any]:
        record = await s.get_run(args.run_id)
        return {
            "record": record,
            "steps": await s.steps(args.run_id),
            "events": await s.load_events(args.run_id),
            "pending": await apending_approvals(s, args.run_id),
            "lease": await s.get_lease(args.run_id),
            "children": await s.children(args.run_id),
        }

    got = _read(args, fetch)
    record = got["record"]
    if args.json:
        print(
            json.dumps(
                {
                    "run_id": record.run_id,
                    "saga": record.saga,
                    "status": record.status,
                    "definition_hash": record.definition_hash,
                    "file": record.file,
                    "report": record.report,
                    "steps": got["steps"],
                    "events": got["events"],
                    "pending_approvals": [_public(r) for r in got["pending"]],
                    "lease": got["lease"],
                    "cancel": _cancel(record),
                    "parent": {"run_id": record.parent_run_id, "step": record.parent_step}
                    if record.parent_run_id
                    else None,
                    "children": [_child(c) for c in got["children"]],
                },
                indent=2,
                default=str,
            )
        )
        return ExitCode.OK
    print(f"run {record.run_id}  {record.saga} v{record.version}  {record.status}")
    print(f"definition {record.file or '?'}  {record.definition_hash}")
    if record.parent_run_id:
        print(f"child of run {record.parent_run_id} (its call {record.parent_step})")
    if got["lease"]:
        print(f"held by {got['lease'][0]}")
    if record.meta.get("cancel_requested_at"):
        meta = record.meta
        print(f"cancel requested by {meta.get('cancel_by')}: {meta.get('cancel_reason')}")
    if record.report:
        from sagac import RunReport

        print()
        print_table(RunReport.model_validate(record.report), sys.stdout)
    print("\nsteps")
    for st in got["steps"]:
        name = st["step"] if st["item_index"] is None else f"{st['step']}[{st['item_index']}]"
        comp = f"  undo: {st['compensation']}" if st["compensation"] else ""
        key = f"  key {st['idempotency_key']}" if st["idempotency_key"] else ""
        print(f"  {name:<28} {st['status']:<10} attempt {st['attempt']}{key}{comp}")
    if got["children"]:
        print("\nchildren")
        for c in got["children"]:
            print(f"  {c.parent_step:<28} {c.run_id}  {c.saga}  {c.status}")
    print("\ntimeline")
    for e in got["events"]:
        line = describe(e)
        if line is not None:
            print(f"  {e['seq']:>4} {e['at']}  {line.strip()}")
    if got["pending"]:
        print("\npending approvals")
        for row in got["pending"]:
            print("  " + "\n  ".join(describe_request(row)))
            print(
                f"  decide: sagac approve {record.run_id} --gate {row['gate']} --as USER"
                " --token TOKEN [--resume]"
            )
    return ExitCode.OK


def _child(record: Any) -> dict[str, Any]:
    """A child run (of a `call` node) as `show --json` lists it."""
    return {
        "run_id": record.run_id,
        "saga": record.saga,
        "status": record.status,
        "step": record.parent_step,
    }


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "token_sha256"}


def _cancel(record: Any) -> dict[str, Any] | None:
    if not record.meta.get("cancel_requested_at"):
        return None
    return {
        "at": record.meta["cancel_requested_at"],
        "by": record.meta.get("cancel_by"),
        "reason": record.meta.get("cancel_reason"),
    }


def events(args: argparse.Namespace) -> int:
    evs = _read(args, lambda s: s.load_events(args.run_id))
    for e in evs:
        if args.json:
            print(json.dumps(e, default=str))
        else:
            rest = {k: v for k, v in e.items() if k not in ("type", "run_id", "seq", "at")}
            print(f"{e['seq']:>4} {e['at']} {e['type']:<22} {json.dumps(rest, default=str)}")
    return ExitCode.OK


def audit(args: argparse.Namespace) -> int:
    async def fetch(s: Any) -> list[dict[str, Any]]:
        if args.run_id is not None:
            await s.get_run(args.run_id)  # RunNotFound (exit 64), not an empty log
        entries: list[dict[str, Any]] = await s.audit_log(args.run_id)
        return entries

    entries = _read(args, fetch)
    if args.json:
        print(json.dumps(entries, indent=2, default=str))
        return ExitCode.OK
    for a in entries:
        where = "".join(f" {x}" for x in (a["run_id"], a["gate"]) if x)
        code = f" [{a['code']}]" if a["code"] else ""
        msg = f": {a['message']}" if a["message"] else ""
        actor = a["actor"] or "-"
        if a.get("os_user") and a["os_user"] != a["actor"]:
            actor += f" (os user {a['os_user']})"  # `--as` is a claim; this is who ran it
        print(f"{a['at']} {actor} {a['action']} {a['outcome']}{code}{where}{msg}")
    return ExitCode.OK
