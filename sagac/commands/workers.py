"""`sagac submit`, `worker` and `workers`: runs that move by themselves.

`submit` records a queued run (its definition and input) without running it; `worker` is the
long-running process that claims runnable runs and drives them (`sagac.arun_worker`); `workers`
lists the live ones with the runs they hold. Thin drivers over the public API.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sagac.errors import ExitCode, UsageError

from ._args import add_sleep_limit_option, duration, period, positive
from ._console import print_diagnostics
from ._input import add_input_option, read_input
from ._store import add_store_option, open_existing, using

WORKER_EPILOG = """\
A run is runnable when it was submitted and not started, its worker died (its lease expired),
a gate of it was decided or passed its deadline (its `on_timeout` then applies), a sleep of it
is due, a signal it waits for came or a wait's timeout passed, or a cancel was requested.
Every run runs the definition it was submitted with, kept in the store.

Stopping: the first SIGTERM or SIGINT claims nothing new and lets the runs in flight go on for
up to --grace; what is still running then is stopped as `sagac run` stops on a signal (nothing
half-done journaled, the run `interrupted` and runnable by the next worker); the worker then
releases its leases and exits 0. A second signal stops at once.

Logs: one JSON line per run transition on stderr: {"at", "worker", "event", "run_id", "saga",
...}; events: worker_started, claimed, started (a queued run) or resumed, parked (waits for a
person, a time or a signal), finished (with the run's status and duration_ms), released,
error, retry, interrupted, lease_lost, worker_stopping, cancelling, idle, worker_stopped;
library_log (a warning of a library, e.g. psycopg's pool losing a connection).

Exit codes: 0 stopped by a signal (gracefully) or idle (--exit-when-idle); 64 bad arguments or
an unknown store; 70 the store cannot be opened (a newer schema, not a journal); 130 / 143 a
second SIGINT / SIGTERM stopped it at once. A store that fails while the worker runs (a
PostgreSQL server restarting) is retried with backoff, never an exit."""


def register(sub: Any) -> None:
    p = sub.add_parser("submit", help="record a run for a worker to run, and print its id")
    p.add_argument("file", metavar="FILE")
    add_input_option(p, "; validated before anything is stored")
    p.add_argument(
        "--idempotency-key",
        metavar="K",
        help="at most one run of this saga for K: the same K and input again print the same"
        " run id; the same K with another input is refused (exit 64)",
    )
    add_store_option(p)
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"run_id", "existing", "approval_token"} instead (the token is null for'
        " a repeat that found its run)",
    )
    p.set_defaults(func=submit)

    p = sub.add_parser(
        "worker",
        help="claim runnable runs from the store and run them, until stopped",
        description="Claim runnable runs from the store and drive them, until SIGTERM or"
        " SIGINT. Run one or more on each machine that shares the store.",
        epilog=WORKER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_option(p)
    p.add_argument(
        "--concurrency",
        type=positive,
        default=4,
        metavar="N",
        help="runs driven at once (default 4)",
    )
    p.add_argument(
        "--sagas",
        metavar="DIR",
        help="where python actions import from when the folder a run's saga was submitted"
        " from does not exist on this machine (default: that folder, which must exist)",
    )
    p.add_argument(
        "--lease-ttl",
        type=period,
        default=30.0,
        metavar="DURATION",
        help="how long a run's lease (and this worker's heartbeat) lasts unrenewed: renewed"
        " every third of it; a worker that dies loses its runs to others after it (default 30s)",
    )
    p.add_argument(
        "--poll",
        type=period,
        default=1.0,
        metavar="DURATION",
        help="the longest wait for work when no wake-up comes (default 1s; PostgreSQL wakes"
        " workers at once with LISTEN/NOTIFY, SQLite within about 50ms)",
    )
    p.add_argument(
        "--grace",
        type=duration,
        default=30.0,
        metavar="DURATION",
        help="after SIGTERM or SIGINT: how long the runs in flight may go on before they are"
        " stopped, resumable (default 30s)",
    )
    add_sleep_limit_option(p, 1.0, "until it is due (a worker wakes it on time)")
    p.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="exit 0 once nothing is runnable or in flight and nothing becomes runnable within"
        " one lease TTL (for scripts, tests and benchmarks)",
    )
    p.set_defaults(func=worker)

    p = sub.add_parser("workers", help="list live workers and the runs they hold")
    add_store_option(p)
    p.add_argument(
        "--lease-ttl",
        type=period,
        default=30.0,
        metavar="DURATION",
        help="a worker whose last heartbeat is older than this is not listed (default 30s)",
    )
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.set_defaults(func=workers)


def _refuse_memory(url: str) -> None:
    if url == "memory":
        raise UsageError(
            "--store memory keeps nothing between processes: no worker could see the run",
            hint="use the default store, --store sqlite:///PATH or --store postgresql://...",
        )


def submit(args: argparse.Namespace) -> int:
    from sagac import asubmit, compile_file, open_store

    _refuse_memory(args.store)
    c = compile_file(args.file)
    if c.plan is None or not c.ok():
        print_diagnostics([c], "text")
        return ExitCode.INVALID_DEFINITION
    data = read_input("{}" if args.input is None else args.input)
    store = open_store(args.store)
    keyed = asubmit(c.plan, data, store=store, idempotency_key=args.idempotency_key)
    got = using(store, lambda _: keyed)
    if args.json:
        out = {"run_id": got.run_id, "existing": got.existing}
        print(json.dumps({**out, "approval_token": got.approval_token}))
        return ExitCode.OK
    print(got.run_id)
    if got.approval_token is not None:
        print(
            "to decide an approval gate of this run (this token is shown once, and decides"
            f" each of its gates):\n  sagac approve {got.run_id} --gate GATE --as USER"
            f" --token {got.approval_token}",
            file=sys.stderr,
        )
    elif got.existing:
        print(
            "an earlier submit with this key recorded the run: its approval token was shown"
            " to that submit only",
            file=sys.stderr,
        )
    return ExitCode.OK


def worker(args: argparse.Namespace) -> int:
    import asyncio

    from sagac import aclose_clients, arun_worker, open_store

    _refuse_memory(args.store)
    store = open_store(args.store)
    me: list[str] = []  # the worker's id, from its first line

    def log(line: dict[str, Any]) -> None:
        if not me:
            me.append(line["worker"])
        print(json.dumps(line, default=str), file=sys.stderr, flush=True)

    _library_logs_as_json(log, me)

    async def go() -> int:
        try:
            return await arun_worker(
                store,
                concurrency=args.concurrency,
                lease_ttl=args.lease_ttl,
                poll=args.poll,
                grace=args.grace,
                sagas=args.sagas,
                exit_when_idle=args.exit_when_idle,
                log=log,
                sleep_limit=args.sleep_limit,
            )
        finally:
            await aclose_clients()
            await store.close()

    return ExitCode(asyncio.run(go()))


def _library_logs_as_json(log: Any, me: list[str]) -> None:
    """What libraries log (psycopg_pool: a connection lost, a reconnection failing) becomes
    lines of the worker's JSON log instead of plain text among them."""
    import logging
    from datetime import UTC, datetime

    class JsonLines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            log(
                {
                    "at": at.replace("+00:00", "Z"),
                    "worker": me[0] if me else None,
                    "event": "library_log",
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "message": record.getMessage(),
                }
            )

    logging.getLogger().addHandler(JsonLines(logging.WARNING))


def workers(args: argparse.Namespace) -> int:
    import time
    from datetime import datetime

    rows = using(open_existing(args.store, readonly=True), lambda s: s.workers(args.lease_ttl))
    now = time.time()

    def age(at: str) -> float:
        return round(now - datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp(), 1)

    if args.json:
        out = [
            {
                "worker": w.worker_id,
                "host": w.host,
                "pid": w.pid,
                "state": w.state,
                "concurrency": w.concurrency,
                "started_at": w.started_at,
                "heartbeat_at": w.heartbeat_at,
                "heartbeat_age_s": age(w.heartbeat_at),
                "held": list(w.held),
            }
            for w in rows
        ]
        print(json.dumps(out, indent=2))
        return ExitCode.OK
    if not rows:
        print("no live workers", file=sys.stderr)
        return ExitCode.OK
    print(f"{'WORKER':<40}  {'HOST':<16}  {'PID':>7}  {'STATE':<8}  SLOTS  HEARTBEAT  HELD")
    for w in rows:
        held = ", ".join(w.held) if w.held else "-"
        beat = f"{age(w.heartbeat_at)}s ago"
        print(
            f"{w.worker_id:<40}  {w.host:<16}  {w.pid:>7}  {w.state:<8}  "
            f"{len(w.held)}/{w.concurrency:<3}  {beat:<9}  {held}"
        )
    return ExitCode.OK
