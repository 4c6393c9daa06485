"""Actions: how a step reaches the outside world (python, http, command, mock).

The executor calls, for every attempt::

    rendered = render_spec(spec, args, scope, engine)          # may raise TEMPLATE_ERROR
    result = await invoke(spec, args, ctx, rendered_spec=rendered)

`args` is the step's rendered `with`. `render_spec` renders the templated fields of an action
spec (an http `url`, `headers` and `json`; a command's argv) with `args` added to the step's
scope (`{{ args.lease_id }}`), and returns them as field overrides, or None when the spec has
no templates. `spec_templates(spec)` lists those fields for tools that want to inspect them.

`invoke` returns the action's result as JSON data (what a round trip through `json` gives, so it is
exactly what a journal will hold and replay; small flat results are copied instead, to the same
effect) or raises `StepError` with a code from the spec's table. Nothing else escapes except
`asyncio.CancelledError`: the per-attempt timeout is the executor's (`asyncio.timeout` around
`invoke`), and on cancellation every action cleans up before the error goes on (a subprocess is
killed and reaped, an http request is closed), except a sync python function's thread, which nothing
can stop: `await calls_in_thread(spec, base_dir)` (which imports the target to decide) names those,
so the executor can await the thread before anything that needs the action to have ended. Any other
exception becomes `StepError("UNEXPECTED", "<ExcType>: <msg>")`.

`immediate_action(spec)` is `invoke` without a coroutine for an action that needs no I/O and no
time (a mock without `delay`): a function of the attempt number, or None. The executor calls it
instead of `invoke` when there is one; results and errors are the same.

`invoke` never redacts: results and errors may contain secrets the action was given, so the
executor passes what it journals through `TemplateEngine.redact`. HTTP connections are pooled
per event loop: close them with `await aclose_clients()` (or `async with http_clients():`)
before the loop ends.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from math import isfinite
from typing import Any, TypeAlias

from sagac.compiler.ir import CommandAction, HttpAction, MockAction, PythonAction
from sagac.compiler.templates import is_template
from sagac.runtime.actions.command import run_command
from sagac.runtime.actions.context import StepContext
from sagac.runtime.actions.mock import immediate, run_mock
from sagac.runtime.actions.python import calls_in_thread, run_python, runs_in_thread
from sagac.runtime.templates import TemplateEngine, has_template

from sagac.errors import StepError

__all__ = [
    "ActionSpec",
    "StepContext",
    "aclose_clients",
    "calls_in_thread",
    "http_clients",
    "immediate_action",
    "invoke",
    "render_spec",
    "runs_in_thread",
    "spec_templates",
]

ActionSpec: TypeAlias = PythonAction | HttpAction | CommandAction | MockAction

_STRICT_JSON = json.JSONEncoder(allow_nan=False).encode  # json.dumps builds one per call


async def run_http(spec: HttpAction, args: Any, ctx: StepContext) -> Any:
    """`http.run_http`, imported on the first http action: httpx costs a run without one
    more than the rest of its imports together."""
    from sagac.runtime.actions.http import run_http

    return await run_http(spec, args, ctx)


async def aclose_clients() -> None:
    """Close the running loop's pooled http client (none unless an http action ran)."""
    http = sys.modules.get("sagac.runtime.actions.http")
    if http is not None:
        await http.aclose_clients()


@asynccontextmanager
async def http_clients() -> AsyncIterator[None]:
    """Scope for a run: http actions inside share connections, closed on the way out."""
    try:
        yield
    finally:
        await aclose_clients()


_RUNNERS: dict[str, Callable[[Any, Any, StepContext], Awaitable[Any]]] = {
    "python": run_python,
    "http": run_http,
    "command": run_command,
    "mock": run_mock,
}


async def invoke(
    spec: ActionSpec,
    args: Any,
    ctx: StepContext,
    *,
    rendered_spec: Mapping[str, Any] | None = None,
) -> Any:
    """Run one attempt of `spec`; `rendered_spec` (from `render_spec`) overrides its templated
    fields. Returns JSON data or raises `StepError` (or `CancelledError`)."""
    if rendered_spec:
        spec = spec.model_copy(update=dict(rendered_spec))
    try:
        result = await _RUNNERS[spec.kind](spec, args, ctx)
    except StepError as exc:
        _make_detail_json(exc)
        raise
    except (Exception, SystemExit) as exc:  # SystemExit: a sys.exit() in user code
        raise _unexpected(exc) from exc
    flat = _flat_copy(result)
    if flat is not None:
        return flat
    try:
        return json.loads(_STRICT_JSON(result))
    except (TypeError, ValueError, RecursionError) as exc:
        raise StepError(
            "UNEXPECTED", f"the action's result is not JSON data: {type(exc).__name__}: {exc}"
        ) from None


_JSON_SCALARS = frozenset({str, int, bool, type(None)})  # exact types: subclasses go the long way


def _flat_copy(value: Any) -> Any:
    """What `json.loads(json.dumps(value))` gives, for the common small results: a scalar, or
    a mapping (text keys) or list of scalars; None when `value` needs the full round trip."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if kind is dict and all(type(k) is str and _scalar(v) for k, v in value.items()):
        return dict(value)
    if kind is list and all(_scalar(v) for v in value):
        return list(value)
    return None


def _scalar(v: Any) -> bool:
    return type(v) in _JSON_SCALARS or (type(v) is float and isfinite(v))


def immediate_action(spec: ActionSpec) -> Callable[[int], Any] | None:
    """For an action that needs no I/O and no time: attempt -> result (or raises StepError),
    exactly what `invoke` would return or raise; None for any other action."""
    return immediate(spec) if isinstance(spec, MockAction) else None


def spec_templates(spec: ActionSpec) -> dict[str, Any]:
    """The fields of `spec` that hold templates, by IR field name (`url`, `headers`,
    `json_body`, `argv`), with their unrendered values; empty when there are none."""
    fields: dict[str, Any] = {}
    if isinstance(spec, HttpAction):
        if is_template(spec.url):
            fields["url"] = spec.url
        if any(is_template(v) for v in spec.headers.values()):
            fields["headers"] = spec.headers
        if spec.has_json and has_template(spec.json_body):
            fields["json_body"] = spec.json_body
    elif isinstance(spec, CommandAction) and any(is_template(a) for a in spec.argv):
        fields["argv"] = spec.argv
    return fields


def render_spec(
    spec: ActionSpec, args: Any, scope: Mapping[str, Any], engine: TemplateEngine
) -> dict[str, Any] | None:
    """The templated fields of `spec` rendered with `scope` plus `args`, as overrides for
    `invoke(rendered_spec=...)`; None when nothing is templated. A url renders to text, header
    values to strings (a null header is left out), argv elements to strings."""
    fields = spec_templates(spec)
    if not fields:
        return None
    local = {**scope, "args": args}
    rendered: dict[str, Any] = {}
    if "url" in fields:
        rendered["url"] = engine.render_text(fields["url"], local)
    if "headers" in fields:
        headers = engine.render(fields["headers"], local)
        rendered["headers"] = {k: _as_text(v) for k, v in headers.items() if v is not None}
    if "json_body" in fields:
        rendered["json_body"] = engine.render(fields["json_body"], local)
    if "argv" in fields:
        argv = []
        for source, value in zip(fields["argv"], engine.render(fields["argv"], local), strict=True):
            if isinstance(value, dict | list):
                message = f"{source}: an argv element must be text, not a list or mapping"
                raise StepError("TEMPLATE_ERROR", engine.redact_text(message))
            argv.append(_as_text(value))
        rendered["argv"] = tuple(argv)
    return rendered


def _as_text(value: Any) -> str:
    """Text for a header or an argument: JSON spelling for booleans and null."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value)


def _make_detail_json(exc: StepError) -> None:
    """Make the error's `detail` JSON data (a repr when the action put an object in)."""
    if exc.detail is None:
        return
    try:
        exc.detail = json.loads(json.dumps(exc.detail, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        exc.detail = repr(exc.detail)


def _unexpected(exc: BaseException) -> StepError:
    detail: dict[str, Any] = {"exception": type(exc).__name__}
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        detail["at"] = f"{last.filename}:{last.lineno} in {last.name}"
    return StepError("UNEXPECTED", f"{type(exc).__name__}: {exc}", detail)
