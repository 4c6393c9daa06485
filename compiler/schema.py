"""The JSON Schema layer: shape errors with places, and "did you mean" for unknown keys.

The schema (`schemas/saga.schema.json`, shipped as `sagac.schemas`) is the single description
of the language's shape; editors use it too. This module only turns jsonschema's errors into
diagnostics that point at the offending YAML node.
"""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from .diagnostics import Diagnostic
from .loader import Document


@cache
def saga_schema() -> dict[str, Any]:
    """The language's JSON Schema (2020-12)."""
    text = (resources.files("sagac.schemas") / "saga.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = saga_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _unknown_keys(error: ValidationError) -> list[str]:
    allowed = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
    patterns = error.schema.get("patternProperties", {}) if isinstance(error.schema, dict) else {}
    inst = error.instance if isinstance(error.instance, dict) else {}
    return [
        k
        for k in inst
        if k not in allowed and not any(re.search(p, str(k)) for p in patterns)
    ]


def _where(path: tuple[str | int, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "document"


def _leaves(error: ValidationError) -> list[ValidationError]:
    """For anyOf/oneOf, the errors of the alternative that came closest."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        best = best_match(error.context)
        return _leaves(best) if best is not None else [error]
    return [error]


def check_schema(doc: Document) -> list[Diagnostic]:
    """Every shape problem of `doc`, each at its node, at most one per place."""
    if not isinstance(doc.data, dict):
        return [
            Diagnostic(
                "E010",
                "a saga file must be a mapping with `saga:` and `steps:`",
                doc.file,
                hint="start the file with `saga: my_saga` and a `steps:` list",
            )
        ]
    out: list[Diagnostic] = []
    seen: set[tuple[tuple[str | int, ...], str]] = set()
    for top in _validator().iter_errors(doc.data):
        for err in _leaves(top):
            path = tuple(err.absolute_path)
            if err.validator == "additionalProperties":
                allowed = sorted(err.schema.get("properties", {}))
                for key in _unknown_keys(err):
                    if ((*path, key), "E011") in seen:
                        continue
                    seen.add(((*path, key), "E011"))
                    mark = doc.source.at((*path, key), key=True)
                    guess = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                    hint = (
                        f"did you mean `{guess[0]}`?"
                        if guess
                        else f"allowed here: {', '.join(allowed)}"
                    )
                    out.append(
                        Diagnostic(
                            "E011",
                            f"unknown key {key!r} in {_where(path)}",
                            doc.file,
                            mark.line,
                            mark.column,
                            hint,
                        )
                    )
                continue
            if (path, "E010") in seen:
                continue
            seen.add((path, "E010"))
            mark = doc.source.at(path)
            message = err.message
            description = err.schema.get("description") if isinstance(err.schema, dict) else None
            out.append(
                Diagnostic(
                    "E010",
                    f"{_where(path)}: {message}",
                    doc.file,
                    mark.line,
                    mark.column,
                    description if isinstance(description, str) else None,
                )
            )
    return out
