"""Semantic checks on the IR: everything the schema cannot say (spec section 5).

`check_ids` runs before the graph is built and `check_semantics` after it; they are the only
entry points (`pipeline.py`). Each check is one small function in a module named for what it
checks (`check_actions`, `check_steps`, `check_input`, `check_templates`; the facts they share
in `check_facts`) and returns `Diagnostic`s with stable codes, each pointing at the YAML node
to fix. Checks never raise for a user mistake, and they stay linear in the size of the saga:
ancestry questions go to `Ancestry` (bitsets built in one pass) rather than to a graph search
per template. The order below is the order diagnostics are reported in: keep it.
"""

from __future__ import annotations

from . import ir
from .check_actions import check_fixed_destinations, check_unknown_actions, check_unused_actions
from .check_facts import Facts
from .check_input import check_input_schema
from .check_steps import (
    check_any_branches,
    check_approval_timeouts,
    check_compensation_retry,
    check_idempotency,
    check_ids,
    check_irreversible_compensate,
    check_pivots,
    check_retry_codes,
    check_sleep_times,
    check_wait_timeouts,
)
from .check_templates import check_templates
from .diagnostics import Diagnostic
from .graph import SagaGraph
from .loader import Document
from .template_sites import template_sites

__all__ = ["check_ids", "check_semantics", "template_sites"]


def check_semantics(saga: ir.Saga, graph: SagaGraph, doc: Document) -> list[Diagnostic]:
    """Every semantic check (section 5 of the spec) that needs the graph."""
    facts = Facts.of(saga, graph)
    return [
        *check_unknown_actions(saga, doc),
        *check_irreversible_compensate(saga, doc),
        *check_fixed_destinations(saga, doc),
        *check_retry_codes(saga, doc),
        *check_input_schema(saga, doc),
        *check_sleep_times(saga, doc),
        *check_templates(saga, facts, doc),
        *check_idempotency(saga, doc),
        *check_pivots(saga, facts, doc),
        *check_approval_timeouts(saga, doc),
        *check_wait_timeouts(saga, doc),
        *check_compensation_retry(saga, doc),
        *check_unused_actions(saga, doc),
        *check_any_branches(saga, doc),
    ]
