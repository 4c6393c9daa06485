"""A provider behind a loopback HTTP server that calls back before it answers: `callback.token`
in the step's `with` and in its http action's url, and the step completes at once."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest
from sagac.compiler.pipeline import compile_file

import sagac

from .support import HERE, open_store


class Provider(BaseHTTPRequestHandler):
    store: ClassVar[str] = ""
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        token = parse_qs(urlparse(self.path).query)["token"][0]
        self.seen.append({"query": token, "body": body})
        sagac.callback(token, store=self.store, result={"payment_id": "w-1"}, by="provider")
        out = json.dumps({"accepted": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def provider(cb_dir: Path) -> Iterator[int]:
    Provider.store, Provider.seen = f"sqlite:///{cb_dir / 'journal.db'}", []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_provider_calling_back_at_once_through_http(provider: int, cb_dir: Path) -> None:
    compiled = compile_file(HERE / "webhook.yaml")
    if any(d.code == "E022" and "callback" in d.message for d in compiled.diagnostics):
        pytest.skip("this compiler does not know `callback.token` yet (the compiler's part)")
    assert compiled.plan is not None and compiled.ok(), compiled.diagnostics

    async def go() -> None:
        store = open_store("sqlite", cb_dir)
        try:
            report = await sagac.arun(compiled.plan, {"port": provider}, store=store)
            assert report.status == "succeeded" and report.output == {"payment": "w-1"}
            (call,) = Provider.seen
            token = call["query"]
            assert call["body"] == {"amount": 11, "reply_to": token}  # `with` and the url agree
            events = await store.load_events(report.run_id)
            assert token not in json.dumps(events)
        finally:
            await store.close()

    asyncio.run(go())
