"""`sagac signal`: send a signal to a run, for its `wait`.

A thin driver over `sagac.asignal`: read the data (`--data JSON|@FILE|-`, as `--input` is
read; none is null), send it, print what happened and how the run goes on (a live worker
continues a parked run at once, else `sagac resume`). Exit 0 when the signal was kept, 77 when
it was refused (audited: unknown name, invalid data, sent already, the run finished), 64 for
an unknown run or store, 4 for data that is not JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sagac.errors import ExitCode

from ._input import read_input
from ._store import add_store_option, current_user, live_workers, open_existing, using


def register(sub: Any) -> None:
    p = sub.add_parser("signal", help="send a signal to a run that waits for it")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("name", metavar="NAME", help="the signal's name (a `wait`'s `signal`)")
    p.add_argument(
        "--data",
        metavar="JSON|@FILE|-",
        default=None,
        help="the payload, the wait's result: JSON text, @path to a JSON file, or - to read"
        " stdin (default: null); checked against the wait's schema",
    )
    p.add_argument("--as", dest="user", metavar="USER", help="who sends it (default: you)")
    add_store_option(p)
    p.add_argument("--json", action="store_true", help="print the kept signal as JSON")
    p.set_defaults(func=signal)


def signal(args: argparse.Namespace) -> int:
    from sagac import asignal

    data = None if args.data is None else read_input(args.data, "signal data")
    by = args.user or current_user()
    info = sys.stderr if args.json else sys.stdout

    async def go(store: Any) -> tuple[dict[str, Any], str, bool]:
        sent = await asignal(store, args.run_id, args.name, data, by=by)
        record = await store.get_run(args.run_id)
        return sent, record.status, await live_workers(store)

    sent, status, worker = using(open_existing(args.store), go)
    if args.json:
        print(json.dumps(sent, default=str))
    print(f"signal {args.name} sent to run {args.run_id} (id {sent['signal_id']})", file=info)
    if status in ("waiting", "waiting_approval"):
        if worker:
            print("a live worker continues the run", file=info)
        else:
            print(f"continue the run with: sagac resume {args.run_id}", file=info)
    else:
        print(f"the run is {status}: its wait takes the signal when it gets there", file=info)
    return ExitCode.OK
