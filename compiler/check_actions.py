"""Checks on actions: E014 (unknown action), E025 (fixed destinations), W105 (unused).

Reads the actions a saga declares and the action references of its nodes; never reads
templates beyond what decides a destination (the template checker owns what templates read).
"""

from __future__ import annotations

import re
from typing import assert_never

from . import ir
from .check_facts import action_refs, diag, did_you_mean
from .diagnostics import Diagnostic
from .loader import Document
from .templates import analyze, is_template

SAFE_METHODS = ("GET", "HEAD")


def has_side_effect(spec: ir.Action | None) -> bool:
    """Python and command actions, and http other than GET/HEAD, change the world; mocks don't."""
    match spec:
        case ir.HttpAction():
            return spec.method.upper() not in SAFE_METHODS
        case ir.PythonAction() | ir.CommandAction():
            return True
        case ir.MockAction() | None:
            return False
        case _:
            assert_never(spec)


def check_unknown_actions(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E014: a step names an action that `actions:` does not declare."""
    out = []
    for _, ref, _ in action_refs(saga):
        if ref.spec is None and ref.name is not None:
            hint = did_you_mean(ref.name, saga.actions) + (
                f"declare it under `actions:` (declared: {', '.join(sorted(saga.actions))})"
                if saga.actions
                else "declare it under a top-level `actions:` mapping"
            )
            out.append(diag(doc, "E014", f"unknown action {ref.name!r}", ref.path, hint))
    return out


_TEMPLATE_PIECE = re.compile(r"(\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\})", re.DOTALL)
DESTINATION_NAMES = ("env", "secrets")  # set by whoever runs sagac, never by a run's input


def _authority_templates(url: str) -> list[str]:
    """The template pieces of `url` that can change its scheme or host (userinfo included).

    The authority ends at the first literal `/`, `?` or `#` after the scheme; a template after
    a literal `:` there is the port, which may stay templated, unless a literal `@` follows
    (then it was a password, and the host comes after it).
    """
    checked: list[str] = []
    port: list[str] = []
    in_port = False
    for piece in _TEMPLATE_PIECE.split(url):
        if _TEMPLATE_PIECE.fullmatch(piece):
            (port if in_port else checked).append(piece)
            continue
        i = 0
        while i < len(piece):
            if piece.startswith("://", i):
                i += 3
                continue
            c = piece[i]
            if c in "/?#":
                return checked
            if c == ":":
                in_port = True
            elif c == "@":
                checked += port
                port, in_port = [], False
            i += 1
    return checked


def check_fixed_destinations(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E025: a run's input must never choose what runs or where: a command's `argv[0]` and the
    scheme and host of an http url are literal (the host may read `env` or `secrets`)."""
    specs: list[tuple[ir.Action | None, ir.Path]] = [
        (spec, ("actions", name)) for name, spec in saga.actions.items()
    ]
    specs += [(ref.spec, ref.path) for _, ref, _ in action_refs(saga) if ref.name is None]
    out = []
    for spec, base in specs:
        if isinstance(spec, ir.CommandAction) and spec.argv and is_template(spec.argv[0]):
            out.append(
                diag(
                    doc,
                    "E025",
                    f"`argv[0]` of this command is a template ({spec.argv[0]!r}): what a run "
                    "renders into it would choose the executable",
                    (*base, "command", 0),
                    "name the executable literally; pass the choice as an argument, e.g. "
                    '["./bin/notify", "{{ args.channel }}"]',
                )
            )
        elif isinstance(spec, ir.HttpAction) and is_template(spec.url):
            reads = sorted(
                {
                    ".".join(str(k) for k in (read.root, *read.chain[:1]))
                    for piece in _authority_templates(spec.url)
                    for read in analyze(piece).reads
                    if read.root not in DESTINATION_NAMES
                }
            )
            if reads:
                out.append(
                    diag(
                        doc,
                        "E025",
                        f"the scheme or host of this url reads `{reads[0]}`: what a run renders "
                        "into it would choose where the request goes",
                        (*base, "http", "url"),
                        "write the scheme and host literally (the port and path may stay "
                        "templated), or read them from `env.<NAME>` listed under `env:`",
                    )
                )
    return out


def check_unused_actions(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """W105: a declared action that no step or compensation uses."""
    used = {ref.name for _, ref, _ in action_refs(saga)}
    return [
        diag(
            doc,
            "W105",
            f"action {name!r} is declared but never used",
            ("actions", name),
            "remove it, or reference it from a step's `action:` or a `compensate`",
            key=True,
        )
        for name in saga.actions
        if name not in used
    ]
