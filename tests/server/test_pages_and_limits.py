"""Pagination over 10,000 runs, filters, and what the server refuses at its edges: paths that
climb out of the API, a 10 MB body, malformed queries; never a traceback."""

from __future__ import annotations

import socket
from typing import Any

from .conftest import Server, in_store

RUNS = "/api/v1/runs"
MANY = 10_000


def _create(url: str, count: int) -> list[str]:
    """`count` queued runs of two sagas, created straight in the store; their ids, oldest
    first."""
    from sagac.runtime.clock import new_run_id
    from sagac.runtime.store.base import RunRecord

    async def create(store: Any) -> list[str]:
        ids = []
        for i in range(count):
            run_id = new_run_id()
            saga = "refund" if i % 2 else "waiter"
            await store.create_run(RunRecord(run_id, saga, 1, "sha256:x", {}, status="queued"))
            ids.append(run_id)
        return ids

    result: list[str] = in_store(url, create)
    return result


def test_cursor_pagination_over_10000_runs(server: Server) -> None:
    created = _create(server.store, MANY)
    c = server.client(server.token("rita", "read"))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = server.check(c.get(RUNS, params=params), RUNS)
        seen += [r["run_id"] for r in page["runs"]]
        pages += 1
        if pages == 3:  # runs made while paging are newer: they never shift a later page
            _create(server.store, 7)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == MANY // 500
    assert seen == created[::-1]  # every run once, newest first

    odd = server.check(c.get(RUNS, params={"saga": "refund", "limit": 500}), RUNS)
    assert {r["saga"] for r in odd["runs"]} == {"refund"} and odd["next_cursor"]
    first = server.check(c.get(RUNS, params={"limit": 1}), RUNS)["runs"][0]
    later = c.get(RUNS, params={"since": first["created_at"], "status": "queued"}).json()
    assert later["runs"] and all(r["created_at"] >= first["created_at"] for r in later["runs"])
    none = c.get(RUNS, params={"until": "2000-01-01T00:00:00Z"}).json()
    assert none == {"runs": [], "next_cursor": None}

    for params in ({"limit": 0}, {"limit": 501}, {"status": "lost"}, {"since": "yesterday"}):
        r = c.get(RUNS, params=params)
        assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST", params


def _raw(server: Server, request: bytes) -> bytes:
    """Send `request` as it is (no client normalises its path) and read the answer."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_paths_that_climb_out_are_not_found(server: Server) -> None:
    token = server.token("rita", "read")
    for path in (
        "/api/v1/runs/../../etc/passwd",
        "/api/v1/runs/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1/runs/..%2f..%2fetc%2fpasswd",
        "/api/v1/../../../etc/passwd",
    ):
        answer = _raw(
            server,
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode(),
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"404", (path, answer[:300])
        assert b"application/problem+json" in head
        assert b"root:" not in body and b"Traceback" not in body


def test_a_10_mb_body_is_refused_unread(server: Server) -> None:
    c = server.client(server.token("svc", "submit,read"))
    big = b'{"input": {"refund_id": "' + b"x" * (10 * 1024 * 1024) + b'", "amount": 1}}'
    r = c.post("/api/v1/sagas/refund/runs", content=big)
    assert r.status_code == 413 and r.json()["code"] == "BODY_TOO_LARGE"

    def chunks() -> Any:  # no Content-Length: the server counts what it reads
        for _ in range(10):
            yield b" " * (1024 * 1024)

    r = c.post("/api/v1/sagas/refund/runs", content=chunks())
    assert r.status_code == 413 and r.json()["code"] == "BODY_TOO_LARGE"
    assert server.check(c.get(RUNS), RUNS)["runs"] == []
