"""`sagac validate`, `sagac compile`, `sagac schema`: the compiler's commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from sagac.errors import ExitCode

from ._console import print_diagnostics

if TYPE_CHECKING:  # the compiler loads when a command runs, not for `--help`
    pass


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check saga files like a compiler")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    add_no_import(p)
    p.set_defaults(func=validate)

    p = sub.add_parser("compile", help="print the execution plan of a saga as JSON")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    add_no_import(p)
    p.set_defaults(func=compile_)

    p = sub.add_parser("schema", help="print the JSON Schema of the saga language")
    p.add_argument("--plan", action="store_true", help="the schema of `sagac compile` output")
    p.set_defaults(func=schema)


def add_no_import(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-import",
        action="store_true",
        help="do not import python action modules to check their targets and arguments "
        "(E026); importing runs the modules' top-level code. Use it when the modules live "
        "elsewhere than the saga's folder and sys.path",
    )


def validate(args: argparse.Namespace) -> int:
    from sagac import Severity, compile_file

    results = [compile_file(f, imports=not args.no_import) for f in args.files]
    print_diagnostics(results, args.format)
    failed = [c for c in results if not c.ok(strict=args.strict)]
    if args.format == "text":
        n_err = sum(d.level is Severity.ERROR for c in results for d in c.diagnostics)
        n_warn = sum(d.level is Severity.WARNING for c in results for d in c.diagnostics)
        status = "ok" if not failed else "failed"
        print(
            f"{status}: {len(results)} file(s), {n_err} error(s), {n_warn} warning(s)",
            file=sys.stderr if failed else sys.stdout,
        )
    return ExitCode.INVALID_DEFINITION if failed else ExitCode.OK


def compile_(args: argparse.Namespace) -> int:
    from sagac import compile_file

    c = compile_file(args.file, imports=not args.no_import)
    if c.plan is None or not c.ok(strict=args.strict):
        print_diagnostics([c], "text")
        return ExitCode.INVALID_DEFINITION
    if c.diagnostics:
        print_diagnostics([c], "text")
    print(c.plan.model_dump_json(indent=2, by_alias=True))
    return ExitCode.OK


def schema(args: argparse.Namespace) -> int:
    if args.plan:
        from sagac import Plan

        print(json.dumps(Plan.model_json_schema(by_alias=True), indent=2))
    else:
        from sagac import saga_schema

        print(json.dumps(saga_schema(), indent=2))
    return ExitCode.OK
