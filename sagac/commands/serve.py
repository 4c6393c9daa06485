"""`sagac serve`: the HTTP API over a store (`sagac.server`), on uvicorn.

It compiles the sagas of `--sagas` (a broken one stops it, exit 65), brings the store to this
sagac's schema, binds the socket itself (a port in use is exit 69, never a traceback), prints
one line saying where it listens, and serves until SIGINT or SIGTERM: it then ends the event
streams it follows, lets the requests in flight finish (5 s at most) and exits by that signal
(130, 143), as uvicorn does. It runs no saga: workers do. The access log is off: a callback's
URL holds a token.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sagac.errors import ExitCode, SagacError, UsageError

from ._store import add_store_option


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the HTTP API (/api/v1) over the store; workers run what it submits",
        description="Serve the JSON API under /api/v1 over the store, authenticated by bearer"
        " tokens (`sagac tokens create`). Submits go to the store as queued runs: run `sagac"
        " worker` beside it.",
    )
    add_store_option(p)
    p.add_argument(
        "--sagas",
        metavar="DIR",
        help="the folder of the saga files clients may submit (each *.yaml, compiled at start)",
    )
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (127.0.0.1)")
    p.add_argument(
        "--port",
        type=_port,
        default=8080,
        metavar="N",
        help="the port to listen on (default 8080; 0: any free port, printed at start)",
    )
    p.set_defaults(func=serve)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return int(text)


class CannotListen(SagacError):
    """The address cannot be bound (in use, not this machine's, not allowed)."""

    code = "CANNOT_LISTEN"
    exit_code = ExitCode.UNAVAILABLE


def serve(args: argparse.Namespace) -> int:
    import asyncio
    import socket
    from pathlib import Path

    from sagac import open_store

    if args.store == "memory":
        raise UsageError(
            "--store memory keeps nothing between processes: no worker could run a submit",
            hint="use the default store, --store sqlite:///PATH or --store postgresql://...",
        )
    from sagac.server import create_app, load_sagas

    plans = load_sagas(Path(args.sagas) if args.sagas else None)

    async def migrate() -> None:
        store = open_store(args.store)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(migrate())
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        sock.close()
        raise CannotListen(
            f"cannot listen on {args.host}:{args.port}: {e.strerror}",
            hint="choose another --port (0: any free one) or --host",
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    import uvicorn

    app = create_app(open_store(args.store), plans)
    config = uvicorn.Config(
        app,
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    print(
        f"sagac serve: listening on http://{url_host}:{port}/api/v1 ({len(plans)} saga(s))",
        file=sys.stderr,
        flush=True,
    )
    service = app.state.service

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            service.stopping = True  # end followed event streams: nothing holds the stop up
            super().handle_exit(sig, frame)

    Server(config).run(sockets=[sock])  # a stop by a signal ends the process by that signal
    return ExitCode.OK
