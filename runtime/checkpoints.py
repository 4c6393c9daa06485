"""Checkpoints of a foreach: which items completed, in which order, as the journal says.

A foreach does not journal a `step_started`/`step_completed` pair per item: the completions of
many items go into one `batch_progress` event (`completed`: item indexes in completion order;
`cursors`: their checkpoint cursors, when the node has `checkpoint`; `results`: their kept
results, only when the compensation reads `result`). One such event is an `ItemBlock`. Blocks
are what compensation walks backwards (reverse completion order) and what a resume reads to
skip the items already done. This module only holds and folds that data: it never calls an
action and never writes to the store.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .store.base import Event


class ItemBlock:
    """Items of one foreach whose completions one journal event recorded, in that order."""

    __slots__ = ("cursors", "indexes", "results", "seq", "step")

    def __init__(
        self,
        step: str,
        seq: int,
        indexes: Iterable[int],
        cursors: list[str] | None = None,
        results: list[Any] | None = None,
    ) -> None:
        self.step = step
        self.seq = seq
        self.indexes = array("q", indexes)  # 8 bytes an item: completion order
        self.cursors = cursors
        self.results = results

    def __len__(self) -> int:
        return len(self.indexes)

    def newest_first(self) -> Iterator[tuple[int, str | None, Any]]:
        """(item index, cursor, kept result) from the last completed item to the first."""
        cursors, results = self.cursors, self.results
        for j in range(len(self.indexes) - 1, -1, -1):
            yield (
                self.indexes[j],
                cursors[j] if cursors is not None else None,
                results[j] if results is not None else None,
            )


@dataclass(slots=True)
class ItemsDone:
    """What the journal says one foreach completed (rebuilt by `journal.replay`)."""

    blocks: list[ItemBlock] = field(default_factory=list)
    count: int = 0

    def indexes(self) -> set[int]:
        return {i for b in self.blocks for i in b.indexes}

    def cursors(self) -> set[str]:
        return {c for b in self.blocks if b.cursors is not None for c in b.cursors}


def fold(done: dict[str, ItemsDone], event: Event) -> None:
    """Add the completions a `batch_progress` event records (replay calls this)."""
    completed = event.get("completed")
    if not completed:
        return
    entry = done.setdefault(event["step"], ItemsDone())
    entry.blocks.append(
        ItemBlock(
            event["step"], event["seq"], completed, event.get("cursors"), event.get("results")
        )
    )
    entry.count += len(completed)
