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
from functools import cache
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

_MARKERS = ("{{", "{%", "{#")
_SINGLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


class SagaEnvironment(ImmutableSandboxedEnvironment):
    """Sandboxed, strict, and reading mapping keys before attributes."""

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
    return any(m in text for m in _MARKERS)


def single_expression(text: str) -> str | None:
    """The expression of a string that is exactly one `{{ expr }}` (native value), else None."""
    m = _SINGLE.match(text)
    if not m or "}}" in m.group(1) or "{{" in m.group(1):
        return None
    return m.group(1)


def parse(text: str) -> nodes.Template:
    """Jinja2's AST of `text`; raises jinja2.TemplateSyntaxError."""
    return environment().parse(text)
