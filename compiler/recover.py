"""The readable part of a document that failed the schema, so that `validate` can report the
semantic problems of a saga together with its shape problems.

`readable_part` takes out the smallest subtrees that carry a schema error (a wrong value, an
unknown key; a node missing a required key goes whole) until what is left passes the schema,
and returns that pruned document; the semantic checks then run on it. Its diagnostics are
filtered by `credible` so that nothing is said that follows from a removal: nothing about a
node (or named action) that had a schema error, nothing naming a node or action that was taken
out (`after: [gone]`, `steps.gone...`, an action no longer used). It must never change the
document it is given, and gives up (None) when the document is unreadable as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import ValidationError

from .diagnostics import Diagnostic
from .loader import Document, Mark, PathKey, SourceMap
from .schema import is_valid_fast, leaves, reference_validator, unknown_keys

MAX_ROUNDS = 6  # each round takes out what the previous one left invalid (a parent, mostly)
_GONE = object()


@dataclass(slots=True)
class Readable:
    """A pruned document and what was taken out, in the original document's paths."""

    document: Document
    tainted: frozenset[tuple[int, int]]  # (line, column) of every node of a damaged subtree
    names: frozenset[str]  # ids of removed nodes, names of damaged actions


class _Shifted(SourceMap):
    """The source map of the original document, read with paths of the pruned one."""

    def __init__(self, base: SourceMap, kept: dict[PathKey, list[int]]) -> None:
        super().__init__(base.values, base.keys)
        self.kept = kept

    def at(self, path: PathKey, *, key: bool = False) -> Mark:
        return super().at(_original(path, self.kept), key=key)


def _original(path: PathKey, kept: dict[PathKey, list[int]]) -> PathKey:
    """The original path of `path` in the pruned document: `kept[list path]` holds the original
    indices of the items left in each list that lost some."""
    out: list[str | int] = []
    for part in path:
        if isinstance(part, int):
            indices = kept.get(tuple(out))
            if indices is not None and 0 <= part < len(indices):
                part = indices[part]
        out.append(part)
    return tuple(out)


def _without(value: Any, path: PathKey, cut: set[PathKey], prefixes: set[PathKey]) -> Any:
    """`value` without the subtrees at `cut`; only what leads to a cut is copied."""
    if path in cut:
        return _GONE
    if path not in prefixes:
        return value
    if isinstance(value, dict):
        kept = {k: _without(v, (*path, k), cut, prefixes) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not _GONE}
    if isinstance(value, list):
        items = (_without(v, (*path, i), cut, prefixes) for i, v in enumerate(value))
        return [v for v in items if v is not _GONE]
    return value


def _error_paths(err: ValidationError) -> Iterable[PathKey]:
    """Where to cut for one error: the unknown keys, the bad key, or the failing node itself."""
    path = tuple(err.absolute_path)
    if err.validator == "additionalProperties":
        unknown = unknown_keys(err)
        return [(*path, k) for k in unknown] if unknown else [path]
    if "propertyNames" in err.schema_path and isinstance(err.instance, str):
        return [(*path, err.instance)]
    return [path]


def _at(data: Any, path: PathKey) -> Any:
    for part in path:
        data = data[part]
    return data


def _node_of(data: Any, path: PathKey) -> PathKey:
    """The node (a mapping with an `id`) or named action holding `path`, else its top key."""
    if len(path) >= 2 and path[0] == "actions":
        return path[:2]
    node: PathKey | None = None
    item = path[:1]  # without a node: the innermost list item (a node without an id)
    value = data
    for i, part in enumerate(path):
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(value, dict) and "id" in value:
            node = path[: i + 1]
        if isinstance(part, int):
            item = path[: i + 1]
    return node or item


def _names(value: Any) -> Iterable[str]:
    """Node ids and action names a removed subtree holds or uses."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("id", "action") and isinstance(v, str):
                yield v
            yield from _names(v)
    elif isinstance(value, list):
        for v in value:
            yield from _names(v)


def readable_part(doc: Document) -> Readable | None:
    """The largest part of `doc` the schema accepts, found by cutting where errors are; None
    when the cuts reach the root (nothing is left to check)."""
    if not isinstance(doc.data, dict):
        return None
    original: dict[str, Any] = doc.data
    cut: set[PathKey] = set()
    kept: dict[PathKey, list[int]] = {}
    data: Any = original
    validator = reference_validator()
    for round_ in range(MAX_ROUNDS):
        if round_ and is_valid_fast(data):  # the generated validator: a verdict in a blink
            break
        errors = [leaf for top in validator.iter_errors(data) for leaf in leaves(top)]
        if not errors:
            break
        for err in errors:
            for path in _error_paths(err):
                if path == () or path == ("saga",):
                    return None  # the root, or a required scalar of it: nothing to check
                cut.add(_original(path, kept))
        cut = {p for p in cut if not any(p[:n] in cut for n in range(len(p)))}
        prefixes = {p[:n] for p in cut for n in range(len(p))}
        removed: dict[PathKey, set[int]] = {}
        for p in cut:
            if isinstance(p[-1], int):
                removed.setdefault(p[:-1], set()).add(p[-1])
        kept = {
            lst: [i for i in range(len(_at(original, lst))) if i not in gone]
            for lst, gone in removed.items()
        }
        data = _without(original, (), cut, prefixes)
    else:
        return None
    damaged = {_node_of(original, p) for p in cut} - {()}
    source = doc.source
    tainted = {
        (m.line, m.column)
        for table in (source.values, source.keys)
        for path, m in table.items()
        if any(path[:n] in damaged for n in range(1, len(path) + 1))
    }
    names = {str(d[1]) for d in damaged if len(d) == 2 and d[0] == "actions"}
    for p in cut:
        names.update(_names(_at(original, p)))
        if p[-1] == "id" and isinstance(_at(original, p), str):
            names.add(_at(original, p))
    pruned = Document(doc.file, doc.text, data, _Shifted(source, kept))
    return Readable(pruned, frozenset(tainted), frozenset(names))


def credible(diagnostics: list[Diagnostic], readable: Readable) -> list[Diagnostic]:
    """The semantic diagnostics of the pruned document that do not follow from a removal."""
    if readable.names:
        alternatives = "|".join(re.escape(n) for n in sorted(readable.names))
        naming = re.compile(rf"'(?:{alternatives})'|steps\.(?:{alternatives})\b")
    else:
        naming = None
    return [
        d
        for d in diagnostics
        if (d.line, d.column) not in readable.tainted
        and not (naming is not None and naming.search(d.message))
    ]
