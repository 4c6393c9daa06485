"""How a node's run ends, in the values the executor's parts hand each other.

A node returns its result, or HALTED when it cannot finish now (an approval gate is waiting),
or raises NodeFailed once its failure is journaled; a step that completed (or, with
`compensate.on: attempted`, was attempted) leaves an `Undo` entry for the compensation.
`error_dict` is the one spelling of a StepError in events and reports. This module holds plain
values only: it must never import the executor or its parts, so each of them can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sagac.errors import StepError

HALTED: Any = object()  # a node that cannot finish now (an approval gate waiting)


class NodeFailed(Exception):
    """A node failed for good; `error` is the report's view of it."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("code"))
        self.error = error


@dataclass(slots=True)
class Undo:
    """A compensation to run: one completed (or, with `on: attempted`, attempted) step."""

    step: str
    item_index: int | None
    order: int  # seq of the event that ended the step: LIFO key
    result: Any
    error: dict[str, Any] | None
    branches: tuple[str, ...]  # enclosing group branches, outermost first
    item: Any = None  # the foreach item (its `as` name in the compensation's scope)
    block: Any = None  # a checkpoints.ItemBlock: many foreach items, undone newest first


def error_dict(exc: StepError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.detail is not None:
        out["detail"] = exc.detail
    return out
