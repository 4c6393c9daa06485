"""E023: the saga's `input:` and each `wait`'s `schema:` must be valid JSON Schemas, or no run's
input (no signal's payload) could be checked.

Only the schemas are checked here, never a run's input or a signal (the runtime validates them).
"""

from __future__ import annotations

from typing import Any

import jsonschema

from . import ir
from .check_facts import diag, saga_nodes
from .diagnostics import Diagnostic
from .loader import Document


def check_input_schema(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E023: `input:`, and the `schema:` of every `wait`, must be valid JSON Schemas."""
    out = []
    if saga.input_schema is not None:
        out += _check_schema(
            saga.input_schema,
            doc,
            ("input",),
            "",
            "`input:` is a JSON Schema (draft 2020-12) for the run's input",
        )
    for n in saga_nodes(saga):
        if isinstance(n, ir.WaitNode) and n.payload_schema is not None:
            out += _check_schema(
                n.payload_schema,
                doc,
                (*n.path, "schema"),
                f" (the payload of wait {n.id!r})",
                "`schema:` is a JSON Schema (draft 2020-12) for the signal's payload",
            )
    return out


def _check_schema(
    schema: dict[str, Any], doc: Document, base: ir.Path, of: str, hint: str
) -> list[Diagnostic]:
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
        where = ".".join(str(p) for p in (base[-1], *path))
        out.append(
            diag(
                doc,
                "E023",
                f"`{where}`{of} is not valid JSON Schema: {message}",
                (*base, *path),
                hint,
            )
        )
    return out
