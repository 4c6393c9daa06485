"""`python` actions: call `"pkg.module:function"` with the step's `with` as keyword arguments.

Import path: the saga file's folder (`StepContext.base_dir`) is inserted at the front of
`sys.path` the first time an action of that saga runs, once per folder for the life of the
process, as if Python ran a script there. Modules are imported by name, so two saga folders that
each hold a package called `shop` share whichever was imported first.

Calling: a parameter named `context` receives the `StepContext` (so `context` cannot be an argument
name in `with`). Async functions are awaited on the loop; sync functions run in a thread of their
own so they never block the loop. Which one a target is, is decided from the callable itself
(`inspect.iscoroutinefunction`, through `functools.partial` and an object's `__call__`) once it is
imported: `calls_in_thread` imports the target first, so the executor never has to guess. A
cancelled sync call cannot be stopped: `invoke` abandons its thread (the executor, which must not
let a compensation start before the action ended, awaits it). These threads are daemons, not the
loop's default executor, because `asyncio.run` waits for every executor thread on its way out: one
hung sync action would hold up the end of a cancelled run (and a pool of `cpu + 4` threads would cap
a foreach's concurrency).

Failing: raising `StepError` fails with its code; returning a `StepError` instance is an error
result and fails the same way. An import failure, a missing function or arguments that do not
fit its signature are `UNEXPECTED`, naming the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib
import inspect
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagac.compiler.ir import PythonAction
from sagac.runtime.actions.context import StepContext

from sagac.errors import StepError

__all__ = ["calls_in_thread", "run_python", "runs_in_thread"]

_path_lock = threading.Lock()
_paths_added: set[str] = set()


@dataclass(frozen=True, slots=True)
class _Target:
    func: Callable[..., Any]
    is_async: bool
    takes_context: bool
    signature: inspect.Signature | None
    # Keyword-name tuples the signature accepted: all arguments are keywords, so whether
    # they bind depends on their names alone (binding costs more than the call it checks).
    fits: set[tuple[str, ...]] = field(default_factory=set)


_targets: dict[tuple[str | None, str], _Target] = {}


def runs_in_thread(spec: PythonAction, base_dir: Path | None) -> bool | None:
    """Whether `spec` calls a sync function (run in a thread that a cancel cannot stop), as
    resolved by an earlier call; None before the first call of that target."""
    target = _targets.get((str(base_dir) if base_dir is not None else None, spec.target))
    return None if target is None else not target.is_async


async def calls_in_thread(spec: PythonAction, base_dir: Path | None) -> bool:
    """Whether `spec` calls a sync function (run in a thread that a cancel cannot stop),
    importing its module first when needed. Raises StepError when the target cannot be found."""
    return not (await _target(spec, base_dir)).is_async


async def _target(spec: PythonAction, base_dir: Path | None) -> _Target:
    key = (str(base_dir) if base_dir is not None else None, spec.target)
    target = _targets.get(key)
    if target is None:
        # Importing runs the module's top-level code: keep it off the loop too.
        target = await _in_thread(
            _resolve, {"target": spec.target, "base_dir": base_dir}, spec.target
        )
        _targets[key] = target
    return target


async def run_python(spec: PythonAction, args: Any, ctx: StepContext) -> Any:
    target = _targets.get((str(ctx.base_dir) if ctx.base_dir is not None else None, spec.target))
    if target is None:
        target = await _target(spec, ctx.base_dir)

    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise StepError(
            "UNEXPECTED",
            f"python action {spec.target}: `with` must be a mapping of keyword arguments,"
            f" got {type(args).__name__}",
        )
    kwargs = dict(args)
    if target.takes_context:
        if "context" in kwargs:
            raise StepError(
                "UNEXPECTED",
                f"python action {spec.target}: `context` is reserved for the step context,"
                " rename that argument",
            )
        kwargs["context"] = ctx
    if target.signature is not None:
        names = tuple(kwargs)
        if names not in target.fits:
            try:
                target.signature.bind(**kwargs)
            except TypeError as exc:
                raise StepError("UNEXPECTED", f"python action {spec.target}: {exc}") from None
            if len(target.fits) < 64:
                target.fits.add(names)

    if target.is_async:
        result = await target.func(**kwargs)
    else:
        result = await _in_thread(target.func, kwargs, spec.target)
    if inspect.isawaitable(result):  # a sync callable that hands back a coroutine
        result = await result
    if isinstance(result, StepError):
        raise result
    return result


def _in_thread(func: Callable[..., Any], kwargs: dict[str, Any], name: str) -> asyncio.Future[Any]:
    """Run `func(**kwargs)` in a new daemon thread (with our context variables); the future
    resolves on the loop. Cancelling the future abandons the thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # cancelled meanwhile: the result is dropped
            outcome()

    def work() -> None:
        try:
            result = context.run(func, **kwargs)
        except BaseException as exc:  # handed to the awaiting task, which decides
            if isinstance(exc, StopIteration):  # a future refuses it (PEP 479)
                exc = RuntimeError(f"StopIteration: {exc}")
            outcome: Callable[[], None] = functools.partial(future.set_exception, exc)
        else:
            outcome = functools.partial(future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop closed before the thread ended
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=work, name=f"sagac-action:{name}", daemon=True).start()
    return future


def _resolve(target: str, base_dir: Path | None) -> _Target:
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise StepError(
            "UNEXPECTED", f"python action {target!r}: expected 'package.module:function'"
        )
    if base_dir is not None:
        _add_import_path(base_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            where = f" (searched the saga folder {base_dir} and sys.path)" if base_dir else ""
            raise StepError(
                "UNEXPECTED", f"python action {target}: no module named {exc.name!r}{where}"
            ) from None
        raise StepError(
            "UNEXPECTED", f"python action {target}: importing {module_name} failed: {exc}"
        ) from None
    except Exception as exc:
        raise StepError(
            "UNEXPECTED",
            f"python action {target}: importing {module_name} failed: {type(exc).__name__}: {exc}",
        ) from None

    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise StepError(
                "UNEXPECTED",
                f"python action {target}: {getattr(obj, '__name__', module_name)!r}"
                f" has no attribute {part!r}",
            ) from None
    if not callable(obj):
        raise StepError(
            "UNEXPECTED", f"python action {target}: {type(obj).__name__} is not callable"
        )

    try:
        signature: inspect.Signature | None = inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins have no signature: let the call decide
        signature = None
    is_async = _is_async(obj)
    takes_context = signature is not None and "context" in signature.parameters
    return _Target(obj, is_async, takes_context, signature)


def _is_async(obj: Any) -> bool:
    """Whether calling `obj` gives a coroutine to await: an async function, a partial of one,
    or an object (not a class: calling a class makes an instance) with an async `__call__`."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    call = None if isinstance(obj, type) else getattr(obj, "__call__", None)  # noqa: B004
    while isinstance(call, functools.partial):
        call = call.func
    return call is not None and inspect.iscoroutinefunction(call)


def _add_import_path(base_dir: Path) -> None:
    path = str(Path(base_dir).resolve())
    with _path_lock:
        if path in _paths_added:
            return
        if path not in sys.path:
            sys.path.insert(0, path)
        _paths_added.add(path)
        importlib.invalidate_caches()
