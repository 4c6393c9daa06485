"""Rendering templates while a saga runs (spec section 4).

`TemplateEngine.render(value, scope)` walks a value from the definition (a step's `with`, an
idempotency key, the saga's `output`) and renders every string in it with the shared sandboxed
environment of `sagac.compiler.templates`, so what the compiler checked is what runs:

- a string without `{{`, `{%` or `{#` is returned as it is;
- a string that is exactly one `{{ expr }}` yields the expression's native value (number, list,
  mapping, null), normalised to JSON data (tuples and generators become lists);
- any other template string renders to text.

Only the definition is walked: values read from `input`, results or secrets are data and never
rendered again. The scope is a plain mapping of names (`input`, `steps`, `run`, `args`, `result`,
`error`, `failure`, `env`, `secrets`, a foreach's `as` name); `steps` is a dict
`id -> {"result": ..., "status": ...}`, and mapping keys win over attributes (`input.items` is
the key). Every failure (an undefined name, a sandbox violation, a type error) raises
`StepError("TEMPLATE_ERROR", "<template>: <reason>")` with secrets masked; nothing else escapes.
Each Jinja render starts a fresh budget (operations, time) and its text is bounded in size
(`sagac.compiler.templates`: going past a limit is a TEMPLATE_ERROR too). In a run with secrets,
what a template reading `secrets` (or `args` that hold one) renders is registered with the
redactor as a secret of the run: `{{ secrets.K | upper }}` is masked like `K` itself.

Compiled templates are cached by source text in one process-wide table: templates come from
definitions, never from data, so the table is bounded by the definitions loaded. A template
that is only literal text and dotted names (`k-{{ input.order.id }}-{{ run.id }}`, most keys)
is rendered by dict lookups when every name leads through plain dicts to a scalar: the value
Jinja would give (`str` of it in text), at a sixth of the cost; anything else goes to Jinja.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import UndefinedError
from jinja2.runtime import Context, Undefined
from sagac.compiler.templates import (
    analyze,
    bounded_text,
    budget,
    environment,
    is_template,
    single_expression,
)
from sagac.runtime.redaction import MIN_SECRET_LENGTH, Redactor

from sagac.errors import StepError

__all__ = ["TemplateEngine", "has_template"]

_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_CACHE_LIMIT = 65_536
_SOURCE_IN_MESSAGE = 200  # characters of a template quoted in an error message


Path = tuple[str, ...]  # a dotted name: ("input", "order", "id")
_MISSING: Any = object()


class _Compiled:
    """One template: its render function, whether it yields a native value, its parts when
    it is only literal text and dotted names (`simple`: text, or a path to look up), and
    whether it reads `secrets` (or `args`, which may carry them): what it renders may then be
    derived from a secret."""

    __slots__ = ("args", "blocks", "native", "root", "secret", "simple")

    def __init__(
        self,
        source: str,
        root: Callable[[Context], Iterator[str]],
        blocks: Any,
        native: bool,
        simple: tuple[str | Path, ...] | None,
    ):
        self.root = root
        self.blocks = blocks
        self.native = native
        self.simple = simple
        named = "secrets" in source or "args" in source
        reads = {r.root for r in analyze(source).reads} if named else set()
        self.secret = "secrets" in reads
        self.args = "args" in reads


def _simple(body: list[nodes.Node]) -> tuple[str | Path, ...] | None:
    parts: list[str | Path] = []
    for node in body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append(child.data)
                continue
            attrs: list[str] = []
            while isinstance(child, nodes.Getattr):
                attrs.append(child.attr)
                child = child.node
            if not isinstance(child, nodes.Name) or child.ctx != "load":
                return None
            parts.append((child.name, *reversed(attrs)))
    return tuple(parts)


def _lookup(path: Path, parent: Mapping[str, Any]) -> Any:
    """The scalar at `path` through plain dicts (what the sandbox's getattr gives: a mapping's
    key first), or _MISSING for Jinja to resolve (and explain, when it fails)."""
    value = parent.get(path[0], _MISSING)
    for name in path[1:]:
        if type(value) is not dict:
            return _MISSING
        value = value.get(name, _MISSING)
    return value if type(value) in _SCALARS else _MISSING


# source -> compiled template, or None for a plain string (no markers): both are cached so a
# hot render pays one dict lookup to learn what a string is.
_cache: dict[str, _Compiled | None] = {}


def _compile(source: str) -> _Compiled | None:
    if not is_template(source):
        return None
    env = environment()
    expr = single_expression(source)
    if expr is not None:
        # compile_expression wraps `result = <expr>` in a template; its render function is
        # called directly below (with a prebuilt context) because that is 3x faster than
        # TemplateExpression.__call__, which copies the globals ChainMap on every call.
        expression = env.compile_expression(expr, undefined_to_none=False)
        template = expression._template
        simple = _simple(env.parse("{{" + expr + "}}").body)
        return _Compiled(source, template.root_render_func, template.blocks, True, simple)
    template = env.from_string(source)
    simple = _simple(env.parse(source).body)
    return _Compiled(source, template.root_render_func, template.blocks, False, simple)


def _compiled(source: str) -> _Compiled | None:
    try:
        return _cache[source]
    except KeyError:
        pass
    compiled = _compile(source)
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[source] = compiled
    return compiled


_FALSE_TEXT = frozenset({"", "false", "0", "no", "none", "null", "off"})


def truthy(value: Any) -> bool:
    """A rendered `when`: false for false, 0, empty, and the words of `_FALSE_TEXT`."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_TEXT
    return bool(value)


def has_template(value: Any) -> bool:
    """Whether a definition value holds a template anywhere (else it renders to itself)."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, Mapping):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_template(v) for v in value)
    return False


class TemplateEngine:
    """Renders definition values against a scope; knows the run's secrets to keep them out of
    its error messages (and offers the same redaction to the executor)."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        self.secrets: dict[str, str] = {k: str(v) for k, v in (secrets or {}).items()}
        self.redactor = Redactor(self.secrets.values())
        # Only a run with secrets has values derived from them to register (see `_derived`).
        self.tainting = bool(self.secrets)
        self._env = environment()
        self._globals: dict[str, Any] = dict(self._env.globals)

    # -- rendering ----------------------------------------------------------------------

    def render(self, value: Any, scope: Mapping[str, Any]) -> Any:
        """`value` with every template string rendered (see the module docstring). Containers
        are copied; `scope["secrets"]` defaults to this engine's secrets."""
        return self._walk(value, self._parent(scope))

    def render_text(self, value: Any, scope: Mapping[str, Any]) -> str:
        """`value` rendered to text, even when it is one `{{ expr }}` (idempotency keys,
        approval keys, messages). Non-strings are rendered as their JSON-ish `str`."""
        if not isinstance(value, str):
            return str(self.render(value, scope))
        compiled = self._compiled(value)
        if compiled is None:
            return value
        parent = self._parent(scope)
        if compiled.native:
            result = self._native(value, compiled, parent)
            text = result if isinstance(result, str) else _text_of(result)
        else:
            text = self._text(value, compiled, parent)
        if self.tainting and (compiled.secret or compiled.args):
            self._derived(value, compiled, parent, text)
        return text

    def _parent(self, scope: Mapping[str, Any]) -> dict[str, Any]:
        # One context parent per render call, shared by every string in the value: the sandbox
        # is immutable, so a template cannot change it for the next one.
        parent = {**self._globals, **scope}
        if "secrets" not in scope:
            parent["secrets"] = self.secrets
        return parent

    def _walk(self, value: Any, parent: dict[str, Any]) -> Any:
        if isinstance(value, str):
            compiled = self._compiled(value)
            if compiled is None:
                return value
            if compiled.native:
                out = self._native(value, compiled, parent)
            else:
                out = self._text(value, compiled, parent)
            if self.tainting and (compiled.secret or compiled.args):
                self._derived(value, compiled, parent, out)
            return out
        if isinstance(value, Mapping):
            return {k: self._walk(v, parent) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v, parent) for v in value]
        return value

    def _derived(
        self, source: str, compiled: _Compiled, parent: Mapping[str, Any], value: Any
    ) -> None:
        """Register what a template made from a secret as a secret of the run, whole: the
        redactor then masks `{{ secrets.K | upper }}` or `Bearer {{ secrets.K[::-1] }}` wherever
        it appears. A template that reads `args` counts when the args hold a secret. Strings
        shorter than MIN_SECRET_LENGTH are not registered (they would mask ordinary text), nor
        text written literally in the template itself (`| default('none')`): the author wrote
        it, no secret made it."""
        if not compiled.secret and not self.redactor.contains(parent.get("args")):
            return
        found: list[str] = []
        _strings_in(value, found)
        fresh = [
            t
            for t in found
            if len(t) >= MIN_SECRET_LENGTH and t not in source and not self.redactor.knows(t)
        ]
        if fresh:
            self.redactor.add(fresh)

    def _compiled(self, source: str) -> _Compiled | None:
        try:
            return _compiled(source)
        except Exception as exc:  # a syntax error the compiler did not see
            raise self._error(source, exc) from None

    def _native(self, source: str, compiled: _Compiled, parent: dict[str, Any]) -> Any:
        simple = compiled.simple
        if simple is not None and len(simple) == 1 and not isinstance(simple[0], str):
            value = _lookup(simple[0], parent)
            if value is not _MISSING:
                return value
        try:
            budget.start()
            context = Context(self._env, parent, None, compiled.blocks, self._globals)
            for _ in compiled.root(context):
                pass
            result = context.vars["result"]
            if type(result) in _SCALARS:
                return result
            return _to_data(result)
        except Exception as exc:
            raise self._error(source, exc, parent) from None

    def _text(self, source: str, compiled: _Compiled, parent: dict[str, Any]) -> str:
        if compiled.simple is not None:
            out: list[str] = []
            for part in compiled.simple:
                if isinstance(part, str):
                    out.append(part)
                    continue
                value = _lookup(part, parent)
                if value is _MISSING:
                    break
                out.append(str(value))
            else:
                return "".join(out)
        try:
            budget.start()
            context = Context(self._env, parent, None, compiled.blocks, self._globals)
            return bounded_text(compiled.root(context))
        except Exception as exc:
            raise self._error(source, exc, parent) from None

    def _error(
        self, source: str, exc: Exception, parent: Mapping[str, Any] | None = None
    ) -> StepError:
        shown = source if len(source) <= _SOURCE_IN_MESSAGE else source[:_SOURCE_IN_MESSAGE] + "…"
        reason = str(exc) if type(exc).__module__.startswith("jinja2") else _describe(exc)
        if isinstance(exc, UndefinedError):
            reason = _missing(source, parent) or reason
        if not reason:
            reason = type(exc).__name__
        message = self.redactor.redact_text(f"{shown}: {reason}")
        return StepError("TEMPLATE_ERROR", message, {"template": self.redactor.redact_text(shown)})

    # -- redaction ----------------------------------------------------------------------

    def redact(self, value: Any) -> Any:
        """A copy of `value` with every secret value masked as `***` (see `Redactor`)."""
        return self.redactor.redact(value)

    def redact_text(self, text: str) -> str:
        """`text` with every secret value masked as `***`."""
        masked: str = self.redactor.redact_text(text)
        return masked


def _strings_in(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            _strings_in(v, out)
    elif isinstance(value, list | tuple):
        for v in value:
            _strings_in(v, out)


def _missing(source: str, parent: Mapping[str, Any] | None) -> str | None:
    """What an undefined error means, in the author's terms: the first mapping key the template
    reads that the scope lacks, with what to do (a secret: the variable to set; an input key:
    how to make it optional). None when it cannot tell (a dynamic key): Jinja's words stand."""
    if parent is None:
        return None
    for read in analyze(source).reads:
        value: Any = parent.get(read.root)
        dotted = read.root
        for key in read.chain:
            if not isinstance(value, Mapping):
                break  # a list index, a scalar: not a missing key
            if key not in value:
                return _missing_key(read.root, dotted, key)
            value = value[key]
            dotted += f".{key}" if isinstance(key, str) else f"[{key}]"
    return None


def _missing_key(root: str, dotted: str, key: str | int) -> str:
    if root == "secrets" and dotted == "secrets":
        return f"secret {key} is not set: set the environment variable {key}"
    path = f"{dotted}.{key}" if isinstance(key, str) else f"{dotted}[{key}]"
    where = "the input" if dotted == "input" else f"`{dotted}`"
    return (
        f"{where} has no key {key!r}; if it is optional, write `{path} | default(none)` "
        f"or test `{path} is defined`"
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _text_of(value: Any) -> str:
    return "" if value is None else str(value)


def _to_data(value: Any) -> Any:
    """A native result as JSON data; an undefined anywhere inside raises its error, and objects
    that are not data (a method, a cycler) are refused."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, str):  # Markup and other str subclasses
        return str(value)
    if isinstance(value, int | float):  # bool subclasses and the like
        return value
    if isinstance(value, Mapping):
        return {_to_data(k): _to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple | range | Iterator):
        return [_to_data(v) for v in value]
    if isinstance(value, Iterable) and not callable(value):  # dict views, sets
        return [_to_data(v) for v in value]
    raise TypeError(f"the expression yields a {type(value).__name__}, not JSON data")
