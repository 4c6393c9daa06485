"""Checks on nodes and their policies: ids, retries, idempotency, compensation, pivots, gates,
waits and sleeps.

E012, E019, E020, E030, W101, W102, W103, W104, W106 and W107: each is one function over the IR
(and, for pivots, the shared `Facts`). Templates are not read here (see `check_templates`),
beyond telling a literal `until` from a template.
"""

from __future__ import annotations

from collections import Counter
from typing import assert_never

from . import ir
from .check_actions import has_side_effect
from .check_facts import Facts, diag, own_policies, retried, saga_nodes
from .diagnostics import Diagnostic
from .durations import parse_time
from .errorcodes import EFFECT, HTTP_CODE, action_codes, can_raise, node_codes, times_out
from .graph import waits_for_children
from .loader import Document
from .templates import is_template


def check_ids(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E012: ids are unique across the whole saga, nested ones included."""
    counts = Counter(n.id for n in saga_nodes(saga))
    seen: set[str] = set()
    out = []
    for n in saga_nodes(saga):
        if counts[n.id] > 1:
            if n.id in seen:
                out.append(
                    diag(
                        doc,
                        "E012",
                        f"duplicate id {n.id!r}",
                        (*n.path, "id"),
                        "ids are unique across the saga, nested ones included; rename one",
                    )
                )
            seen.add(n.id)
    return out


def check_irreversible_compensate(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E019: a step cannot be both undoable and irreversible."""
    return [
        diag(
            doc,
            "E019",
            f"{n.id!r} is `irreversible` but has a `compensate`",
            (*n.path, "compensate"),
            "if the step can be undone, drop `irreversible: true`; otherwise remove `compensate`",
            key=True,
        )
        for n in saga_nodes(saga)
        if ir.irreversible(n) and (step := ir.effectful(n)) and step.compensate is not None
    ]


def _compensation_can_raise(n: ir.Effectful, code: str) -> bool:
    spec = n.compensate.action.spec if n.compensate else None
    if isinstance(spec, ir.HttpAction) and HTTP_CODE.match(code):
        return True
    own = n.compensate.errors if n.compensate else ()
    return code in EFFECT or code in own or code in action_codes(spec)


def _retry_code_hint(n: ir.Effectful, code: str, compensation: bool) -> str:
    if HTTP_CODE.match(code):
        return "HTTP_<status> codes come only from http actions; remove it from `on`"
    if code == "COMMAND_FAILED":
        return "COMMAND_FAILED comes only from command actions; remove it from `on`"
    if code == "CALLBACK_TIMEOUT":
        if not compensation and isinstance(n, ir.TaskStep) and n.callback is not None:
            return f"give the `callback:` of {n.id!r} a `timeout`, or remove it from `on`"
        return "CALLBACK_TIMEOUT comes only from task steps with `callback:`; remove it from `on`"
    if compensation:
        return (
            f"if the undo returns {code}, list it under `errors:` of the `compensate` of "
            f"{n.id!r} or in `defaults.compensate.errors` (a compensation does not inherit "
            "the step's `errors`); else remove it"
        )
    return f"if the action returns {code}, list it under `errors:` of {n.id!r}; else remove it"


def check_retry_codes(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E020: a retry policy written on a step names a code the step (or its undo) cannot raise.

    Policies inherited from `defaults` are not checked: they are written for every step.
    """
    out = []
    for node in saga_nodes(saga):
        n = ir.effectful(node)
        if n is None:
            continue
        sources: list[tuple[tuple[ir.RetryPolicy, ...], bool]] = [(n.retry, False)]
        if n.compensate:
            sources.append((n.compensate.retry, True))
        codes: frozenset[str] | None = None  # the node's own codes, found when first needed
        for policies, compensation in sources:
            for policy in own_policies(policies):
                for i, code in enumerate(policy.on):
                    if compensation:
                        ok = _compensation_can_raise(n, code)
                    else:
                        codes = node_codes(n) if codes is None else codes
                        ok = code in codes or can_raise(n, code)
                    if ok:
                        continue
                    who = f"the compensation of {n.id!r}" if compensation else repr(n.id)
                    out.append(
                        diag(
                            doc,
                            "E020",
                            f"retry `on` names {code}, which {who} cannot raise",
                            (*policy.path, "on", i),
                            _retry_code_hint(n, code, compensation),
                        )
                    )
    return out


def check_idempotency(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """W101: a retried call with side effects needs a key to make repeats harmless."""
    out = []
    for node in saga_nodes(saga):
        n = ir.effectful(node)
        if n is None:
            continue
        attempts = retried(n.retry)
        if attempts > 1 and has_side_effect(n.action.spec) and not n.idempotency_key:
            own = bool(own_policies(n.retry))
            out.append(
                diag(
                    doc,
                    "W101",
                    f"{n.id!r} is retried (up to {attempts} attempts"
                    f"{'' if own else ', from `defaults`'}) and has side effects, "
                    "but no `idempotency_key`",
                    (*n.path, "retry") if own else (*n.path, "id"),
                    f'add e.g. `idempotency_key: "{{{{ run.id }}}}-{n.id}"` so that a repeated '
                    "call is recognised, or set `retry: {max_attempts: 1}`",
                    key=own,
                )
            )
        c = n.compensate
        if c is None:
            continue
        attempts = retried(c.retry)
        if attempts > 1 and has_side_effect(c.action.spec) and not c.idempotency_key:
            out.append(
                diag(
                    doc,
                    "W101",
                    f"the compensation of {n.id!r} is retried (up to {attempts} attempts) and has "
                    "side effects, but no `idempotency_key`",
                    c.path,
                    f'add e.g. `idempotency_key: "{{{{ run.id }}}}-undo-{n.id}"` to `compensate`',
                    key=True,
                )
            )
    return out


def check_compensation_retry(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """W104: an undo that gives up after one failure leaves the world half changed."""
    return [
        diag(
            doc,
            "W104",
            f"the compensation of {n.id!r} has no retry: one failure leaves it for a person",
            n.compensate.path,
            "add e.g. `retry: {max_attempts: 10}` under `compensate` "
            "(or a `defaults.compensate.retry`)",
            key=True,
        )
        for node in saga_nodes(saga)
        if (n := ir.effectful(node)) is not None
        and n.compensate is not None
        and not n.compensate.retry_declared
    ]


def check_approval_timeouts(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """W103: a gate without a timeout can keep a run waiting (and resources held) forever."""
    return [
        diag(
            doc,
            "W103",
            f"approval {n.id!r} has no `timeout`: the run may wait forever",
            n.path,
            "add e.g. `timeout: 48h` (and `on_timeout: reject` or `fail`)",
            key=True,
        )
        for n in saga_nodes(saga)
        if isinstance(n, ir.ApprovalGate) and n.timeout is None
    ]


def check_wait_timeouts(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """W107: a `wait`, or a step's `callback`, without a timeout can keep a run waiting (and
    what it holds) forever, like a gate without one (W103)."""
    out = []
    for n in saga_nodes(saga):
        if isinstance(n, ir.WaitNode) and n.timeout is None:
            out.append(
                diag(
                    doc,
                    "W107",
                    f"wait {n.id!r} has no `timeout`: the run may wait forever for signal "
                    f"{n.signal!r}",
                    n.path,
                    "add e.g. `timeout: 24h` (and `on_timeout: fail` or `continue`)",
                    key=True,
                )
            )
        elif isinstance(n, ir.TaskStep) and n.callback is not None and n.callback.timeout is None:
            out.append(
                diag(
                    doc,
                    "W107",
                    f"the `callback` of {n.id!r} has no `timeout`: the run may wait forever for it",
                    n.callback.path,
                    "add e.g. `callback: {timeout: 1h}` (a late callback fails the attempt with "
                    "CALLBACK_TIMEOUT, which `retry.on` may name)",
                    key=True,
                )
            )
    return out


def check_sleep_times(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E030: a literal `until` must be an RFC 3339 time with a zone (a template is checked when
    it renders, as a TEMPLATE_ERROR of the node)."""
    out = []
    for n in saga_nodes(saga):
        if not isinstance(n, ir.SleepNode) or n.until is None or is_template(n.until):
            continue
        try:
            parse_time(n.until)
        except ValueError as e:
            out.append(
                diag(
                    doc,
                    "E030",
                    f"`until` of {n.id!r}: {e}",
                    (*n.path, "until"),
                    "write an RFC 3339 time with a zone, e.g. `2026-12-24T09:00:00+01:00` or "
                    '`2026-12-24T08:00:00Z`, or a template such as "{{ input.ship_at }}"',
                )
            )
    return out


def check_pivots(saga: ir.Saga, facts: Facts, doc: Document) -> list[Diagnostic]:
    """W102: once an irreversible step (the pivot) has completed, later steps should not fail.

    A node is after a pivot when the pivot is its ancestor, or when the pivot sits in a branch
    of an `any` group that is the node's ancestor (the pivot's branch may have completed).
    """
    anc = facts.ancestry
    if not anc.ok:
        return []
    pivots: dict[int, str] = {}  # a bit that marks "after this pivot" -> the pivot's id
    for n in saga_nodes(saga):
        if ir.irreversible(n) and n.id not in facts.in_on_failure:
            pivots.setdefault(anc.bit(n.id), n.id)
            group = facts.group_of.get(n.id)
            while group is not None:
                if not waits_for_children(facts.graph.nodes[group]):
                    pivots.setdefault(anc.bit(group), n.id)
                group = facts.group_of.get(group)
    mask = 0
    for bit in pivots:
        mask |= bit
    out = []
    for n in saga_nodes(saga):
        if n.id in facts.in_on_failure:
            continue
        hits = anc.masks.get(n.id, 0) & mask
        if not hits:
            continue
        pivot = pivots[1 << (hits.bit_length() - 1)]  # the nearest: latest in topological order
        match n:
            case ir.ParallelGroup() | ir.SwitchNode():
                continue  # it fails only through its branches' nodes, each checked
            case ir.SleepNode():
                continue  # only a template error can fail it
            case ir.WaitNode():
                if not times_out(n):
                    continue  # it waits as long as it takes, or continues with a null result
                what = "a wait that fails when it times out"
                hint = f"set `on_timeout: continue`, or wait for the signal before {pivot!r}"
            case ir.CallNode():
                what, hint = "a call", f"call it before {pivot!r}"
            case ir.FailNode():
                what, hint = "a `fail` node", f"move this check before {pivot!r}"
            case ir.ApprovalGate():
                what, hint = "an approval gate", f"ask for approval before {pivot!r}"
            case ir.TaskStep() | ir.ForeachNode():
                if retried(n.retry) > 1:
                    continue
                what = "a step without retry"
                hint = f"give it a `retry` (max_attempts > 1), or move it before {pivot!r}"
            case _:
                assert_never(n)
        out.append(
            diag(
                doc,
                "W102",
                f"{n.id!r} ({what}) can fail after the irreversible step {pivot!r} has completed, "
                "and that step cannot be undone",
                (*n.path, "id"),
                hint,
            )
        )
    return out


def check_any_branches(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """W106: a losing `any` branch that completed anyway is undone, if it can be."""
    out = []
    for g in saga_nodes(saga):
        if not isinstance(g, ir.ParallelGroup) or g.mode != "any":
            continue  # a switch runs only the case it takes: nothing is cancelled
        for node in ir.descendants(g):
            n = ir.effectful(node)
            if n is not None and n.compensate is None and has_side_effect(n.action.spec):
                out.append(
                    diag(
                        doc,
                        "W106",
                        f"{n.id!r} in a branch of the `any` group {g.id!r} has side effects but "
                        "no `compensate`",
                        (*n.path, "id"),
                        "if another branch wins, what this step did stays done: add a "
                        "`compensate`, or use an action without side effects",
                    )
                )
    return out
