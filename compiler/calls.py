"""`call` nodes at compile time: where a called saga is read from, the stored bundle of a saga
and every saga it calls, and what the call learns from its child (E029, `child_irreversible`).

A call's `saga:` is a path relative to the calling file's folder. Called sagas are read by a
`Reader` (a function of the called file's name): from disk for `compile_file`, from a caller's
`resolver` for `compile_text`, or from a stored bundle (`plan.bundle`). The pipeline
(`pipeline.py`) does the recursion; this module never compiles, imports user code, or imports
the runtime.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, assert_never

from . import ir
from .check_facts import diag
from .diagnostics import Diagnostic
from .loader import Document, load_text
from .plan import canonical_json
from .templates import is_template, single_expression

# The called file's name -> its document, or none and the diagnostics saying why.
Reader = Callable[[str], tuple[Document | None, list[Diagnostic]]]

UNREADABLE = "E004"  # what a reader reports for a file it cannot read


def called_file(caller: str, saga: str) -> str:
    """The file a call's `saga:` names, from the calling file (names or bundle paths)."""
    return os.path.normpath(os.path.join(os.path.dirname(caller), saga))


def read_text(resolver: Callable[[str], str]) -> Reader:
    """A reader over `resolver(file) -> text` (raising OSError for a file it does not have)."""

    def read(file: str) -> tuple[Document | None, list[Diagnostic]]:
        try:
            text = resolver(file)
        except OSError as e:
            return None, [Diagnostic(UNREADABLE, f"cannot read file: {e.strerror or e}", file)]
        return load_text(text, file)

    return read


def read_bundle(file: str, calls: Mapping[str, Any]) -> Reader:
    """A reader over the called sagas of a bundle stored for the saga compiled as `file`."""
    by_file = {called_file(file, key): data for key, data in calls.items()}

    def read(name: str) -> tuple[Document | None, list[Diagnostic]]:
        if name not in by_file:
            why = "cannot read file: not in the stored definition"
            return None, [Diagnostic(UNREADABLE, why, name)]
        data = by_file[name]
        return Document(name, canonical_json(data), data), []

    return read


def cycle_text(files: list[str]) -> str:
    """`a.yaml -> sub/b.yaml -> a.yaml`: each file relative to the first one's folder."""
    start = os.path.dirname(files[0]) or "."
    return " -> ".join(os.path.relpath(f, start) for f in files)


# E029 -------------------------------------------------------------------------------------

_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    type(None): "null",
    dict: "object",
    list: "array",
}


def _literal_type(value: Any) -> str | None:
    """The JSON type `value` has at run time, or None when a template decides it."""
    if isinstance(value, str) and is_template(value) and single_expression(value) is not None:
        return None  # one `{{ expr }}` renders its native value
    return _JSON_TYPES.get(type(value))


def _fits(found: str, value: Any, allowed: Any) -> bool:
    types = {allowed} if isinstance(allowed, str) else set(allowed or ())
    if not types or found in types:
        return True
    if found == "integer" and "number" in types:
        return True
    return found == "number" and "integer" in types and float(value).is_integer()


def check_with(call: ir.CallNode, schema: Any, child: str, doc: Document) -> list[Diagnostic]:
    """E029: what a literal `with` shows cannot satisfy the called saga's `input` schema:
    a required top-level key missing, a key the schema forbids, a literal of the wrong JSON
    type. Templates are not judged: their value is known only at run time."""
    if not isinstance(schema, dict):
        return []
    out: list[Diagnostic] = []
    where = (*call.path, "with") if call.with_ else (*call.path, "saga")
    hint = f"give `with` what the `input` schema of {child} asks for"
    types = schema.get("type")
    if types is not None and not _fits("object", {}, types):
        msg = f"the input of {child} is of type {types}, but `with` is a mapping"
        return [diag(doc, "E029", msg, where, hint, key=bool(call.with_))]
    required = schema.get("required")
    for name in required if isinstance(required, list) else ():
        if isinstance(name, str) and name not in call.with_:
            msg = f"`with` has no `{name}`, which the input of {child} requires"
            out.append(diag(doc, "E029", msg, where, hint, key=bool(call.with_)))
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    closed = schema.get("additionalProperties") is False and "patternProperties" not in schema
    for name, value in call.with_.items():
        at = (*call.path, "with", name)
        if closed and name not in props:
            allowed = ", ".join(f"`{p}`" for p in props) or "none"
            msg = f"the input of {child} takes no `{name}` (it takes: {allowed})"
            out.append(diag(doc, "E029", msg, at, hint, key=True))
            continue
        prop = props.get(name)
        found = _literal_type(value)
        if (
            isinstance(prop, dict)
            and found is not None
            and not _fits(found, value, prop.get("type"))
        ):
            msg = f"`{name}` is {found}, but the input of {child} wants {prop.get('type')}"
            out.append(diag(doc, "E029", msg, at, hint))
    return out


# child_irreversible -----------------------------------------------------------------------


def mark_irreversible(saga: ir.Saga, ids: set[str]) -> ir.Saga:
    """`saga` with `child_irreversible` set on the call nodes `ids` (the IR is frozen)."""
    if not ids:
        return saga
    steps, on_failure = _marked(saga.steps, ids), _marked(saga.on_failure, ids)
    return saga.model_copy(update={"steps": steps, "on_failure": on_failure})


def _marked(nodes: tuple[ir.AnyNode, ...], ids: set[str]) -> tuple[ir.AnyNode, ...]:
    return tuple(_mark(n, ids) for n in nodes)


def _mark(n: ir.AnyNode, ids: set[str]) -> ir.AnyNode:
    match n:
        case ir.CallNode():
            return n.model_copy(update={"child_irreversible": True}) if n.id in ids else n
        case ir.ParallelGroup():
            return n.model_copy(update={"branches": tuple(_marked(b, ids) for b in n.branches)})
        case ir.SwitchNode():
            cases = tuple(c.model_copy(update={"steps": _marked(c.steps, ids)}) for c in n.cases)
            default = None if n.default is None else _marked(n.default, ids)
            return n.model_copy(update={"cases": cases, "default": default})
        case (
            ir.TaskStep()
            | ir.ApprovalGate()
            | ir.ForeachNode()
            | ir.FailNode()
            | ir.SleepNode()
            | ir.WaitNode()
        ):
            return n
        case _:
            assert_never(n)
