"""Every template string of a saga, with what is in scope where it is written (`Site`).

The template checker and the runtime (`secrets_read`) read templates through `template_sites`,
so both agree on where templates are. This module only finds templates; it never judges them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, assert_never

from . import ir
from .check_facts import saga_nodes

Where = Literal["node", "compensate", "action", "output"]


@dataclass(slots=True)  # not frozen: a saga has one per template string, and freezing costs 4x
class Site:
    """One template string and the names in scope where it is written."""

    path: ir.Path
    text: str
    where: Where
    node: ir.AnyNode | None = None  # the reading node (None: output, named action)
    item: str | None = None  # the foreach `as` name, when in scope
    args: bool = False  # inside an action spec
    action: str | None = None  # the named action this template belongs to
    callback: bool = False  # `callback.token` in scope: the `with` or action of a callback step

    @property
    def field(self) -> str:
        rel = self.path[len(self.node.path) :] if self.node is not None else self.path
        out = ""
        for p in rel:
            out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
        return f"`{out}`" if out else "this template"


def _strings(value: Any, path: ir.Path) -> Iterator[tuple[ir.Path, str]]:
    if isinstance(value, str):
        yield path, value
        return
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return
    for k, v in items:
        if isinstance(v, str):  # most values: no generator of their own
            yield (*path, k), v
        elif isinstance(v, dict | list | tuple):
            yield from _strings(v, (*path, k))


def _action_strings(spec: ir.Action | None, base: ir.Path) -> Iterator[tuple[ir.Path, str]]:
    match spec:
        case ir.HttpAction():
            yield (*base, "http", "url"), spec.url
            yield from _strings(spec.headers, (*base, "http", "headers"))
            yield from _strings(spec.json_body, (*base, "http", "json"))
        case ir.CommandAction():
            yield from _strings(spec.argv, (*base, "command"))
        case ir.PythonAction() | ir.MockAction() | None:
            pass  # a python target and a mock are never templates
        case _:
            assert_never(spec)


def template_sites(saga: ir.Saga) -> Iterator[Site]:
    """Every template string of the saga, with its context."""
    for name, spec in saga.actions.items():
        for path, text in _action_strings(spec, ("actions", name)):
            yield Site(path, text, "action", args=True, action=name)
    for n in saga_nodes(saga):
        if n.when is not None:
            yield Site((*n.path, "when"), n.when, "node", n)
        match n:
            case ir.ApprovalGate():
                for fname, value in (("key", n.key), ("message", n.message)):
                    if value is not None:
                        yield Site((*n.path, fname), value, "node", n)
            case ir.FailNode():
                if n.message is not None:
                    yield Site((*n.path, "message"), n.message, "node", n)
            case ir.ParallelGroup():
                pass  # only its `when`: the nodes of its branches are walked on their own
            case ir.SleepNode():
                if n.until is not None:
                    yield Site((*n.path, "until"), n.until, "node", n)
            case ir.WaitNode():
                pass
            case ir.CallNode():
                for path, text in _strings(n.with_, (*n.path, "with")):
                    yield Site(path, text, "node", n)
            case ir.SwitchNode():
                for case in n.cases:
                    yield Site((*case.path, "when"), case.when, "node", n)
            case ir.TaskStep() | ir.ForeachNode():
                item = n.as_ if isinstance(n, ir.ForeachNode) else None
                token = isinstance(n, ir.TaskStep) and n.callback is not None
                if isinstance(n, ir.ForeachNode):
                    yield Site((*n.path, "items"), n.items, "node", n)
                    if n.checkpoint is not None:
                        yield Site((*n.path, "checkpoint"), n.checkpoint, "node", n, item)
                for path, text in _strings(n.with_, (*n.path, "with")):
                    yield Site(path, text, "node", n, item, callback=token)
                if n.idempotency_key is not None:
                    yield Site((*n.path, "idempotency_key"), n.idempotency_key, "node", n, item)
                if isinstance(n, ir.TaskStep) and n.has_simulate:
                    for path, text in _strings(n.simulate, (*n.path, "simulate")):
                        yield Site(path, text, "node", n, args=True)
                if n.action.name is None:
                    for path, text in _action_strings(n.action.spec, n.action.path):
                        yield Site(path, text, "node", n, item, args=True, callback=token)
                c = n.compensate
                if c is not None:
                    for path, text in _strings(c.with_, (*c.path, "with")):
                        yield Site(path, text, "compensate", n, item)
                    if c.idempotency_key is not None:
                        yield Site(
                            (*c.path, "idempotency_key"), c.idempotency_key, "compensate", n, item
                        )
                    if c.action.name is None:
                        for path, text in _action_strings(c.action.spec, c.action.path):
                            yield Site(path, text, "compensate", n, item, args=True)
            case _:
                assert_never(n)
    for path, text in _strings(saga.output, ("output",)):
        yield Site(path, text, "output")
