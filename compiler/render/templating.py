"""The Jinja2 environments of the renderers, one per output language, each escaping for it.

Every environment is sandboxed (templates are ours, but the text they print comes from saga
files and run records) and escapes *every* printed value for its language unless it is
`Verbatim`/`Markup`: HTML (and SVG inside it) through Jinja2's autoescape; DOT and Mermaid
through `finalize`, which applies that language's escaper. A template cannot forget to escape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from .styles import KIND_STYLES, STATUS_STYLES

TEMPLATES = Path(__file__).parent / "templates"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Verbatim(str):
    """Text already in the output language: printed as it is."""

    __slots__ = ()


def mermaid_text(text: str) -> str:
    """Text for inside a quoted Mermaid label: entity codes for what Mermaid would parse."""
    text = _CONTROL.sub("", text)
    out = []
    for ch in text:
        if ch == "\n":
            out.append("<br>")
        elif ch in '"#%&<>`':
            out.append(f"#{ord(ch)};")
        elif ch == "\r":
            continue
        else:
            out.append(ch)
    return "".join(out)


def mermaid_edge_text(text: str) -> str:
    """Text for inside a quoted Mermaid edge label (`-->|"..."|`), where a `|` (a Jinja filter
    in a `when`) would end the label: as `mermaid_text`, and `|` as its entity code."""
    return Verbatim(mermaid_text(text).replace("|", "#124;"))


def dot_html(text: str) -> str:
    """Text for inside a DOT HTML-like label (XML escaping; a line break becomes <BR/>)."""
    text = _CONTROL.sub("", text).replace("\r", "")
    escaped = (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )
    return escaped.replace("\n", '<BR ALIGN="CENTER"/>')


def dot_string(text: str) -> str:
    """A DOT double-quoted string, quotes included (for ids and plain attributes)."""
    text = _CONTROL.sub("", text).replace("\r", "")
    body = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return Verbatim(f'"{body}"')


def _finalizer(escape: Callable[[str], str]) -> Callable[[Any], Any]:
    def finalize(value: Any) -> Any:
        if isinstance(value, Verbatim | Markup) or value is None:
            return "" if value is None else value
        return escape(str(value))

    return finalize


def _common(env: ImmutableSandboxedEnvironment) -> None:
    env.globals.update(kind_styles=KIND_STYLES, status_styles=STATUS_STYLES)
    env.filters["verbatim"] = Verbatim
    env.filters["oneline"] = lambda text: Verbatim(" ".join(str(text).split()))


@cache
def environment(language: str) -> ImmutableSandboxedEnvironment:
    """The environment for `language`: "mermaid", "dot" or "html" (HTML and inline SVG)."""
    common: dict[str, Any] = {
        "loader": FileSystemLoader(str(TEMPLATES)),
        "undefined": StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "keep_trailing_newline": True,
    }
    if language == "html":
        env = ImmutableSandboxedEnvironment(autoescape=True, **common)
    elif language == "mermaid":
        env = ImmutableSandboxedEnvironment(
            autoescape=False, finalize=_finalizer(mermaid_text), **common
        )
        env.filters["edge_text"] = mermaid_edge_text
    elif language == "dot":
        env = ImmutableSandboxedEnvironment(
            autoescape=False, finalize=_finalizer(dot_html), **common
        )
        env.filters["q"] = dot_string
    else:
        raise ValueError(f"no template environment for {language!r}")
    _common(env)
    return env


def render(language: str, template: str, **context: Any) -> str:
    return environment(language).get_template(template).render(**context)
