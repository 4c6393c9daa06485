"""JSON from the command line (`--input JSON|@FILE|-`, `sagac signal --data`), shared by `run`,
`submit` and `signal`."""

from __future__ import annotations

import json
import sys
from typing import Any

from sagac.errors import InputError, UsageError

MAX_INPUT_BYTES = 64 * 1024 * 1024  # read at most this (+1 byte) of an input file or stdin


def add_input_option(parser: Any, more: str = "") -> None:
    """`--input JSON|@FILE|-` on `parser`; `more` ends its help."""
    parser.add_argument(
        "--input",
        metavar="JSON|@FILE|-",
        default=None,
        help="the run's input: JSON text, @path to a JSON file, or - to read it from stdin "
        f"(at most {MAX_INPUT_BYTES // (1024 * 1024)} MiB){more}",
    )


def read_input(text: str, what: str = "input") -> Any:
    """The run's input from `--input` (or `what`: a signal's data): JSON text, `@path` (a
    file) or `-` (stdin), each read with a limit so that /dev/zero or an endless pipe ends in a
    message, not a MemoryError."""
    from sagac import TooLarge, read_limited, read_stream

    if text == "-" or text.startswith("@"):
        where = "stdin" if text in ("-", "@-") else f"the {what} file {text[1:]}"
        try:
            if text in ("-", "@-"):
                raw = read_stream(sys.stdin.buffer, MAX_INPUT_BYTES)
            else:
                raw = read_limited(text[1:], MAX_INPUT_BYTES)
        except TooLarge:
            limit = MAX_INPUT_BYTES // (1024 * 1024)
            raise InputError(f"{where} holds more than {limit} MiB of {what}") from None
        except OSError as e:
            raise UsageError(f"cannot read {where}: {e.strerror or e}") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InputError(f"{where} is not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"the {what} is not JSON: {e}", problems=[str(e)]) from None
