"""The server tests' fixtures: a real `sagac serve` (uvicorn on 127.0.0.1, a free port) over a
SQLite or PostgreSQL store, tokens made in that store, `sagac worker` runs, and every response
checked against the server's own OpenAPI document.

`served` starts `python -m sagac serve --port 0` with its stderr in a file, reads the port from
its first line, and stops it with SIGTERM at the end of the test (then asserts that it exited 0
and printed no traceback unless the test expected one).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

SAGAS = Path(__file__).resolve().parent / "sagas"
LISTENING = re.compile(r"listening on (http://\S+)/api/v1")


def env(folder: Path) -> dict[str, str]:
    """The environment of the server and worker processes: no SAGAC_ variable of the caller's,
    and where the callback provider writes its tokens."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("SAGAC_")}
    return {**out, "NO_COLOR": "1", "SERVER_TEST_TOKENS": str(folder / "tokens.txt")}


def in_store(url: str, fn: Any) -> Any:
    """`await fn(store)` on a fresh handle of the store at `url`, closed afterwards."""
    from sagac import open_store

    async def go() -> Any:
        store = open_store(url)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


@dataclass
class Server:
    """A running `sagac serve` and the store it serves."""

    url: str  # http://127.0.0.1:PORT
    store: str
    folder: Path
    proc: subprocess.Popen[bytes]
    log: Path
    document: dict[str, Any] = field(default_factory=dict)
    expect_errors: bool = False

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def token(self, user: str, scopes: str = "read", groups: tuple[str, ...] = ()) -> str:
        from sagac.runtime.auth import create_token

        async def make(store: Any) -> str:
            token, _ = await create_token(store, user, groups=groups, scopes=scopes)
            return token

        result: str = in_store(self.store, make)
        return result

    def audit(self) -> list[dict[str, Any]]:
        async def read(store: Any) -> list[dict[str, Any]]:
            entries: list[dict[str, Any]] = await store.audit_log()
            return entries

        result: list[dict[str, Any]] = in_store(self.store, read)
        return result

    def work(self, timeout: float = 120) -> None:
        """Run `sagac worker --exit-when-idle` on the store until nothing is left to do."""
        done = subprocess.run(
            [
                *(sys.executable, "-m", "sagac", "worker", "--store", self.store),
                *("--exit-when-idle", "--lease-ttl", "1s", "--poll", "100ms"),
            ],
            cwd=self.folder,
            env=env(self.folder),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    def check(self, response: httpx.Response, path: str, method: str = "get") -> Any:
        """Validate `response` against the document's schema for `path`, `method` and the
        response's status and media type; returns its JSON."""
        operation = self.document["paths"][path][method]
        spec = operation["responses"][str(response.status_code)]
        media = response.headers["content-type"].split(";")[0].strip()
        schema = spec["content"][media]["schema"]
        data = response.json()
        jsonschema.Draft202012Validator(
            {**schema, "components": self.document["components"]}
        ).validate(data)
        return data

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("sagac serve did not stop on SIGTERM") from None
        text = self.log.read_text(errors="replace")
        assert self.proc.returncode == -signal.SIGTERM, text[-3000:]  # as uvicorn ends
        if not self.expect_errors:
            assert "Traceback" not in text, text[-3000:]


def start(store: str, folder: Path, sagas: Path = SAGAS) -> Server:
    log = folder / f"serve-{time.monotonic_ns()}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "sagac", "serve", "--store", store),
                *("--sagas", str(sagas), "--port", "0"),
            ],
            cwd=folder,
            env=env(folder),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 60
    while True:
        found = LISTENING.search(log.read_text(errors="replace"))
        if found:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"sagac serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    server = Server(found.group(1), store, folder, proc, log)
    server.document = httpx.get(f"{server.url}/api/v1/openapi.json", timeout=30).json()
    return server


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_server").database()
        return url
    return f"sqlite:///{tmp_path / 'sagac.db'}"


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    running = start(store_url, tmp_path)
    try:
        yield running
    finally:
        running.stop()
