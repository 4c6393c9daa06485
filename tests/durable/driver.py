"""A fork server for crash tests: one real process that has imported sagac, and forks a child
per command so that each crash costs milliseconds, not an interpreter start.

Reads one JSON command per line on stdin, answers one JSON line on stdout:
  {"db", "saga", "input", "run_id", "resume", "kill_at", "env", "out", "concurrent"}
The child sets `env`, runs (or resumes) the saga against the SQLite journal `db` and SIGKILLs
itself when the `kill_at`-th event is delivered (events are delivered after their journal write
is durable). With `concurrent: N` it starts N runs at once (run ids `<run_id>-<i>`) and appends
every delivered `run_id seq` to `out`. Without a kill it writes {"events", "status"} to `out`.
The answer is {"signal": SIGNUM or null, "exit": CODE or null}.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from sagac.runtime import resume as durable
from sagac.runtime.store.sqlite import SqliteStore


def child(cmd: dict[str, Any]) -> None:
    os.environ.update(cmd.get("env") or {})
    count = 0
    kill_at = cmd.get("kill_at")
    out_fd = os.open(cmd["out"], os.O_WRONLY | os.O_CREAT | os.O_APPEND) if cmd.get("out") else -1

    def on_event(event: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        if cmd.get("concurrent") and out_fd >= 0:
            os.write(out_fd, f"{event['run_id']} {event['seq']}\n".encode())
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    async def main() -> str:
        store = SqliteStore(cmd["db"])
        try:
            if cmd.get("concurrent"):
                reports = await asyncio.gather(
                    *[
                        durable.start(
                            cmd["saga"],
                            cmd["input"],
                            store=store,
                            run_id=f"{cmd['run_id']}-{i}",
                            on_event=on_event,
                        )
                        for i in range(cmd["concurrent"])
                    ]
                )
                return ",".join(sorted({r.status for r in reports}))
            if cmd.get("resume"):
                report = await durable.resume(cmd["run_id"], store=store, on_event=on_event)
            else:
                report = await durable.start(
                    cmd["saga"], cmd["input"], store=store, run_id=cmd["run_id"], on_event=on_event
                )
            return report.status
        finally:
            await store.close()

    status = asyncio.run(main())
    if out_fd >= 0 and not cmd.get("concurrent"):
        os.write(out_fd, json.dumps({"events": count, "status": status}).encode())


def serve() -> None:
    for line in sys.stdin:
        cmd = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                child(cmd)
            except BaseException as e:  # report, never fall back into the server loop
                print(f"driver child failed: {e!r}", file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        answer = {
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        }
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    serve()
