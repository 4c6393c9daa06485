"""What an action reads is bounded (issue 10, item 6): an endless http body (chunked, or gzip
that inflates without end) and a command printing without end fail the step with
RESULT_TOO_LARGE, and the peak memory of the `sagac run` process stays within a few MB of the
read limit. Each case runs a real `sagac run` in a child of a small wrapper, which reports the
child's peak RSS (`getrusage(RUSAGE_CHILDREN)`) and caps its address space, so that a reader
without a limit fails with a MemoryError instead of filling the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

MIB = 1024 * 1024
READ_LIMIT = 8 * MIB  # runtime/actions/limits.py, documented in docs/runtime.md
ADDRESS_SPACE = 1536 * MIB  # far above a bounded run, far below what no limit would use

MEASURE = """
import json, resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
p = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=120)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"code": p.returncode, "out": p.stdout, "err": p.stderr[-3000:], "peak": peak}))
"""


def measured_run(saga: Path) -> dict[str, Any]:
    """`sagac run SAGA --json` in a capped child: exit code, report, stderr, peak RSS."""
    argv = [sys.executable, "-m", "sagac", "run", str(saga), "--store", "memory", "--json"]
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(ADDRESS_SPACE), *argv],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=saga.parent,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


class _Endless(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path == "/small":
            body = b'{"ok": true}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        gzip = self.path == "/gzip"
        if gzip:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = b"[" + b"1," * 32767
        try:
            while True:  # until the client goes away
                data = (
                    packer.compress(b"\0" * MIB) + packer.flush(zlib.Z_SYNC_FLUSH)
                    if gzip
                    else block
                )
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError:
            pass


@pytest.fixture
def endless_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def saga_file(tmp_path: Path, name: str, action: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"saga: {name}\nactions:\n  read: {action}\nsteps:\n  - {{id: read, action: read}}\n"
    )
    return path


def assert_bounded(run: dict[str, Any], baseline: dict[str, Any]) -> None:
    assert run["code"] == 1, run["err"]
    report = json.loads(run["out"])
    assert report["failure"]["code"] == "RESULT_TOO_LARGE", report["failure"]
    grown = run["peak"] - baseline["peak"]
    assert grown < READ_LIMIT + 8 * MIB, f"peak RSS grew by {grown / MIB:.0f} MiB"
    print(f"peak RSS {run['peak'] / MIB:.0f} MiB, {grown / MIB:.1f} MiB over a small run")


def test_an_endless_http_body_stops_at_the_read_limit(tmp_path: Path, endless_server: str) -> None:
    base = measured_run(
        saga_file(tmp_path, "small", f'{{http: {{method: GET, url: "{endless_server}/small"}}}}')
    )
    assert base["code"] == 0, base["err"]
    for path in ("/chunked", "/gzip"):
        action = f'{{http: {{method: GET, url: "{endless_server}{path}"}}}}'
        assert_bounded(measured_run(saga_file(tmp_path, path[1:], action)), base)


def test_a_command_printing_without_end_is_stopped_at_the_read_limit(tmp_path: Path) -> None:
    small = f'{{command: ["{sys.executable}", "-c", "print(1)"]}}'
    base = measured_run(saga_file(tmp_path, "small", small))
    assert base["code"] == 0, base["err"]
    endless = (
        f'{{command: ["{sys.executable}", "-c", '
        "\"import sys\\nwhile True: sys.stdout.write('1,' * 32768)\"]}"
    )
    run = measured_run(saga_file(tmp_path, "endless", endless))
    assert_bounded(run, base)
