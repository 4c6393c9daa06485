"""Which error codes each node can end with: the basis of retry checks and the plan's union."""

from __future__ import annotations

import re
from typing import assert_never

from . import ir

# Any step may end with these, whatever its action does.
ALWAYS = frozenset({"TIMEOUT", "UNAVAILABLE", "UNEXPECTED", "CANCELLED", "TEMPLATE_ERROR"})
EFFECT = ALWAYS | {"RESULT_TOO_LARGE"}
SAGA_LEVEL = frozenset({"SAGA_TIMEOUT", "CANCELLED"})
BUILTIN = (
    EFFECT
    | SAGA_LEVEL
    | {
        "APPROVAL_REJECTED",
        "APPROVAL_TIMEOUT",
        "BATCH_ITEM_FAILED",
        "COMMAND_FAILED",
        "WAIT_TIMEOUT",
        "CALLBACK_TIMEOUT",
    }
)
HTTP_CODE = re.compile(r"^HTTP_[1-5][0-9][0-9]$")


def action_codes(spec: ir.Action | None) -> frozenset[str]:
    """Codes an action of this kind ends with besides `EFFECT` (http statuses: `can_raise`)."""
    match spec:
        case ir.CommandAction():
            return frozenset({"COMMAND_FAILED"})
        case ir.MockAction():
            return frozenset({spec.fail}) if spec.fail else frozenset()
        case ir.PythonAction() | ir.HttpAction() | None:
            return frozenset()
        case _:
            assert_never(spec)


def can_raise(node: ir.AnyNode, code: str) -> bool:
    """Whether `node` can fail with `code` (HTTP_<status> for any http action)."""
    step = ir.effectful(node)
    if step is not None and isinstance(step.action.spec, ir.HttpAction) and HTTP_CODE.match(code):
        return True
    return code in node_codes(node)


def times_out(node: ir.TaskStep | ir.WaitNode) -> bool:
    """Whether waiting can fail `node` (CALLBACK_TIMEOUT, WAIT_TIMEOUT): it has a timeout and,
    for a wait, `on_timeout: fail`. Without a timeout it waits for ever (W107)."""
    if isinstance(node, ir.WaitNode):
        return node.timeout is not None and node.on_timeout == "fail"
    return node.callback is not None and node.callback.timeout is not None


def node_codes(node: ir.AnyNode) -> frozenset[str]:
    """Codes `node` can fail with (http statuses are summarised as none: see `can_raise`)."""
    match node:
        case ir.TaskStep():
            codes = EFFECT | set(node.errors) | action_codes(node.action.spec)
            return codes | {"CALLBACK_TIMEOUT"} if times_out(node) else codes
        case ir.ForeachNode():
            codes = EFFECT | {"BATCH_ITEM_FAILED"} | set(node.errors)
            return codes | action_codes(node.action.spec)
        case ir.ApprovalGate():
            return ALWAYS | {"APPROVAL_REJECTED", "APPROVAL_TIMEOUT"}
        case ir.FailNode():
            return ALWAYS | {node.code}
        case ir.SleepNode():
            return ALWAYS
        case ir.WaitNode():
            return ALWAYS | {"WAIT_TIMEOUT"} if times_out(node) else ALWAYS
        case ir.CallNode():
            return ALWAYS  # and the child's codes: resolved with the child (`Plan.calls`)
        case ir.ParallelGroup() | ir.SwitchNode():
            out: set[str] = set(ALWAYS)
            for nodes in ir.children(node):
                for child in nodes:
                    out |= node_codes(child)
            return frozenset(out)
        case _:
            assert_never(node)


def saga_codes(saga: ir.Saga) -> list[str]:
    """Every code a run of `saga` can end with, sorted; `HTTP_4xx` stands for any 4xx status."""
    out: set[str] = set(SAGA_LEVEL)
    for node in saga.steps:
        out |= node_codes(node)
    if any(
        (step := ir.effectful(n)) is not None and isinstance(step.action.spec, ir.HttpAction)
        for n in saga.walk()
    ):
        out.add("HTTP_4xx")
    return sorted(out)
