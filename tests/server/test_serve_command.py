"""`sagac serve` as a command: what stops it before it listens (each a one-line error and its
exit code, never a traceback), tokens made by `sagac tokens create`, and a stop by SIGTERM
that ends the event streams it follows instead of waiting for them."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

from .conftest import Server, env, start


def _serve(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagac", "serve", *args],
        cwd=folder,
        env=env(folder),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_what_stops_it_before_it_listens(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'j.db'}"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.yaml").write_text("saga: bad\nsteps:\n  - {id: a, action: {nope: 1}}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cases = [
            (["--store", "memory"], 64, "USAGE"),
            (["--store", store, "--sagas", str(tmp_path / "none")], 64, "USAGE"),
            (["--store", store, "--sagas", str(broken)], 65, "bad.yaml"),
            (["--store", store, "--port", port], 69, "CANNOT_LISTEN"),
            (["--store", store, "--port", "70000"], 64, "USAGE"),
        ]
        for args, code, words in cases:
            done = _serve(tmp_path, *args)
            assert done.returncode == code, (args, done.stderr)
            assert words in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_cli_token_and_a_stop_that_ends_followed_streams(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'j.db'}"
    server: Server = start(store, tmp_path)
    try:
        made = subprocess.run(
            [
                *(sys.executable, "-m", "sagac", "tokens", "create", "--user", "alice"),
                *("--scopes", "submit,read", "--store", store),
            ],
            cwd=tmp_path,
            env=env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip().splitlines()[-1]
        c = server.client(token)
        r = c.post("/api/v1/sagas/waiter/runs", json={"input": {}})
        assert r.status_code == 201, r.text
        run_id = r.json()["run_id"]
        connected, ended = threading.Event(), threading.Event()

        def follow() -> None:
            headers = {"Accept": "text/event-stream"}
            with c.stream("GET", f"/api/v1/runs/{run_id}/events", headers=headers) as s:
                connected.set()
                for _ in s.iter_lines():
                    pass
            ended.set()

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        assert connected.wait(timeout=30)
        assert c.get(f"/api/v1/runs/{run_id}").json()["status"] == "queued"
    finally:
        server.stop()  # SIGTERM: the stream ends, the server exits without a traceback
    follower.join(timeout=30)
    assert ended.is_set()
    assert "graceful shutdown exceeded" not in server.log.read_text()
    assert token not in server.log.read_text()
