"""The template language: Jinja2 expressions in a sandbox, shared by compiler and runtime.

The compiler parses every template here to find syntax errors and the names it reads; the
runtime renders with the same environment, so what compiles is what runs. The environment is
sandboxed (no private attributes, no imports, no I/O), undefined names are errors, and on
mappings `a.b` reads the key `b` before any attribute (`input.items` is the key, never
`dict.items`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache, wraps
from itertools import islice
from typing import Any

from jinja2 import Environment, StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

_SINGLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


MAX_SIZE = 1_000_000  # items or characters one operation (`*`, `~`, a filter, a method) may build
MAX_POWER_BITS = 4096  # bits of an integer `**` may build
MAX_OUTPUT = 1_000_000  # characters one template may render
MAX_OPERATIONS = 1_000_000  # loop iterations and calls in one render
MAX_RENDER_SECONDS = 2.0  # wall time of one render, checked every _CLOCK_EVERY operations
_CLOCK_EVERY = 1024

# A width or precision of 7 digits or more in a `%` or `str.format` spec (a 1 MB field at least).
_WIDE_PERCENT = re.compile(r"%[-#0 +]*(?:\d{7,}|\*)|%[-#0 +]*\d*\.(?:\d{7,}|\*)")
_WIDE_FORMAT = re.compile(r"\{[^{}]*:[^{}]*\d{7,}[^{}]*\}")


class RenderBudget:
    """What one render may still spend: operations, and time until its deadline. Reset before
    every render (`start`); each operation of the sandbox `tick`s it. One process-wide budget,
    not one per thread (a thread-local costs 3x per operation): sagac renders on one thread,
    the event loop's, and a render never awaits."""

    __slots__ = ("deadline", "ops")

    def __init__(self) -> None:
        self.ops = MAX_OPERATIONS
        self.deadline = math.inf

    def start(self) -> None:
        self.ops = MAX_OPERATIONS
        self.deadline = 0.0  # set at the first check: most renders end long before it

    def tick(self) -> None:
        ops = self.ops - 1
        self.ops = ops
        if ops % _CLOCK_EVERY == 0:
            self.check()

    def check(self) -> None:
        if self.ops < 0:
            raise SecurityError(
                f"the template did more than {MAX_OPERATIONS:,} operations "
                "(loop iterations and calls)"
            )
        now = time.monotonic()
        if not self.deadline:
            self.deadline = now + MAX_RENDER_SECONDS
        elif now > self.deadline:
            raise SecurityError(f"the template ran longer than {MAX_RENDER_SECONDS:g}s")


budget = RenderBudget()


def _too_big(what: str) -> SecurityError:
    return SecurityError(f"{what} would build more than {MAX_SIZE:,} characters or items")


def _checked(value: Any, what: str) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_SIZE:
        raise _too_big(what)
    return value


# Filters and string methods whose arguments say how much they build (or, for `slice`, how
# long they loop); a number above MAX_SIZE is refused only as one of the `_WIDTHS`.
_SIZED = frozenset(
    {"indent", "center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map"}
    | {"replace", "join", "wordwrap", "slice"}
)
_WIDTHS = frozenset({"indent", "center", "ljust", "rjust", "zfill", "expandtabs", "slice"})


def _big_int(args: Any) -> bool:
    return any(isinstance(a, int) and not isinstance(a, bool) and a > MAX_SIZE for a in args)


def _estimate(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """An upper bound of the size a string filter or method would build (0: no concern), so
    that `'x' | indent(10**9)` is refused before the gigabyte is allocated."""
    if name not in _SIZED:
        return 0
    if name in _WIDTHS and _big_int((*args, *kwargs.values())):
        return MAX_SIZE + 1
    if not isinstance(value, str):
        if name == "join" and isinstance(value, (list, tuple)):
            sep = args[0] if args and isinstance(args[0], str) else ""
            return sum(len(v) if isinstance(v, str) else 24 for v in value) + len(sep) * len(value)
        return 0
    if name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        step = len(width) if isinstance(width, str) else int(width)
        return len(value) + step * (value.count("\n") + 1)
    if name in ("center", "ljust", "rjust", "zfill"):
        return max([len(value), *(a for a in args[:1] if isinstance(a, int))])
    if name == "expandtabs":
        size = args[0] if args and isinstance(args[0], int) else 8
        return len(value) + size * value.count("\t")
    if name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        return len(value) + (len(value) // max(len(old), 1) + 1) * len(new)
    if name == "format":  # the filter: printf-style
        return MAX_SIZE + 1 if _WIDE_PERCENT.search(value) else 0
    if name == "format_map":  # str.format and str.format_map
        return MAX_SIZE + 1 if _WIDE_FORMAT.search(value) else 0
    if name == "join" and args and isinstance(args[0], (list, tuple)):
        parts = args[0]
        return sum(len(v) if isinstance(v, str) else 24 for v in parts) + len(value) * len(parts)
    return 0


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` refused when it would build too much, and its result checked (the
    `pass_context`-style marker is kept by `wraps`)."""
    skip = 1 if hasattr(func, "jinja_pass_arg") else 0

    @wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        value, rest = (args[skip], args[skip + 1 :]) if len(args) > skip else (None, ())
        if _estimate(name, value, rest, kwargs) > MAX_SIZE:
            raise _too_big(f"the filter {name!r}")
        return _checked(func(*args, **kwargs), f"the filter {name!r}")

    return bounded


def _str_method(obj: Any) -> tuple[str, str] | None:
    """(the string, the method's name) when `obj` is a method of a string (the sandbox wraps
    `str.format` in a function that keeps the method as `__wrapped__`)."""
    method = getattr(obj, "__wrapped__", obj)
    owner = getattr(method, "__self__", None)
    if isinstance(owner, str) and isinstance(getattr(method, "__name__", None), str):
        return owner, method.__name__
    return None


class _Guards(NodeTransformer):
    """Routes every `{% for %}` through the `_sagac_loop` filter (its iterations charged to the
    budget) and every `~` through `_sagac_concat` (bounded in size). Filters, because Jinja
    calls a filter directly, where a call goes through the sandbox's checks (4x the cost)."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    def _filter(self, name: str, value: Any, lineno: int) -> nodes.Filter:
        node = nodes.Filter(value, name, [], [], None, None, lineno=lineno)
        node.set_environment(self.env)
        return node

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._filter("_sagac_loop", node.iter, node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.Tuple(list(node.nodes), "load", lineno=node.lineno)
        return self._filter("_sagac_concat", parts, node.lineno)


def _loop(iterable: Any) -> Any:
    """A loop's iterable, its iterations charged to the budget: all at once when it has a
    length (no cost per iteration), else one by one."""
    try:
        n = len(iterable)
    except TypeError:
        return _counted(iterable)
    budget.ops -= n
    budget.check()
    return iterable


def _counted(iterable: Any) -> Iterator[Any]:
    spend = budget  # `tick` inlined: this is the innermost loop of a template
    for item in iterable:
        ops = spend.ops - 1
        spend.ops = ops
        if ops % _CLOCK_EVERY == 0:
            spend.check()
        yield item


def _concat(parts: tuple[Any, ...]) -> str:
    budget.tick()
    texts = [p if isinstance(p, str) else str(p) for p in parts]
    if sum(map(len, texts)) > MAX_SIZE:
        raise _too_big("`~`")
    return "".join(texts)


def bounded_text(chunks: Iterable[str]) -> str:
    """The rendered chunks joined, refused as soon as they pass MAX_OUTPUT characters."""
    # In batches: a Python loop per chunk would double the cost of rendering a loop.
    it = iter(chunks)
    out: list[str] = []
    size = 0
    while batch := list(islice(it, 64)):
        size += sum(map(len, batch))
        if size > MAX_OUTPUT:
            raise SecurityError(f"the template renders more than {MAX_OUTPUT:,} characters")
        out += batch
    return "".join(out)


class SagaTemplate(Template):
    """`render` with a fresh budget and a bounded output (the runtime calls render functions
    itself, and does the same there)."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        budget.start()
        context = self.new_context(dict(*args, **kwargs))
        try:
            return bounded_text(self.root_render_func(context))
        except Exception:
            self.environment.handle_exception()


class SagaEnvironment(ImmutableSandboxedEnvironment):
    """Sandboxed, strict, reading mapping keys before attributes, and bounded.

    Jinja's sandbox stops attribute escapes but not `'a' * 10**10`, `10**10**10`, nested loops
    over `range(100000)` or `'x' | indent(10**9)`: here every loop iteration and call (what
    repeats work: everything else runs once per iteration) is an operation of the render's
    `budget` (at most MAX_OPERATIONS, and MAX_RENDER_SECONDS), and `*`, `**`, `+`, `%`, `~`,
    sized filters and string methods refuse to build more than MAX_SIZE items or characters,
    before they build it.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    template_class = SagaTemplate

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Only the filters whose arguments say how much they build: every other one is
        # bounded by its input, and repeated only by loops, which are counted.
        for name in _SIZED & self.filters.keys():
            self.filters[name] = _bounded_filter(name, self.filters[name])
        self.filters["_sagac_loop"] = _loop
        self.filters["_sagac_concat"] = _concat

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        return super()._generate(_Guards(self).visit(source), *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            big = isinstance(left, int) and isinstance(right, int) and right > 0
            if big and max(left.bit_length(), 1) * right > MAX_POWER_BITS:
                raise SecurityError(f"{left} ** {right} is too large")
            return left**right
        if operator == "+":
            sized = isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple))
            if sized and len(left) + len(right) > MAX_SIZE:
                raise _too_big("`+`")
            return left + right
        if operator == "%":
            if isinstance(left, str):
                if _WIDE_PERCENT.search(left):
                    raise _too_big("`%`")
                return _checked(left % right, "`%`")
            return left % right
        for seq, n in ((left, right), (right, left)):
            sized = isinstance(seq, (str, list, tuple)) and isinstance(n, int)
            if sized and len(seq) * n > MAX_SIZE:
                raise SecurityError(f"repeating a sequence {n} times is too large")
        return left * right

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget.tick()
        method = _str_method(__obj)
        if method is not None:
            text, name = method
            spec = "format_map" if name == "format" else name  # not the printf-style filter
            if _estimate(spec, text, args, kwargs) > MAX_SIZE:
                raise _too_big(f"str.{name}")
        result = super().call(__context, __obj, *args, **kwargs)
        return _checked(result, "the call") if method is not None else result

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


@cache
def environment() -> SagaEnvironment:
    return SagaEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def is_template(text: str) -> bool:
    return "{" in text and ("{{" in text or "{%" in text or "{#" in text)


def single_expression(text: str) -> str | None:
    """The expression of a string that is exactly one `{{ expr }}` (native value), else None."""
    m = _SINGLE.match(text)
    if not m or "}}" in m.group(1) or "{{" in m.group(1):
        return None
    return m.group(1)


def parse(text: str) -> nodes.Template:
    """Jinja2's AST of `text`; raises jinja2.TemplateSyntaxError."""
    return environment().parse(text)


# --- Static analysis: what a template reads, without rendering it -------------------------------

# `{{ a.b[0]['c'] }}`: the common case, recognised without Jinja's (much slower) lexer.
_SIMPLE_BLOCK = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SEGMENT = re.compile(rf"\s*(?:\.\s*({_NAME})|\[\s*([0-9]+|'[^'\\]*'|\"[^\"\\]*\")\s*\])")
_ROOT = re.compile(rf"\s*({_NAME})")
_KEYWORDS = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False"}
    | {"None", "for", "endfor", "set", "block", "with", "recursive", "import", "include"}
)
_FORBIDDEN_TAGS = {
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
    nodes.Extends: "extends",
}

Key = str | int


@dataclass(frozen=True, slots=True)
class Read:
    """A name a template reads, with the constant attribute/subscript keys that follow it.

    `{{ steps.charge.result.id }}` reads `Read("steps", ("charge", "result", "id"))`; a dynamic
    key (`steps[x]`) ends the chain.
    """

    root: str
    chain: tuple[Key, ...] = ()


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What analysing one template string found: its reads, or why it does not parse."""

    reads: tuple[Read, ...] = ()
    error: str | None = None
    error_line: int = 1
    # Reads that occur only as the operand of `| default(...)` (`a.b | default(0)`): a missing
    # last key there renders the default instead of failing.
    defaulted: frozenset[Read] = field(default=frozenset(), compare=False)


_NOT = re.compile(r"\s*not\s+")
_TEST = re.compile(rf"\s+is\s+(?:not\s+)?({_NAME})\s*\Z")
# `| default(<literal>)`: the common guard of a read that may be missing (no other filter).
_DEFAULT = re.compile(
    r"\s*\|\s*(?:default|d)\s*\(\s*(?:none|None|true|false|-?[0-9]+(?:\.[0-9]+)?"
    r"|'[^'\\{}]*'|\"[^\"\\{}]*\")\s*\)\s*\Z"
)


@lru_cache(maxsize=65536)
def _simple_chain(expr: str) -> tuple[Read, bool] | None:
    """The read of `expr` when it is a chain of constants (`a.b[0]`), optionally negated
    (`not a.b`), tested without arguments (`a.b is not none`) or given a literal default
    (`a.b | default(0)`: then the flag is true); else None.

    A test is accepted only when the environment has it: an unknown one is left to Jinja's
    parse, which reports it.
    """
    neg = _NOT.match(expr)
    m = _ROOT.match(expr, neg.end() if neg else 0)
    if not m or m.group(1) in _KEYWORDS:
        return None
    pos, chain = m.end(), []
    while True:
        seg = _SEGMENT.match(expr, pos)
        if not seg:
            break
        if seg.group(1) is not None:
            chain.append(seg.group(1))
        else:
            key = seg.group(2)
            chain.append(int(key) if key[0].isdigit() else key[1:-1])
        pos = seg.end()
    defaulted = False
    if expr[pos:].strip():
        if not neg and _DEFAULT.match(expr, pos):
            defaulted = True
        else:
            test = _TEST.match(expr, pos)
            if test is None or test.group(1) not in environment().tests:
                return None
    return Read(m.group(1), tuple(chain)), defaulted


def _fast_reads(text: str) -> tuple[tuple[Read, ...], frozenset[Read]] | None:
    """The reads of a template made only of `{{ <simple chain> }}` blocks and plain text, else
    None (anything else goes to Jinja's parser)."""
    if "{%" in text or "{#" in text:
        return None
    blocks = _SIMPLE_BLOCK.findall(text)
    # Every `{{` opens one of the blocks: none is left unclosed in the text between them.
    if text.count("{{") != len(blocks):
        return None
    reads: list[Read] = []
    defaulted: set[Read] = set()
    bare: set[Read] = set()
    for block in blocks:
        found = _simple_chain(block)
        if found is None:
            return None
        read, default = found
        reads.append(read)
        (defaulted if default else bare).add(read)
    return tuple(reads), frozenset(defaulted - bare)


class _Reads:
    """Walks a Jinja AST collecting reads of names the template does not bind itself."""

    def __init__(self, tree: nodes.Template) -> None:
        env = environment()
        self.bound: set[str] = set(env.globals)
        self.reads: list[Read] = []
        self.bare: set[Read] = set()  # reads that occur outside a `default` operand too
        self._defaulting: nodes.Node | None = None  # the operand of the `default` being visited
        self.problems: list[tuple[str, int]] = []
        for n in tree.find_all((nodes.Name, nodes.For, nodes.Macro, nodes.CallBlock)):
            if isinstance(n, nodes.Name) and n.ctx in ("store", "param"):
                self.bound.add(n.name)
            elif isinstance(n, nodes.For):
                self.bound.add("loop")
            elif isinstance(n, (nodes.Macro, nodes.CallBlock)):
                self.bound.update(("caller", "varargs", "kwargs"))
        for kind, tag in _FORBIDDEN_TAGS.items():
            for n in tree.find_all(kind):
                message = f"`{{% {tag} %}}` is not available in saga templates"
                self.problems.append((message, n.lineno))
        for n in tree.find_all(nodes.Filter):
            if n.name not in env.filters:
                self.problems.append((f"no filter named {n.name!r}", n.lineno))
        for n in tree.find_all(nodes.Test):
            if n.name not in env.tests:
                self.problems.append((f"no test named {n.name!r}", n.lineno))
        self.visit(tree)

    def visit(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Filter) and node.name in ("default", "d") and node.node:
            outer, self._defaulting = self._defaulting, node.node
            self.visit(node.node)
            self._defaulting = outer
            for child in (*node.args, *node.kwargs):
                self.visit(child)
            if node.dyn_args is not None:
                self.visit(node.dyn_args)
            if node.dyn_kwargs is not None:
                self.visit(node.dyn_kwargs)
            return
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            chain: list[Key] = []
            cur: nodes.Node = node
            while True:
                if isinstance(cur, nodes.Getattr):
                    chain.append(cur.attr)
                elif (
                    isinstance(cur, nodes.Getitem)
                    and isinstance(cur.arg, nodes.Const)
                    and isinstance(cur.arg.value, (str, int))
                    and not isinstance(cur.arg.value, bool)
                ):
                    chain.append(cur.arg.value)
                else:
                    break
                cur = cur.node
            if isinstance(cur, nodes.Name):
                self.name(cur, tuple(reversed(chain)), defaulted=node is self._defaulting)
            elif isinstance(cur, nodes.Getitem):  # a dynamic key: the chain stops before it
                self.visit(cur.node)
                self.visit(cur.arg)
            else:
                self.visit(cur)
            return
        if isinstance(node, nodes.Name):
            self.name(node, (), defaulted=node is self._defaulting)
            return
        for child in node.iter_child_nodes():
            self.visit(child)

    def name(self, node: nodes.Name, chain: tuple[Key, ...], *, defaulted: bool = False) -> None:
        if node.ctx == "load" and node.name not in self.bound:
            read = Read(node.name, chain)
            self.reads.append(read)
            if not defaulted:
                self.bare.add(read)


@lru_cache(maxsize=65536)
def analyze(text: str) -> TemplateInfo:
    """Parse `text` and list what it reads; a syntax error is reported, never raised.

    Locals (`{% set %}`, loop variables, macro arguments) and Jinja's globals (`range`, ...)
    are not reads. Unknown filters and tests, and tags that would load other templates, count
    as syntax errors: they could only fail when the saga runs.
    """
    if not is_template(text):
        return TemplateInfo()
    fast = _fast_reads(text)
    if fast is not None:
        return TemplateInfo(fast[0], defaulted=fast[1])
    try:
        tree = parse(text)
        walker = _Reads(tree)
    except TemplateSyntaxError as e:
        return TemplateInfo(error=e.message or "invalid template", error_line=e.lineno or 1)
    except RecursionError:
        return TemplateInfo(error="expression nests too deeply")
    if walker.problems:
        message, line = walker.problems[0]
        return TemplateInfo(error=message, error_line=line)
    reads = tuple(dict.fromkeys(walker.reads))
    return TemplateInfo(reads, defaulted=frozenset(reads) - walker.bare)
