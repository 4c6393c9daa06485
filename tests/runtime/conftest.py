"""Shared fixtures for runtime tests: a real loopback HTTP server and the anyio backend.

`http_server` starts a threaded stdlib HTTP/1.1 server on 127.0.0.1 (ephemeral port) for one
test. Routes are set per test and every request is recorded::

    Reply = http_server.Reply
    http_server.route("POST", "/reservations", Reply(201, {"lease_id": "L1"}))
    http_server.route("GET", "/flaky", [Reply(503), Reply(200, {"ok": True})])  # last repeats
    http_server.route("GET", "/slow", Reply(200, {}, delay=2.0))
    http_server.route("PUT", "/echo", lambda req: Reply(200, req.json))
    url = http_server.url("/reservations")
    http_server.requests[0].headers["idempotency-key"]

Unrouted requests get 404 with `{"error": "no route"}`. Async tests use `@pytest.mark.anyio`
(or `pytestmark = pytest.mark.anyio`); the backend is asyncio.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass(frozen=True)
class Reply:
    """What a route answers: `json` (serialised) or raw `body`, after `delay` seconds."""

    status: int = 200
    json: Any = None
    body: bytes | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def payload(self) -> tuple[bytes, str]:
        if self.body is not None:
            raw = self.body.encode() if isinstance(self.body, str) else self.body
            return raw, "text/plain; charset=utf-8"
        if self.json is None:
            return b"", "application/json"
        return json.dumps(self.json).encode(), "application/json"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    client_port: int  # the same port twice means a reused (pooled) connection

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Responder = Reply | list[Reply] | Callable[[RecordedRequest], Reply]


class LoopbackServer:
    """A configurable HTTP server on 127.0.0.1 that records what it receives."""

    Reply = Reply  # so tests need no import from conftest: `http_server.Reply(...)`

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._routes: dict[tuple[str, str], Responder] = {}
        self._served: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def route(self, method: str, path: str, responder: Responder) -> None:
        """Answer `method path` with a reply, a list of replies (one per request, the last
        one repeating), or a function of the recorded request."""
        with self._lock:
            self._routes[(method.upper(), path)] = responder
            self._served[(method.upper(), path)] = 0

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def _answer(self, request: RecordedRequest) -> Reply:
        key = (request.method, request.path)
        with self._lock:
            self.requests.append(request)
            responder = self._routes.get(key)
            if responder is None:
                return Reply(404, {"error": "no route", "path": request.path})
            count = self._served[key]
            self._served[key] = count + 1
        if isinstance(responder, Reply):
            return responder
        if isinstance(responder, list):
            return responder[min(count, len(responder) - 1)]
        return responder(request)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler_for(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so client connection pooling is real

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                client_port=self.client_address[1],
            )
            reply = server._answer(request)
            if reply.delay:
                time.sleep(reply.delay)
            payload, content_type = reply.payload()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to answer

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
