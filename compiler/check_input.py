"""E023: the saga's `input:` must itself be a valid JSON Schema, or no run could be checked.

Only the schema is checked here, never a run's input (the runtime validates that).
"""

from __future__ import annotations

import jsonschema

from . import ir
from .check_facts import diag
from .diagnostics import Diagnostic
from .loader import Document


def check_input_schema(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E023: `input:` must itself be a valid JSON Schema, or no run could be checked."""
    schema = saga.input_schema
    if schema is None:
        return []
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    out = []
    for err in cls(cls.META_SCHEMA).iter_errors(schema):
        path = tuple(err.absolute_path)
        message = err.message
        if path and path[-1] == "type":
            message = (
                f"{err.instance!r} is not a JSON Schema type "
                "(string, number, integer, boolean, object, array, null)"
            )
        where = ".".join(str(p) for p in ("input", *path))
        out.append(
            diag(
                doc,
                "E023",
                f"`{where}` is not valid JSON Schema: {message}",
                ("input", *path),
                "`input:` is a JSON Schema (draft 2020-12) for the run's input",
            )
        )
    return out
