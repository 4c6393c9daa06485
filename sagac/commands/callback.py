"""`sagac callback TOKEN`: report the outcome of a task step that waits for its callback.

A thin driver over `sagac.acallback`: `--result JSON|@FILE|-` completes the step with that
result, `--error CODE [--message M]` fails its attempt with that code (its retry and compensate
apply). Exit 0 when the outcome was recorded, 64 usage (no outcome, both, a code that is not
UPPER_SNAKE_CASE), 4 a result that is not JSON (as `--input` and `signal --data`), 77 refused
(unknown token, used, late, or the step no longer waits: audited). It then says whether a live
worker continues the run or `sagac resume RUN_ID` must. With --json, stdout is the JSON alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sagac.errors import ExitCode, UsageError

from ._store import add_store_option, current_user, open_existing

MAX_TOKEN_CHARS = 4096  # a token is ~32 characters: read no more than this from stdin
LIVE_WITHIN = 30.0  # a worker is alive when its last heartbeat is younger (as `sagac workers`)


def register(sub: Any) -> None:
    p = sub.add_parser("callback", help="complete a step that waits for its callback")
    p.add_argument(
        "token", metavar="TOKEN", help="the step's callback token (`-`: read it from stdin)"
    )
    outcome = p.add_mutually_exclusive_group(required=True)
    outcome.add_argument(
        "--result",
        metavar="JSON|@FILE|-",
        help="complete the step with this result: JSON text, @path to a JSON file, or -",
    )
    outcome.add_argument(
        "--error", metavar="CODE", help="fail the step's attempt with this code (PAYMENT_DECLINED)"
    )
    p.add_argument("--message", metavar="M", help="the error's message (with --error)")
    p.add_argument("--as", dest="user", metavar="USER", help="who calls back (default: you)")
    add_store_option(p)
    p.add_argument("--json", action="store_true", help="print what was recorded as JSON")
    p.set_defaults(func=callback)


def callback(args: argparse.Namespace) -> int:
    import asyncio

    from sagac import acallback

    from ._driving import closing
    from ._input import read_input

    if args.message is not None and args.error is None:
        raise UsageError("--message goes with --error", hint="sagac callback TOKEN --error CODE")
    token = sys.stdin.readline(MAX_TOKEN_CHARS).strip() if args.token == "-" else args.token
    if not token:
        raise UsageError(
            "no token given", hint="sagac callback TOKEN --result JSON (or - to read it)"
        )
    kwargs: dict[str, Any] = {"error": args.error, "message": args.message}
    if args.result is not None:
        if args.token == "-" and args.result in ("-", "@-"):
            raise UsageError("the token and the result cannot both come from stdin")
        kwargs["result"] = read_input(args.result, "result")
    by = args.user or current_user()
    store = open_existing(args.store)

    async def go() -> tuple[dict[str, Any], bool]:
        row = await acallback(store, token, by=by, **kwargs)
        return row, bool(await store.workers(LIVE_WITHIN))

    row, workers = asyncio.run(closing(store, go()))
    run_id, step = row["run_id"], row["step"]
    if args.json:
        shown = {k: row.get(k) for k in ("run_id", "step", "attempt", "outcome", "outcome_at")}
        print(json.dumps({**shown, "worker_continues": workers}, indent=2, default=str))
        return ExitCode.OK
    what = f"error {args.error}" if args.error is not None else "result"
    print(f"recorded the {what} for step {step!r} (attempt {row['attempt']}) of run {run_id}")
    if workers:
        print("a live worker continues the run")
    else:
        print(f"continue the run with: sagac resume {run_id}")
    return ExitCode.OK
