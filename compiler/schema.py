"""The JSON Schema layer: shape errors with places, in words a saga author understands.

The schema (`schemas/saga.schema.json`, shipped as `sagac.schemas`) is the single description
of the language's shape; editors use it too. This module turns jsonschema's errors into
diagnostics that point at the offending YAML node, with "did you mean" for unknown keys.

Speed: jsonschema walks a 10,000-step saga in seconds, so a large document is first checked by
a validator that fastjsonschema generates from the same schema (once per process); only a
document it rejects is walked by jsonschema, which finds and explains every error. The
verdicts agree (tests check it); jsonschema is the reference whenever they might not.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from .diagnostics import Diagnostic
from .loader import Document

# Below this many YAML nodes jsonschema is quicker than generating the fast validator.
FAST_THRESHOLD = 64 * 1024  # bytes of YAML above which the generated validator pays off

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}

# What each named pattern of the schema means, keyed by its `$defs` entry.
_PATTERN_WORDS = {
    "id": ("id", "ids are snake_case: ^[a-z][a-z0-9_]*$"),
    "actionName": ("action name", "action names are snake_case: ^[a-z][a-z0-9_]*$"),
    "duration": ("duration", "durations are a number and a unit: 250ms, 30s, 5m, 48h, 7d"),
    "envName": ("variable name", "environment variable names are UPPER_SNAKE_CASE"),
    "errorCode": ("error code", "error codes are UPPER_SNAKE_CASE, e.g. PAYMENT_DECLINED"),
    "pythonAction": ("python target", 'a python action is "package.module:function"'),
}


@cache
def saga_schema() -> dict[str, Any]:
    """The language's JSON Schema (2020-12)."""
    text = (resources.files("sagac.schemas") / "saga.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def reference_validator() -> jsonschema.Draft202012Validator:
    """The jsonschema validator of the saga schema: slow, and the reference for every verdict."""
    # Not checked against the meta-schema here (that alone cost more than a small saga's
    # whole compile): the shipped schema is, by the tests.
    return jsonschema.Draft202012Validator(saga_schema())


def _draft7(node: Any) -> Any:
    """The schema in draft-07 terms, for fastjsonschema (which predates 2020-12).

    Only the 2020-12 keywords the saga schema uses are translated; `examples` are dropped to
    keep the generated code small.
    """
    if isinstance(node, list):
        return [_draft7(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _draft7(v) for k, v in node.items() if k != "examples"}
    if "prefixItems" in out:
        out["additionalItems"] = out.get("items", True)
        out["items"] = out.pop("prefixItems")
    if "dependentRequired" in out:
        out["dependencies"] = out.pop("dependentRequired")
    if "$schema" in out:
        out["$schema"] = "http://json-schema.org/draft-07/schema#"
    return out


class SchemaShapeError(Exception):
    """The shipped schema no longer has the shape this module reads: a bug in the schema or here.

    Raised, never worked around: the fast validator's rewrite is valid only for that shape.
    """


@dataclass(frozen=True, slots=True)
class NodeUnion:
    """The schema's node union: `$defs.node`, an if/then/else chain of wrapper nodes
    (`{parallel: ...}`, each a mapping with that one key) that ends in the bare node."""

    wrappers: dict[str, str]  # wrapper key -> the `$defs` entry of what it wraps, in chain order
    bare: str  # the `$defs` entry of a node without a wrapper (a task step)


def _def_name(ref: Any) -> str:
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return ref.removeprefix("#/$defs/")
    raise SchemaShapeError(f"expected a `$ref` to a `$defs` entry, got {ref!r}")


def node_union(schema: dict[str, Any]) -> NodeUnion:
    """The node union of `schema` (the shipped one, or its draft-07 form), found by what each
    level of the chain is, not by where it sits; raises `SchemaShapeError` on any other shape."""
    level = schema["$defs"]["node"]
    wrappers: dict[str, str] = {}
    while "if" in level:
        required = level["if"].get("required")
        then = level.get("then", {})
        props = then.get("properties", {})
        if not (isinstance(required, list) and len(required) == 1 and set(props) == {*required}):
            raise SchemaShapeError(f"a level of `$defs.node` is not a wrapper: {level['if']!r}")
        if then.get("additionalProperties") is not False:
            raise SchemaShapeError(f"the `{required[0]}` wrapper allows other keys beside it")
        wrappers[required[0]] = _def_name(props[required[0]].get("$ref"))
        level = level.get("else", {})
    bare = _def_name(level.get("$ref"))
    if "id" not in schema["$defs"][bare].get("required", ()):
        raise SchemaShapeError(f"`$defs.{bare}` (a node without a wrapper) does not require `id`")
    if any(key in schema["$defs"][bare].get("properties", {}) for key in wrappers):
        raise SchemaShapeError(f"`$defs.{bare}` has a wrapper's key among its own")
    return NodeUnion(wrappers, bare)


def _common_case_first(schema: dict[str, Any]) -> dict[str, Any]:
    """The draft-07 schema with two `if`s turned round so that the common case passes them.

    fastjsonschema runs an `if` as try/except: every document node that fails one raises and
    catches an exception. A node is tried as each wrapper (`{parallel: ...}`, ...) before it is
    taken for a task step, and a retry as a list before a single policy; asking first "has it
    an `id`?" and "is it a mapping?" gives the same verdicts, because a wrapper node allows only
    its one key (so a node with `id` is valid exactly when it is a valid task step) and a retry
    is a mapping or a list. `node_union` checks the first condition (and raises if the schema
    no longer meets it), this function the second. Only the fast validator's schema is changed.
    """
    defs = schema["$defs"]
    union = node_union(schema)
    defs["node"] = {
        "if": {"type": "object", "required": ["id"]},
        "then": {"$ref": f"#/$defs/{union.bare}"},
        "else": defs["node"],
    }
    retry = defs["retry"]
    if not (retry.get("type") == ["object", "array"] and retry.get("if") == {"type": "array"}):
        raise SchemaShapeError("`$defs.retry` is no longer `if array then list else policy`")
    defs["retry"] = {
        **retry,
        "if": {"type": "object"},
        "then": retry["else"],
        "else": retry["then"],
    }
    return schema


def fast_definition(schema: dict[str, Any]) -> dict[str, Any]:
    """What the fast validator is generated from: `schema` in draft-07 terms, the common case
    first. Raises `SchemaShapeError` if `schema` is not of the shape that rewrite needs."""
    return _common_case_first(_draft7(schema))


@cache
def fast_validator() -> Callable[[Any], Any]:
    """A generated validator for the saga schema: raises on the first error, says little."""
    definition = fast_definition(saga_schema())
    validate: Callable[[Any], Any] = fastjsonschema.compile(
        definition, detailed_exceptions=False, use_default=False
    )
    return validate


def is_valid_fast(data: Any) -> bool:
    try:
        fast_validator()(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


@cache
def _node_wrappers() -> tuple[str, ...]:
    """The wrapper keys of the schema's node union, in its order."""
    return tuple(node_union(saga_schema()).wrappers)


@cache
def _pattern_words() -> dict[str, tuple[str, str, str | None]]:
    """pattern -> (what it names, the rule in words, an example); ids win over action names."""
    defs = saga_schema().get("$defs", {})
    words: dict[str, tuple[str, str, str | None]] = {
        "^[a-z][a-z0-9_-]{0,63}$": ("saga name", "saga names are ^[a-z][a-z0-9_-]{0,63}$", None)
    }
    for name, (what, rule) in reversed(_PATTERN_WORDS.items()):
        spec = defs.get(name, {})
        pattern, examples = spec.get("pattern"), spec.get("examples") or [None]
        if isinstance(pattern, str):
            words[pattern] = (what, rule, examples[0])
    return words


def _where(path: tuple[str | int, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "document"


def _kind(value: Any) -> str:
    """The JSON Schema type name of a loaded YAML value."""
    if isinstance(value, bool):
        return "boolean"
    for name, cls in (("object", dict), ("array", list), ("string", str), ("integer", int)):
        if isinstance(value, cls):
            return name
    return "number" if isinstance(value, float) else "null"


def _snake(text: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", text.strip())
    s = re.sub(r"[^a-z0-9_]+", "_", s.lower()).strip("_")
    return s if re.match(r"^[a-z]", s) else f"x_{s}"


_UNIT_WORDS = {
    "milliseconds": "ms", "millisecond": "ms", "msec": "ms",
    "seconds": "s", "second": "s", "secs": "s", "sec": "s",
    "minutes": "m", "minute": "m", "mins": "m", "min": "m",
    "hours": "h", "hour": "h", "hrs": "h", "hr": "h",
    "days": "d", "day": "d",
}  # fmt: skip


def _repair(text: str, pattern: str) -> str | None:
    """A spelling of `text` that matches `pattern` (snake case, upper case, `10 seconds` as
    `10s`), if an obvious one exists."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]+)\s*", text)
    candidates = [_snake(text), text.strip().upper().replace("-", "_").replace(" ", "_")]
    if m:
        candidates.append(m.group(1) + _UNIT_WORDS.get(m.group(2).lower(), m.group(2).lower()))
    for c in candidates:
        if c != text and re.search(pattern, c):
            return c
    return None


def _schema(err: ValidationError) -> dict[str, Any]:
    return err.schema if isinstance(err.schema, dict) else {}


Explained = tuple[tuple[str | int, ...], str, str | None]


def _explain(err: ValidationError) -> Iterator[Explained]:
    """(path, message, hint) for one jsonschema error, in the author's terms.

    An error about a mapping key (`propertyNames`) gets the key's own path.
    """
    path = tuple(err.absolute_path)
    if "propertyNames" in err.schema_path and isinstance(err.instance, str):
        path = (*path, err.instance)
    where = _where(path)
    inst: Any = err.instance
    value: Any = err.validator_value
    schema = _schema(err)
    description = schema.get("description")
    hint = description if isinstance(description, str) else None
    v = err.validator
    if v == "required":
        props = schema.get("properties", {})
        for key in value if isinstance(inst, dict) else ():
            if key not in inst:
                desc = props.get(key, {}).get("description")
                yield path, f"{where}: missing required key `{key}`", str(desc) if desc else None
        return
    if v == "pattern" and isinstance(inst, str):
        what, rule, example = _pattern_words().get(value, ("value", f"it must match {value}", None))
        if what == "id" and (path[-1:] == ("action",) or path[-2:-1] == ("actions",)):
            what, rule = "action name", rule.replace("ids", "action names")
        fixed = _repair(inst, value)
        hint = f"e.g. `{fixed or example}`" if fixed or example else hint
        message = f"{where}: {inst!r} is not a valid {what}: {rule}"
    elif v == "enum":
        choices = ", ".join(str(c) for c in value)
        message = f"{where}: {inst!r} is not one of: {choices}"
        guess = difflib.get_close_matches(str(inst), [str(c) for c in value], n=1, cutoff=0.5)
        hint = f"did you mean `{guess[0]}`?" if guess else hint
    elif v == "type":
        types = value if isinstance(value, list) else [value]
        expected = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in types)
        message = f"{where}: expected {expected}, got {_TYPE_NAMES[_kind(inst)]}"
        if _kind(inst) in ("integer", "number") and "duration" in str(hint).lower():
            hint = f"durations are strings with a unit, e.g. `{inst}s`"
    elif v in ("minItems", "minLength") and value == 1:
        message = f"{where}: must not be empty"
    elif v == "minItems":
        message = f"{where}: needs at least {value} items"
    elif v == "minimum":
        message = f"{where}: must be at least {value}, got {inst!r}"
    elif v == "maximum":
        message = f"{where}: must be at most {value}, got {inst!r}"
    elif v == "uniqueItems":
        message = f"{where}: has duplicate items"
    elif v in ("minProperties", "maxProperties") and "python" in schema.get("properties", {}):
        message = f"{where}: an action spec holds exactly one of python, http, command, mock"
    elif v == "dependentRequired" and isinstance(inst, dict):
        for key, needs in value.items():
            for need in needs if key in inst else ():
                if need not in inst:
                    yield path, f"{where}: `{key}` needs `{need}`", hint
        return
    else:
        message = f"{where}: {err.message}"
    yield path, message, hint


def unknown_keys(error: ValidationError) -> list[str]:
    schema = _schema(error)
    allowed = set(schema.get("properties", {}))
    patterns = schema.get("patternProperties", {})
    inst = error.instance if isinstance(error.instance, dict) else {}
    return [k for k in inst if k not in allowed and not any(re.search(p, str(k)) for p in patterns)]


def leaves(error: ValidationError) -> list[ValidationError]:
    """For anyOf/oneOf, the errors of the alternative that came closest."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        best = best_match(error.context)
        return leaves(best) if best is not None else [error]
    return [error]


def _unknown_key_diags(
    doc: Document, err: ValidationError, seen: set[tuple[Any, ...]]
) -> Iterator[Diagnostic]:
    path = tuple(err.absolute_path)
    props = _schema(err).get("properties", {})
    allowed = sorted(props)
    wrappers = list(_node_wrappers())
    candidates = allowed + (wrappers if "irreversible" in props else [])
    for key in unknown_keys(err):
        if ((*path, key), "E011") in seen:
            continue
        seen.add(((*path, key), "E011"))
        mark = doc.source.at((*path, key), key=True)
        guess = difflib.get_close_matches(str(key), candidates, n=1, cutoff=0.6)
        if guess:
            hint = f"did you mean `{guess[0]}`?"
        elif len(allowed) == 1 and allowed[0] in wrappers:
            hint = f"this node holds only `{allowed[0]}:`; move `{key}` inside it"
        else:
            hint = f"allowed here: {', '.join(allowed)}"
        yield Diagnostic(
            "E011", f"unknown key {key!r} in {_where(path)}", doc.file, mark.line, mark.column, hint
        )


def check_schema(doc: Document) -> list[Diagnostic]:
    """Every shape problem of `doc`, each at its node (one diagnostic per place and problem)."""
    if not isinstance(doc.data, dict):
        return [
            Diagnostic(
                "E010",
                "a saga file must be a mapping with `saga:` and `steps:`",
                doc.file,
                hint="start the file with `saga: my_saga` and a `steps:` list",
            )
        ]
    if len(doc.text) > FAST_THRESHOLD and is_valid_fast(doc.data):
        return []
    out: list[Diagnostic] = []
    seen: set[tuple[Any, ...]] = set()
    for top in reference_validator().iter_errors(doc.data):
        for err in leaves(top):
            if err.validator == "additionalProperties":
                out.extend(_unknown_key_diags(doc, err, seen))
                continue
            for path, message, hint in _explain(err):
                # One wrong type, one diagnostic: `retry: 3` fails both "a mapping or a list"
                # and, inside the schema's if/else, "a mapping"; the first (widest) one is kept.
                key = (path, "type") if err.validator == "type" else (path, message)
                if key in seen:
                    continue
                seen.add(key)
                mark = doc.source.at(path, key="propertyNames" in err.schema_path)
                out.append(Diagnostic("E010", message, doc.file, mark.line, mark.column, hint))
    return out
