"""The template language: Jinja2 expressions in a sandbox, shared by compiler and runtime.

The compiler parses every template here to find syntax errors and the names it reads; the
runtime renders with the same environment, so what compiles is what runs. The environment is
sandboxed (no private attributes, no imports, no I/O), undefined names are errors, and on
mappings `a.b` reads the key `b` before any attribute (`input.items` is the key, never
`dict.items`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_SINGLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


MAX_SIZE = 1_000_000  # items or characters one `*` may build
MAX_POWER_BITS = 4096  # bits of an integer `**` may build


class SagaEnvironment(ImmutableSandboxedEnvironment):
    """Sandboxed, strict, reading mapping keys before attributes, and bounded in arithmetic.

    Jinja's sandbox stops attribute escapes but not `'a' * 10**10` or `10**10**10`: `*` and `**`
    are intercepted here so that one template cannot exhaust memory or hang the runtime.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            big = isinstance(left, int) and isinstance(right, int) and right > 0
            if big and max(left.bit_length(), 1) * right > MAX_POWER_BITS:
                raise SecurityError(f"{left} ** {right} is too large")
            return left**right
        for seq, n in ((left, right), (right, left)):
            sized = isinstance(seq, (str, list, tuple)) and isinstance(n, int)
            if sized and len(seq) * n > MAX_SIZE:
                raise SecurityError(f"repeating a sequence {n} times is too large")
        return left * right

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
