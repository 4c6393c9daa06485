"""A run's input checked against its saga's `input` schema (JSON Schema 2020-12).

`validate_input` is used before a run starts (`api`, `submit`, the CLI) and by a `call` for its
child's input (`calls`); `input_hash` is the digest a run-level idempotency key keeps. This
module must never run anything: it only reads the plan and the data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sagac.compiler.plan import Plan

from sagac.errors import InputError


def validate_input(plan: Plan, input: Any) -> None:
    """Raise InputError naming every way `input` breaks the saga's `input` schema."""
    schema = plan.definition.input_schema
    if schema is None:
        return
    from jsonschema import Draft202012Validator, FormatChecker

    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    problems = []
    for err in sorted(validator.iter_errors(input), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        problems.append(f"input/{where}: {err.message}" if where != "(root)" else err.message)
    if problems:
        raise InputError(
            f"the input does not match the saga's input schema ({len(problems)} problem(s)): "
            + "; ".join(problems),
            problems=problems,
        )


def input_hash(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
