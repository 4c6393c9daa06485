"""Process groups of command actions: journaled when they start, ended on resume if left behind.

A command action runs in its own process group (it leads a new session), so a cancelled attempt
can stop it and everything it started. When sagac itself is killed (SIGKILL, the OOM killer),
nothing stops the group: it goes on while a resume re-runs its
step. So each group is journaled when it starts (`process_started`: `identity(pid)`), and a
resume first ends the groups of attempts its journal never saw end (`end_orphans`), before
anything runs again. A group of an attempt that ended is left alone: what a command that
completed left running in the background is its own business.

A process group id is a process id, and ids are reused. A process is signalled only when all of
these hold (Linux, via /proc): it is on the host and in the boot the group was recorded on; its
process group is the recorded one; it started no earlier than the recorded leader; and it is
the recorded leader itself (same start time) or it carries the run's id in its environment
(`SAGAC_RUN_ID`, which every command action inherits). It is signalled through a pidfd opened
before the last check, so an id reused between the check and the signal is never hit. What
remains possible: a process of the group that cleared its environment after its leader exited
is not ended (it is left running: a stranger is never killed). Without /proc (not Linux),
nothing is ended.

This module never signals a process it has not matched, and never a whole group by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["end_orphans", "identity"]

PROC = "/proc"
GRACE = 2.0  # seconds between SIGTERM and SIGKILL, as for a cancelled attempt


@functools.cache
def _boot_id() -> str | None:
    try:
        with open(f"{PROC}/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks since boot) of a live process."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()  # after "pid (comm) ", which may hold spaces
    try:
        return fields[0].decode(), int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def identity(pid: int) -> dict[str, Any]:
    """What `process_started` records of a group whose leader is `pid`."""
    stat = _stat(pid)
    return {
        "pgid": pid,
        "host": socket.gethostname(),
        "boot": _boot_id(),
        "start": stat[2] if stat is not None else None,
    }


def _ours(pid: int, record: Mapping[str, Any], marker: bytes) -> bool:
    stat = _stat(pid)
    if stat is None or stat[0] in ("Z", "X") or stat[1] != record["pgid"]:
        return False
    start = record.get("start")
    if start is not None and stat[2] < start:
        return False
    if pid == record["pgid"] and start is not None and stat[2] == start:
        return True  # the recorded leader itself
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def _members(pgid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for name in os.listdir(PROC):
            if name.isdigit():
                stat = _stat(int(name))
                if stat is not None and stat[1] == pgid:
                    out.append(int(name))
    return out


class _Target:
    """A matched process, held by a pidfd where the system has them."""

    def __init__(self, pid: int, record: Mapping[str, Any], marker: bytes) -> None:
        self.pid = pid
        self.fd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self.fd = os.pidfd_open(pid)
        self.ok = _ours(pid, record, marker)  # checked after the pidfd pinned the process

    def send(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            else:
                os.kill(self.pid, sig)

    def alive(self) -> bool:
        stat = _stat(self.pid)
        return stat is not None and stat[0] not in ("Z", "X")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


async def end_orphans(run_id: str, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """End the process groups of `records` (`process_started` events) that are still alive and
    provably this run's: SIGTERM, then SIGKILL after GRACE. Returns, per group ended, its step,
    attempt, group id and the pids signalled."""
    if not records or not os.path.isdir(f"{PROC}/self"):
        return []
    host, boot = socket.gethostname(), _boot_id()
    marker = b"SAGAC_RUN_ID=" + run_id.encode()
    found: list[tuple[Mapping[str, Any], list[_Target]]] = []
    for record in records:
        if record.get("host") != host or record.get("boot") != boot or not record.get("pgid"):
            continue
        targets = [_Target(pid, record, marker) for pid in _members(record["pgid"])]
        for t in targets:
            if not t.ok:
                t.close()
        targets = [t for t in targets if t.ok]
        if targets:
            found.append((record, targets))
    if not found:
        return []
    everyone = [t for _, targets in found for t in targets]
    try:
        for t in everyone:
            t.send(signal.SIGTERM)
        until = time.monotonic() + GRACE
        while any(t.alive() for t in everyone) and time.monotonic() < until:
            await asyncio.sleep(0.02)
        for t in everyone:
            if t.alive():
                t.send(signal.SIGKILL)
        until = time.monotonic() + GRACE
        while any(t.alive() for t in everyone) and time.monotonic() < until:
            await asyncio.sleep(0.02)
    finally:
        for t in everyone:
            t.close()
    ended = []
    for record, targets in found:
        entry = {k: record[k] for k in ("step", "item_index", "attempt", "pgid") if k in record}
        if record.get("compensation"):
            entry["compensation"] = True
        entry["pids"] = sorted(t.pid for t in targets)
        ended.append(entry)
    return ended
