"""Files the commands write: `-o` outputs (diagrams, reports) and `--events` logs.

An output is written to a temporary file beside it and renamed over it, so a failed write
(a full disk, a missing folder) never leaves a truncated file or loses the previous one. A
file that cannot be written is `OutputError`: exit 73 (sysexits' EX_CANTCREAT), a one-line
message naming the path, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from sagac.errors import OutputError


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def write_output(path: str | Path, text: str, what: str = "the output") -> None:
    """Write `text` to `path` whole or not at all (a temporary file, then a rename)."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {what} to {target}: it is a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {what} to {target}: {_reason(e)}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {what} to {target}: {_reason(e)}") from None


def _mode_for(target: Path) -> int:
    """The mode the file would have had if opened directly: its own when it exists, else
    0666 less the umask (mkstemp makes 0600)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


class EventsFile:
    """`--events FILE`: every event as a JSON line, written as it happens (so the file can be
    followed while the run goes on). Opening it fails before the run starts; a write that
    fails later (a full disk) stops the file, not the run: `close` warns that it is cut short."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.error: OSError | None = None
        try:
            self.file: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise OutputError(f"cannot write events to {path}: {_reason(e)}") from None

    def write(self, event: dict[str, Any]) -> None:
        if self.error is not None:
            return
        try:
            self.file.write(json.dumps(event, default=str) + "\n")
        except OSError as e:
            self.error = e

    def close(self) -> None:
        try:
            self.file.close()
        except OSError as e:
            self.error = self.error or e
        # A reader that went away (a closed pipe) is not worth a warning: the journal has it all.
        if self.error is not None and self.error.errno != errno.EPIPE:
            print(
                f"sagac: warning: the events file {self.path} is incomplete: {_reason(self.error)}",
                file=sys.stderr,
            )
