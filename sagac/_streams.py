"""Output that can never end a run: stdout and stderr that drop what a closed reader misses.

`sagac run SAGA 2>&1 | head -1` closes the pipe after one line. A write after that raises
BrokenPipeError; raised from the progress printer (an `on_event` callback), it would stop the
run like a crash, and raised at the interpreter's final flush it would replace the run's exit
code. `guarded_output()` wraps `sys.stdout` and `sys.stderr` for the command's lifetime: the
first write or flush that fails points the stream's file descriptor at /dev/null (so nothing is
buffered for a reader that is gone, and the final flush succeeds) and every later write is
dropped. The run goes on, its journal is complete, and the exit code is the run's own.
It must never swallow anything but output errors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["GuardedStream", "guarded_output"]


class GuardedStream:
    """A text stream whose `write` and `flush` never raise an OSError: once one fails (a
    closed pipe, a terminal that went away, a full disk), the output is dropped."""

    def __init__(self, stream: IO[str], name: str) -> None:
        self._stream = stream
        self._name = name
        self.lost: OSError | None = None  # why output stopped, once it has

    def write(self, text: str) -> int:
        if self.lost is None:
            try:
                return self._stream.write(text)
            except OSError as e:
                self._lose(e)
        return len(text)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self._stream.flush()
            except OSError as e:
                self._lose(e)

    def _lose(self, error: OSError) -> None:
        self.lost = error
        # Whatever the stream still buffers goes nowhere, and so does the final flush.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        if error.errno not in (errno.EPIPE, None) and self._name == "stdout":
            # Not a reader that left (a full disk, an I/O error): say so once, where possible.
            with contextlib.suppress(Exception):
                print(f"sagac: warning: output to {self._name} lost: {error}", file=sys.stderr)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_output() -> Iterator[None]:
    """`sys.stdout` and `sys.stderr` guarded for the block; flushed (guarded) on the way out."""
    saved = sys.stdout, sys.stderr
    out, err = GuardedStream(saved[0], "stdout"), GuardedStream(saved[1], "stderr")
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = saved
