"""`switch` nodes as the executor meets them (issue 13: the contract is in docs/language.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sagac.compiler import ir

if TYPE_CHECKING:
    from .context import RunContext


async def run_switch(
    ctx: RunContext,
    node: ir.SwitchNode,
    scope: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
) -> Any:
    raise NotImplementedError("switch nodes")
