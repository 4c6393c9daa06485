"""The `sagac` command: a thin driver over the public API (`sagac.__all__`).

It parses arguments, calls one function, prints, and maps outcomes to the exit codes of the
spec (section 8), each a member of `sagac.errors.ExitCode`. Commands live in
`sagac.commands.*`, each registering its own sub-parser. A `SagacError` becomes a one-line
message and its exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sagac.errors import ExitCode, SagacError, UsageError, exit_codes_epilog

# Each module exposes `register(subparsers)`; the sub-parser's `func(args) -> int` runs it.
COMMAND_MODULES = (
    "compile",
    "run",
    "durable",
    "callback",
    "signal",
    "workers",
    "groups",
    "tokens",
    "inspect",
    "diagram",
    "store",
    "serve",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    from sagac import __version__

    parser = _Parser(
        prog="sagac",
        description="Compile and run declarative YAML sagas.",
        epilog=exit_codes_epilog(),
    )
    parser.add_argument("--version", action="version", version=f"sagac {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"sagac.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"sagac.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from sagac._streams import guarded_output

    with guarded_output():  # a closed stdout or stderr drops output, never ends a run
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return ExitCode.USAGE
        code: int = args.func(args)
        return code
    except SagacError as e:
        print(f"sagac: error[{e.code}]: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("sagac: interrupted", file=sys.stderr)
        return ExitCode.SIGINT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
