"""`command` actions: run an argv (never through a shell), `with` as JSON on stdin.

The process runs in the saga file's folder (`StepContext.base_dir`); an argv[0] with a slash
(`./bin/notify`) is resolved against that folder, a bare name (`python3`) is looked up on PATH.
Its environment is ours plus `SAGAC_IDEMPOTENCY_KEY` (absent when the step has no key),
`SAGAC_RUN_ID`, `SAGAC_SAGA`, `SAGAC_STEP_ID`, `SAGAC_ATTEMPT` and `SAGAC_COMPENSATION`
(`1` when undoing).

Exit 0: stdout parsed as JSON, or `{"stdout": "<text>"}` when it is not JSON (empty stdout gives
null). Any other exit, a signal, or an executable that cannot be started is `COMMAND_FAILED`
with `detail = {"exit_code": N, "stderr_tail": "..."}`.

Output is read as it comes, never whole: stdout up to `READ_LIMIT` (8 MiB; past it the process
group is stopped and the attempt fails with RESULT_TOO_LARGE), and only the last few KB of
stderr, so an attempt's memory stays bounded whatever the command prints.

Cancellation (the executor's timeout, a cancelled run): the process and everything it started
(it leads its own process group) get SIGTERM, then SIGKILL after `KILL_GRACE` seconds, and are
reaped before the CancelledError goes on. The group's id is handed to `StepContext.on_process`
as soon as it started: the executor journals it (`process_started`), so that a resume after
sagac itself was killed ends a group left behind before running the step again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sagac.compiler.ir import CommandAction
from sagac.runtime.actions.context import StepContext
from sagac.runtime.actions.limits import READ_LIMIT, too_large

from sagac.errors import StepError

__all__ = ["KILL_GRACE", "run_command"]

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL on cancellation
STDERR_TAIL = 2000  # characters of stderr kept for the report
CHUNK = 64 * 1024  # bytes read from a pipe at a time
_POSIX = os.name == "posix"


async def run_command(spec: CommandAction, args: Any, ctx: StepContext) -> Any:
    if not spec.argv:
        raise StepError("COMMAND_FAILED", "command action has an empty argv")
    argv = [_executable(spec.argv[0], ctx.base_dir), *spec.argv[1:]]
    stdin = json.dumps({} if args is None else args).encode()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ctx.base_dir,
            env=_environment(ctx),
            start_new_session=_POSIX,  # its own process group: cancellation stops its children
        )
    except FileNotFoundError:
        where = f" (looked in {ctx.base_dir})" if os.sep in argv[0] and ctx.base_dir else ""
        raise StepError(
            "COMMAND_FAILED",
            f"executable not found: {spec.argv[0]}{where}",
            {"exit_code": None, "stderr_tail": ""},
        ) from None
    except PermissionError:
        raise StepError(
            "COMMAND_FAILED",
            f"not executable: {spec.argv[0]} (check its mode and #! line)",
            {"exit_code": None, "stderr_tail": ""},
        ) from None

    stdout, stderr = await _collect(proc, stdin, spec.argv[0], ctx.on_process)
    code = proc.returncode
    assert code is not None  # _collect waited for the exit
    if code != 0:
        tail = _tail(stderr.decode(errors="replace"))
        how = f"exit {code}" if code > 0 else f"killed by {_signal_name(-code)}"
        last = tail.strip().splitlines()[-1] if tail.strip() else "(no stderr)"
        raise StepError(
            "COMMAND_FAILED",
            f"{spec.argv[0]}: {how}: {last}",
            {"exit_code": code, "stderr_tail": tail},
        )
    text = stdout.decode(errors="replace")
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"stdout": text}


async def _collect(
    proc: asyncio.subprocess.Process,
    stdin: bytes,
    name: str,
    on_process: Callable[[int], Awaitable[None]] | None,
) -> tuple[bytes, bytes]:
    """Report the process group (`on_process`), feed stdin, read stdout (up to READ_LIMIT) and
    the tail of stderr as they come, and wait for the exit. Past the limit, when the report
    fails, or on cancellation, the process group is stopped first."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out_task = asyncio.ensure_future(_read_limited(proc.stdout, READ_LIMIT))
    err_task = asyncio.ensure_future(_read_tail(proc.stderr, STDERR_TAIL * 4))
    feed_task = asyncio.ensure_future(_feed(proc.stdin, stdin))
    tasks: list[asyncio.Future[Any]] = [out_task, err_task, feed_task]
    try:
        if on_process is not None:
            await on_process(proc.pid)  # it leads its own group: the group id is its pid
        stdout = await out_task
        if stdout is None:
            await _stop(proc)
            raise too_large(
                f"the stdout of {name}", "print only what later steps need (the result is stdout)"
            )
        stderr = await err_task
        await feed_task
        await proc.wait()
    except BaseException:
        for t in tasks:
            t.cancel()
        try:
            await _stop(proc)  # first: a second cancellation must not skip it
        finally:
            await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return stdout, stderr


async def _read_limited(stream: asyncio.StreamReader, limit: int) -> bytes | None:
    """Everything up to EOF, or None as soon as it is more than `limit` bytes."""
    out = bytearray()
    while chunk := await stream.read(CHUNK):
        if len(out) + len(chunk) > limit:
            return None
        out += chunk
    return bytes(out)


async def _read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    """The last `keep` bytes up to EOF (stderr: only its end is reported)."""
    tail = bytearray()
    while chunk := await stream.read(CHUNK):
        tail += chunk
        del tail[:-keep]
    return bytes(tail)


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    """Write the arguments; a process that exits without reading them is not an error."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.close()


def _executable(program: str, base_dir: Path | None) -> str:
    if base_dir is not None and os.sep in program and not os.path.isabs(program):
        return str(Path(base_dir) / program)
    return program


def _environment(ctx: StepContext) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SAGAC_IDEMPOTENCY_KEY", None)  # never inherit a parent run's key
    if ctx.idempotency_key is not None:
        env["SAGAC_IDEMPOTENCY_KEY"] = ctx.idempotency_key
    env["SAGAC_RUN_ID"] = ctx.run_id
    env["SAGAC_SAGA"] = ctx.saga
    env["SAGAC_STEP_ID"] = ctx.step_id
    env["SAGAC_ATTEMPT"] = str(ctx.attempt)
    env["SAGAC_COMPENSATION"] = "1" if ctx.compensation else "0"
    if ctx.item_index is not None:
        env["SAGAC_ITEM_INDEX"] = str(ctx.item_index)
    else:
        env.pop("SAGAC_ITEM_INDEX", None)
    return env


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Terminate, then kill after a grace period, and reap; a second cancellation while
    waiting skips straight to the kill."""
    if proc.returncode is not None:
        return
    try:
        _signal(proc, signal.SIGTERM)
        try:
            async with asyncio.timeout(KILL_GRACE):
                await proc.wait()
        except TimeoutError:
            _signal(proc, signal.SIGKILL)
            await proc.wait()
    except BaseException:
        _signal(proc, signal.SIGKILL)
        raise
    finally:
        # The group may outlive its leader (a child that ignored SIGTERM).
        _signal(proc, signal.SIGKILL, group_only=True)


def _signal(proc: asyncio.subprocess.Process, sig: int, *, group_only: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if _POSIX:
            os.killpg(proc.pid, sig)
        elif not group_only:
            proc.send_signal(sig)


def _tail(text: str) -> str:
    return text if len(text) <= STDERR_TAIL else "…" + text[-STDERR_TAIL:]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
