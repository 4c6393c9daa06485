"""E026: python action targets, imported and matched against the `with` keys of every use.

This is the one check that runs user code: importing a module executes its top-level code, so
it runs only when asked (`compile_file(..., imports=True)`; `sagac validate`, `compile` and
`run` ask unless given `--no-import`). Modules are found as the runtime finds them
(`runtime/actions/python.py`): the saga file's folder first on `sys.path`, then the rest of
`sys.path`. The folder is put back off `sys.path` afterwards; imported modules stay in
`sys.modules`, as they would after a run. This module must never import `sagac.runtime`.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import ir
from .diagnostics import Diagnostic
from .loader import Document

CONTEXT = "context"  # a parameter the runtime fills with the step context


@contextlib.contextmanager
def _saga_folder_first(base_dir: Path) -> Iterator[None]:
    folder = str(base_dir.resolve())
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
        importlib.invalidate_caches()
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def _resolve(target: str, base_dir: Path) -> tuple[Callable[..., Any] | None, str | None]:
    """(the callable, None), or (None, why it cannot be used)."""
    module_name, _, attr_path = target.partition(":")
    try:
        # A module's prints must not mix with `sagac compile`'s JSON on stdout.
        with _saga_folder_first(base_dir), contextlib.redirect_stdout(sys.stderr):
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name + ".").startswith(e.name + "."):
            return None, f"no module named {e.name!r} (searched the saga's folder and sys.path)"
        return None, f"importing {module_name} failed: {type(e).__name__}: {e}"
    except (Exception, SystemExit) as e:  # the module's own code failed: say how, never crash
        return None, f"importing {module_name} failed: {type(e).__name__}: {e}"
    obj: Any = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            guess = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
            also = f" (did you mean {guess[0]!r}?)" if guess else ""
            return (
                None,
                f"{getattr(obj, '__name__', module_name)!r} has no attribute {part!r}{also}",
            )
        obj = getattr(obj, part)
    if not callable(obj):
        return None, f"{attr_path} is a {type(obj).__name__}, not a function"
    return obj, None


def _mismatch(func: Callable[..., Any], keys: list[str]) -> tuple[str, str | None] | None:
    """Why `func(**with, [context=...])` cannot bind, and the `with` key at fault; None when
    it binds (or has no signature to check, as some builtins)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return None
    takes_context = CONTEXT in params
    if takes_context and CONTEXT in keys:
        return "`context` is the step context the runtime passes: rename that key", CONTEXT
    any_key = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {
        name
        for name, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != CONTEXT
    }
    for name, p in params.items():
        if p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
            return f"its parameter {name!r} is positional-only: `with` passes keywords", None
    if not any_key:
        for key in keys:
            if key not in named:
                guess = difflib.get_close_matches(key, sorted(named), n=1, cutoff=0.6)
                accepted = ", ".join(sorted(named)) or "none"
                return f"it takes no argument {key!r}" + (
                    f" (did you mean {guess[0]!r}?)" if guess else f" (it takes: {accepted})"
                ), key
    missing = [
        name
        for name, p in params.items()
        if name in named and p.default is p.empty and name not in keys
    ]
    if missing:
        return "its required argument(s) " + ", ".join(map(repr, missing)) + " not in `with`", None
    return None


def _uses(saga: ir.Saga) -> Iterator[tuple[ir.ActionRef, dict[str, Any], ir.Path, str]]:
    """Every use of a python action: (ref, its `with`, where the `with` is, who uses it)."""
    for node in saga.walk():
        n = ir.effectful(node)
        if n is None:
            continue
        yield n.action, n.with_, (*n.path, "with"), repr(n.id)
        c = n.compensate
        if c is not None:
            yield c.action, c.with_, (*c.path, "with"), f"the compensation of {n.id!r}"


def check_python_targets(saga: ir.Saga, doc: Document, base_dir: Path) -> list[Diagnostic]:
    """E026: each python target imports from `base_dir` (then sys.path), is callable, and
    accepts the `with` keys of every step that uses it."""
    out: list[Diagnostic] = []
    resolved: dict[str, Callable[..., Any] | None] = {}

    def diag(msg: str, path: ir.Path, hint: str, *, key: bool = False) -> None:
        mark = doc.source.at(path, key=key)
        out.append(Diagnostic("E026", msg, doc.file, mark.line, mark.column, hint))

    def resolve(target: str, path: ir.Path) -> Callable[..., Any] | None:
        if target not in resolved:
            func, why = _resolve(target, base_dir)
            resolved[target] = func
            if why is not None:
                diag(
                    f"python action {target}: {why}",
                    path,
                    "fix the target (`package.module:function`, importable from the saga's "
                    "folder), or validate with `--no-import` if the module lives elsewhere",
                )
        return resolved[target]

    for name, spec in saga.actions.items():
        if isinstance(spec, ir.PythonAction):
            resolve(spec.target, ("actions", name, "python"))
    for ref, with_, with_path, who in _uses(saga):
        if not isinstance(ref.spec, ir.PythonAction):
            continue
        spec = ref.spec
        func = resolve(spec.target, (*ref.path, "python") if ref.name is None else ref.path)
        if func is None:
            continue
        found = _mismatch(func, list(with_))
        if found is not None:
            why, at = found
            diag(
                f"{who} calls {spec.target} with `with` keys [{', '.join(with_)}], but {why}",
                (*with_path, at) if at is not None else with_path if with_ else ref.path,
                "make `with` match the function's parameters (a `**kwargs` parameter accepts "
                "any key; `context` is passed by the runtime)",
                key=at is not None,
            )
    return out
