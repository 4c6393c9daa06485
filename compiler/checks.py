"""Semantic checks on the IR: everything the schema cannot say (spec section 5).

Each check is one small function that reads the IR (and the graph) and returns `Diagnostic`s
with stable codes, each pointing at the YAML node to fix. Checks never raise for a user
mistake, and they stay linear in the size of the saga: ancestry questions go to `Ancestry`
(bitsets built in one pass) rather than to a graph search per template.
"""

from __future__ import annotations

import difflib
import re
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema

from . import ir
from .diagnostics import Diagnostic
from .errorcodes import EFFECT, HTTP_CODE, action_codes, can_raise, node_codes
from .graph import ON_FAILURE, SagaGraph
from .loader import Document
from .templates import Read, TemplateInfo, analyze, is_template

Where = Literal["node", "compensate", "action", "output"]

BASE_NAMES = ("input", "steps", "run", "env", "secrets")
RUN_FIELDS = ("id", "saga")
STEP_FIELDS = ("result", "status")
SAFE_METHODS = ("GET", "HEAD")


def _diag(
    doc: Document,
    code: str,
    msg: str,
    path: ir.Path,
    hint: str | None = None,
    *,
    key: bool = False,
) -> Diagnostic:
    mark = doc.source.at(path, key=key)
    return Diagnostic(code, msg, doc.file, mark.line, mark.column, hint)


GUESSES_PER_SAGA = 100  # "did you mean" hints for unknown step ids, at most, per saga


def _did_you_mean(word: str, choices: Any) -> str:
    guess = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean `{guess[0]}`? " if guess else ""


def has_side_effect(spec: ir.Action | None) -> bool:
    """Python and command actions, and http other than GET/HEAD, change the world; mocks don't."""
    if isinstance(spec, ir.HttpAction):
        return spec.method.upper() not in SAFE_METHODS
    return isinstance(spec, (ir.PythonAction, ir.CommandAction))


_walks: dict[int, list[ir.AnyNode]] = {}  # id(saga) -> its walk, for as long as it lives


def _walk(saga: ir.Saga) -> list[ir.AnyNode]:
    """`saga.walk()`, computed once per saga (every check walks it).

    The cache never keeps a saga's nodes alive past the saga itself: freeing a large saga's
    IR takes a while, and it belongs to the compilation that made it, not to the next one.
    """
    nodes = _walks.get(id(saga))
    if nodes is None:
        nodes = _walks[id(saga)] = saga.walk()
        weakref.finalize(saga, _walks.pop, id(saga), None)
    return nodes


def _retried(policies: tuple[ir.RetryPolicy, ...]) -> int:
    """The most attempts a list of policies allows in all (1: not retried).

    As in `runtime/retry.py`, an error uses the first policy whose `on` names its code, and each
    policy counts its own retries: a policy with `max_attempts: N` adds N - 1 retries, unless
    every code it names is taken by an earlier policy (it can then never apply).
    """
    taken: set[str] = set()
    attempts = 1
    for p in policies:
        if not set(p.on) <= taken:
            attempts += max(p.max_attempts - 1, 0)
        taken.update(p.on)
    return attempts


def _own(policies: tuple[ir.RetryPolicy, ...]) -> tuple[ir.RetryPolicy, ...]:
    """The policies written on the node itself, not inherited from `defaults`."""
    return tuple(p for p in policies if p.path[:1] != ("defaults",))


class Ancestry:
    """Which nodes are certain to have completed before a node starts, as one bitset per node.

    Built in a single pass over `graph.ancestry` in topological order (a node's set is the
    union of its predecessors' sets and bits), so a 10,000-step chain costs a few milliseconds
    where a graph search per question would be quadratic.
    """

    def __init__(self, graph: SagaGraph) -> None:
        preds = graph.ancestry
        self.index: dict[str, int] = {}
        self.masks: dict[str, int] = {}
        order = graph.topological_order()
        if order is None:  # a cycle was reported (E013): answer "unknown"
            self.ok = False
            return
        self.ok = True
        for i, n in enumerate(order):
            self.index[n] = i
        for n in order:
            mask = 0
            for p in preds[n]:
                mask |= self.masks[p] | (1 << self.index[p])
            self.masks[n] = mask

    def bit(self, node: str) -> int:
        return 1 << self.index[node] if node in self.index else 0

    def is_ancestor(self, a: str, node: str) -> bool:
        """Whether `a` is certain to have completed before `node` starts (unknown: True)."""
        if not self.ok:
            return True
        return bool(self.masks.get(node, 0) & self.bit(a))


@dataclass(slots=True)
class Facts:
    """What several checks need to know about the saga's shape, computed once."""

    saga: ir.Saga
    graph: SagaGraph
    ancestry: Ancestry
    group_of: dict[str, str]  # node id -> the parallel group whose branch holds it
    in_on_failure: set[str]
    in_any_branch: dict[str, str]  # node id -> the outermost `any` group it may not run in

    @classmethod
    def of(cls, saga: ir.Saga, graph: SagaGraph) -> Facts:
        group_of: dict[str, str] = {}
        for n in _walk(saga):
            if isinstance(n, ir.ParallelGroup):
                for branch in n.branches:
                    for child in branch:
                        group_of[child.id] = n.id
        in_on_failure = {
            nid for nid, key in graph.scope_of.items() if _root_scope(graph, key) == ON_FAILURE
        }
        in_any: dict[str, str] = {}
        for n in _walk(saga):  # outer groups come first in a depth-first walk
            if isinstance(n, ir.ParallelGroup) and n.mode == "any":
                for child in _descendants(n):
                    in_any.setdefault(child.id, n.id)
        return cls(saga, graph, Ancestry(graph), group_of, in_on_failure, in_any)


def _root_scope(graph: SagaGraph, key: str) -> str:
    while key in graph.scopes and graph.scopes[key].owner is not None:
        owner = graph.scopes[key].owner
        assert owner is not None
        key = graph.scope_of[owner]
    return key


def _descendants(group: ir.ParallelGroup) -> Iterator[ir.AnyNode]:
    for branch in group.branches:
        for child in branch:
            yield child
            if isinstance(child, ir.ParallelGroup):
                yield from _descendants(child)


# --- Actions ------------------------------------------------------------------------------------


def _refs(saga: ir.Saga) -> Iterator[tuple[ir.Effectful, ir.ActionRef, bool]]:
    """Every action reference: (node, ref, whether it is the node's compensation)."""
    for n in _walk(saga):
        if isinstance(n, (ir.TaskStep, ir.ForeachNode)):
            yield n, n.action, False
            if n.compensate:
                yield n, n.compensate.action, True


def check_unknown_actions(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E014: a step names an action that `actions:` does not declare."""
    out = []
    for _, ref, _ in _refs(saga):
        if ref.spec is None and ref.name is not None:
            hint = _did_you_mean(ref.name, saga.actions) + (
                f"declare it under `actions:` (declared: {', '.join(sorted(saga.actions))})"
                if saga.actions
                else "declare it under a top-level `actions:` mapping"
            )
            out.append(_diag(doc, "E014", f"unknown action {ref.name!r}", ref.path, hint))
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
    specs += [(ref.spec, ref.path) for _, ref, _ in _refs(saga) if ref.name is None]
    out = []
    for spec, base in specs:
        if isinstance(spec, ir.CommandAction) and spec.argv and is_template(spec.argv[0]):
            out.append(
                _diag(
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
                    _diag(
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
    used = {ref.name for _, ref, _ in _refs(saga)}
    return [
        _diag(
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


# --- Steps --------------------------------------------------------------------------------------


def check_ids(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E012: ids are unique across the whole saga, nested ones included."""
    counts = Counter(n.id for n in _walk(saga))
    seen: set[str] = set()
    out = []
    for n in _walk(saga):
        if counts[n.id] > 1:
            if n.id in seen:
                out.append(
                    _diag(
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
        _diag(
            doc,
            "E019",
            f"{n.id!r} is `irreversible` but has a `compensate`",
            (*n.path, "compensate"),
            "if the step can be undone, drop `irreversible: true`; otherwise remove `compensate`",
            key=True,
        )
        for n in _walk(saga)
        if isinstance(n, ir.TaskStep) and n.irreversible and n.compensate is not None
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
    if compensation:
        return (
            f"if the undo returns {code}, list it under `errors:` of the `compensate` of "
            f"{n.id!r} (a compensation does not inherit the step's `errors`); else remove it"
        )
    return f"if the action returns {code}, list it under `errors:` of {n.id!r}; else remove it"


def check_retry_codes(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E020: a retry policy written on a step names a code the step (or its undo) cannot raise.

    Policies inherited from `defaults` are not checked: they are written for every step.
    """
    out = []
    for n in _walk(saga):
        if not isinstance(n, (ir.TaskStep, ir.ForeachNode)):
            continue
        sources: list[tuple[tuple[ir.RetryPolicy, ...], bool]] = [(n.retry, False)]
        if n.compensate:
            sources.append((n.compensate.retry, True))
        codes: frozenset[str] | None = None  # the node's own codes, found when first needed
        for policies, compensation in sources:
            for policy in _own(policies):
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
                        _diag(
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
    for n in _walk(saga):
        if not isinstance(n, (ir.TaskStep, ir.ForeachNode)):
            continue
        attempts = _retried(n.retry)
        if attempts > 1 and has_side_effect(n.action.spec) and not n.idempotency_key:
            own = bool(_own(n.retry))
            out.append(
                _diag(
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
        attempts = _retried(c.retry)
        if attempts > 1 and has_side_effect(c.action.spec) and not c.idempotency_key:
            out.append(
                _diag(
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
        _diag(
            doc,
            "W104",
            f"the compensation of {n.id!r} has no retry: one failure leaves it for a person",
            n.compensate.path,
            "add e.g. `retry: {max_attempts: 10}` under `compensate` (or a `defaults.retry`)",
            key=True,
        )
        for n in _walk(saga)
        if isinstance(n, (ir.TaskStep, ir.ForeachNode))
        and n.compensate is not None
        and not n.compensate.retry_declared
    ]


def check_approval_timeouts(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """W103: a gate without a timeout can keep a run waiting (and resources held) forever."""
    return [
        _diag(
            doc,
            "W103",
            f"approval {n.id!r} has no `timeout`: the run may wait forever",
            n.path,
            "add e.g. `timeout: 48h` (and `on_timeout: reject` or `fail`)",
            key=True,
        )
        for n in _walk(saga)
        if isinstance(n, ir.ApprovalGate) and n.timeout is None
    ]


def check_pivots(saga: ir.Saga, facts: Facts, doc: Document) -> list[Diagnostic]:
    """W102: once an irreversible step (the pivot) has completed, later steps should not fail.

    A node is after a pivot when the pivot is its ancestor, or when the pivot sits in a branch
    of an `any` group that is the node's ancestor (the pivot's branch may have completed).
    """
    anc = facts.ancestry
    if not anc.ok:
        return []
    pivots: dict[int, str] = {}  # a bit that marks "after this pivot" -> the pivot's id
    for n in _walk(saga):
        if isinstance(n, ir.TaskStep) and n.irreversible and n.id not in facts.in_on_failure:
            pivots.setdefault(anc.bit(n.id), n.id)
            group = facts.group_of.get(n.id)
            while group is not None:
                if isinstance(g := facts.graph.nodes[group], ir.ParallelGroup) and g.mode == "any":
                    pivots.setdefault(anc.bit(group), n.id)
                group = facts.group_of.get(group)
    mask = 0
    for bit in pivots:
        mask |= bit
    out = []
    for n in _walk(saga):
        if n.id in facts.in_on_failure or isinstance(n, ir.ParallelGroup):
            continue
        hits = anc.masks.get(n.id, 0) & mask
        if not hits:
            continue
        pivot = pivots[1 << (hits.bit_length() - 1)]  # the nearest: latest in topological order
        if isinstance(n, ir.FailNode):
            what, hint = "a `fail` node", f"move this check before {pivot!r}"
        elif isinstance(n, ir.ApprovalGate):
            what, hint = "an approval gate", f"ask for approval before {pivot!r}"
        elif _retried(n.retry) > 1:
            continue
        else:
            what = "a step without retry"
            hint = f"give it a `retry` (max_attempts > 1), or move it before {pivot!r}"
        out.append(
            _diag(
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
    for g in _walk(saga):
        if not (isinstance(g, ir.ParallelGroup) and g.mode == "any"):
            continue
        for n in _descendants(g):
            if (
                isinstance(n, (ir.TaskStep, ir.ForeachNode))
                and n.compensate is None
                and has_side_effect(n.action.spec)
            ):
                out.append(
                    _diag(
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


def check_input_schema(saga: ir.Saga, doc: Document) -> list[Diagnostic]:
    """E023: `input:` must itself be a valid JSON Schema, or no run could be checked."""
    schema = saga.input_schema
    if schema is None:
        return []
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    out = []
    for err in cls(cls.META_SCHEMA).iter_errors(schema):
        path = tuple(err.absolute_path)
        message = err.message
        if path and path[-1] == "type":
            message = (
                f"{err.instance!r} is not a JSON Schema type "
                "(string, number, integer, boolean, object, array, null)"
            )
        where = ".".join(str(p) for p in ("input", *path))
        out.append(
            _diag(
                doc,
                "E023",
                f"`{where}` is not valid JSON Schema: {message}",
                ("input", *path),
                "`input:` is a JSON Schema (draft 2020-12) for the run's input",
            )
        )
    return out


# --- Templates ----------------------------------------------------------------------------------


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
    if isinstance(spec, ir.HttpAction):
        yield (*base, "http", "url"), spec.url
        yield from _strings(spec.headers, (*base, "http", "headers"))
        yield from _strings(spec.json_body, (*base, "http", "json"))
    elif isinstance(spec, ir.CommandAction):
        yield from _strings(spec.argv, (*base, "command"))


def template_sites(saga: ir.Saga) -> Iterator[Site]:
    """Every template string of the saga, with its context."""
    for name, spec in saga.actions.items():
        for path, text in _action_strings(spec, ("actions", name)):
            yield Site(path, text, "action", args=True, action=name)
    for n in _walk(saga):
        if n.when is not None:
            yield Site((*n.path, "when"), n.when, "node", n)
        if isinstance(n, ir.ApprovalGate):
            for fname, value in (("key", n.key), ("message", n.message)):
                if value is not None:
                    yield Site((*n.path, fname), value, "node", n)
        elif isinstance(n, ir.FailNode) and n.message is not None:
            yield Site((*n.path, "message"), n.message, "node", n)
        elif isinstance(n, (ir.TaskStep, ir.ForeachNode)):
            item = n.as_ if isinstance(n, ir.ForeachNode) else None
            if isinstance(n, ir.ForeachNode):
                yield Site((*n.path, "items"), n.items, "node", n)
                if n.checkpoint is not None:
                    yield Site((*n.path, "checkpoint"), n.checkpoint, "node", n, item)
            for path, text in _strings(n.with_, (*n.path, "with")):
                yield Site(path, text, "node", n, item)
            if n.idempotency_key is not None:
                yield Site((*n.path, "idempotency_key"), n.idempotency_key, "node", n, item)
            if isinstance(n, ir.TaskStep) and n.has_simulate:
                for path, text in _strings(n.simulate, (*n.path, "simulate")):
                    yield Site(path, text, "node", n, args=True)
            if n.action.name is None:
                for path, text in _action_strings(n.action.spec, n.action.path):
                    yield Site(path, text, "node", n, item, args=True)
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
    for path, text in _strings(saga.output, ("output",)):
        yield Site(path, text, "output")


class _TemplateChecker:
    """Checks what each template reads against what is in scope where it is written."""

    def __init__(self, saga: ir.Saga, facts: Facts, doc: Document) -> None:
        self.saga, self.facts, self.doc = saga, facts, doc
        self.nodes = facts.graph.nodes
        self.out: list[Diagnostic] = []
        # A "did you mean" compares against every node id: bounded, so that a huge saga full of
        # unknown reads stays linear to check (the first ones are the ones a person reads).
        self.guesses_left = GUESSES_PER_SAGA
        self.info = TemplateInfo()  # the analysis of the template being checked
        # Named actions are checked as if written in each step that uses them.
        self.users: dict[str, list[tuple[ir.Effectful, bool]]] = {}
        for n, ref, compensation in _refs(saga):
            if ref.name is not None:
                self.users.setdefault(ref.name, []).append((n, compensation))

    def run(self) -> list[Diagnostic]:
        for site in template_sites(self.saga):
            info = analyze(site.text)
            if info.error is not None:
                line = f" (line {info.error_line} of the template)" if "\n" in site.text else ""
                self.report(
                    site,
                    "E016",
                    f"template syntax error in {site.field}: {info.error}{line}",
                    'templates are Jinja2 expressions, e.g. "order-{{ input.order_id }}"',
                )
                continue
            self.info = info
            reads = info.reads
            for read in dict.fromkeys(reads) if len(reads) > 1 else reads:
                self.read(site, read)
        return self.out

    def report(self, site: Site, code: str, msg: str, hint: str | None) -> None:
        d = _diag(self.doc, code, msg, site.path, hint)
        if not self.out or self.out[-1] != d:  # `a | default(a)` reads `a` twice: say it once
            self.out.append(d)

    def in_on_failure(self, site: Site) -> bool:
        return site.node is not None and site.node.id in self.facts.in_on_failure

    def allowed(self, site: Site) -> list[str]:
        names = list(BASE_NAMES)
        if site.where == "compensate":
            names += ["result", "error", "failure"]
        if self.in_on_failure(site):
            names += ["failure", "report"]
        if site.args:
            names.append("args")
        if site.item:
            names.append(site.item)
        return names

    def read(self, site: Site, read: Read) -> None:
        root, chain = read.root, read.chain
        if site.item is not None and root == site.item:
            return
        first = chain[0] if chain and isinstance(chain[0], str) else None
        if root == "input":
            return
        if root == "steps":
            if first is not None:
                self.step_read(site, first, chain)
        elif root in ("env", "secrets"):
            if root == "secrets" and site.path[-1] == "idempotency_key":
                self.secret_key(site)
            self.env_read(site, root, first)
        elif root == "run":
            if first is not None and first not in RUN_FIELDS:
                self.report(
                    site,
                    "E022",
                    f"{site.field} reads `run.{first}`: `run` has only `id` and `saga`",
                    _did_you_mean(first, RUN_FIELDS).strip() or None,
                )
        elif root in ("result", "error"):
            if site.where != "compensate":
                self.report(
                    site,
                    "E018",
                    f"{site.field} reads `{root}`, which exists only inside `compensate`",
                    "to read a step's result elsewhere, write `steps.<id>.result`",
                )
            elif root == "result" and first is not None and site.node is not None:
                self.keep(site, site.node, first, "result")
        elif root == "failure":
            if site.where != "compensate" and not self.in_on_failure(site):
                self.report(
                    site,
                    "E022",
                    f"{site.field} reads `failure`, which exists only inside `compensate` and "
                    "`on_failure` nodes",
                    None,
                )
        elif root == "report":
            if not self.in_on_failure(site):
                self.report(
                    site,
                    "E022",
                    f"{site.field} reads `report`, which exists only in `on_failure` nodes",
                    None,
                )
        elif root == "args":
            if not site.args:
                self.report(
                    site,
                    "E022",
                    f"{site.field} reads `args`, which exists only inside an action spec "
                    "(it holds the step's rendered `with`)",
                    "read the value where it comes from, e.g. `input.<name>`",
                )
        else:
            allowed = self.allowed(site)
            self.report(
                site,
                "E022",
                f"{site.field} reads unknown name `{root}`",
                _did_you_mean(root, allowed) + f"names in scope here: {', '.join(allowed)}",
            )

    def secret_key(self, site: Site) -> None:
        """E024: a key is sent to other systems and journaled verbatim (a resume must send the
        same one), so it may not carry a secret; a redacted key would change on resume."""
        self.report(
            site,
            "E024",
            f"{site.field} reads `secrets`: an idempotency key is journaled verbatim and sent "
            "to other systems",
            "build the key from the run and its input, e.g. "
            '"{{ run.id }}-charge" or "charge-{{ input.order_id }}"',
        )

    def env_read(self, site: Site, root: str, name: str | None) -> None:
        listed = self.saga.env if root == "env" else self.saga.secrets
        if name is None or name in listed:
            return
        other = "secrets" if root == "env" else "env"
        if name in (self.saga.secrets if root == "env" else self.saga.env):
            hint = f"{name} is listed under `{other}:`: read it as `{other}.{name}`"
        else:
            hint = f"add {name} to the top-level `{root}:` list"
        self.report(
            site, "E022", f"{site.field} reads `{root}.{name}`, not listed under `{root}:`", hint
        )

    def step_read(self, site: Site, target: str, chain: tuple[str | int, ...]) -> None:
        if target not in self.nodes:
            hint = None
            if self.guesses_left > 0:
                self.guesses_left -= 1
                hint = _did_you_mean(target, self.nodes).strip() or None
            self.report(
                site,
                "E022",
                f"{site.field} reads `steps.{target}`, but no node has the id {target!r}",
                hint,
            )
            return
        if len(chain) > 1 and chain[1] not in STEP_FIELDS:
            self.report(
                site,
                "E022",
                f"{site.field} reads `steps.{target}.{chain[1]}`: a step has only `result` "
                "and `status`",
                _did_you_mean(str(chain[1]), STEP_FIELDS).strip() or None,
            )
            return
        if self.ordering(site, target) and len(chain) > 2 and chain[1] == "result":
            self.conditional(site, target, chain)
        if len(chain) > 2 and chain[1] == "result" and isinstance(chain[2], str):
            self.keep(site, self.nodes[target], chain[2], f"steps.{target}.result")

    def readers(self, site: Site) -> list[tuple[ir.AnyNode, bool]]:
        """The nodes a template runs in: (node, whether in its `compensate`)."""
        if site.action is not None:
            return list(self.users.get(site.action, []))
        if site.node is not None:
            return [(site.node, site.where == "compensate")]
        return []

    def ordering(self, site: Site, target: str) -> bool:
        """E017: a template may read only steps certain to have completed before it runs.
        Whether the read passed (and is to be checked further)."""
        if self.in_on_failure(site):
            return False
        if site.where == "output":
            return self.output_read(site, target)
        for reader, compensation in self.readers(site):
            if reader.id in self.facts.in_on_failure:
                continue
            if reader.id == target:
                if compensation:
                    continue
                self.report(
                    site,
                    "E017",
                    f"{site.field} of {reader.id!r} reads its own `steps.{target}`, which has not "
                    "completed yet",
                    "inside `compensate`, the step's result is `result`",
                )
                return False
            if not self.facts.ancestry.is_ancestor(target, reader.id):
                via = f" (through action {site.action!r})" if site.action else ""
                self.report(
                    site,
                    "E017",
                    f"{site.field}{via} reads `steps.{target}`, but {target!r} is not certain to "
                    f"have completed before {reader.id!r} starts",
                    self.ordering_hint(reader, target),
                )
                return False
        return True

    def ordering_hint(self, reader: ir.AnyNode, target: str) -> str:
        scope_of = self.facts.graph.scope_of
        if target in self.facts.in_on_failure:
            return f"{target!r} is an `on_failure` node: it runs only after the saga failed"
        if target in self.facts.in_any_branch:
            group = self.facts.in_any_branch[target]
            if self.facts.ancestry.is_ancestor(group, reader.id):
                return (
                    f"{target!r} is in a branch of the `any` group {group!r} and may not have "
                    f"run: read `steps.{group}.result` (the winning branch's last result)"
                )
        if scope_of.get(target) == scope_of.get(reader.id):
            return (
                f"add {target!r} to the `after:` of {reader.id!r}, or move {reader.id!r} below it"
            )
        return (
            "a node can read the nodes it depends on (directly or through earlier nodes and "
            "enclosing groups), never a node of another branch"
        )

    def output_read(self, site: Site, target: str) -> bool:
        if target in self.facts.in_on_failure:
            hint = f"{target!r} is an `on_failure` node: it runs only after the saga failed"
        elif target in self.facts.in_any_branch:
            group = self.facts.in_any_branch[target]
            hint = (
                f"it is in a branch of the `any` group {group!r}: read `steps.{group}.result` "
                "(the winning branch's last result)"
            )
        else:
            return True
        self.report(
            site,
            "E017",
            f"{site.field} reads `steps.{target}`, which is not certain to have run when the "
            "saga succeeds",
            hint,
        )
        return False

    def enclosing(self, node_id: str) -> list[str]:
        """The parallel groups whose branches hold `node_id`, innermost first."""
        out = []
        group = self.facts.group_of.get(node_id)
        while group is not None:
            out.append(group)
            group = self.facts.group_of.get(group)
        return out

    def conditional(self, site: Site, target: str, chain: tuple[str | int, ...]) -> None:
        """E017: a step with `when` (or inside a group with `when`) may have been skipped: its
        result is null, and reading a field of it fails. The read needs a guard: the template
        also reads `steps.<target>.status`, the read is the operand of `| default(...)` (one
        field below `result`), or the reading node's `when` (or an enclosing group's) reads
        `steps.<target>.status`."""
        status = Read("steps", (target, "status"))
        if status in self.info.reads:
            return
        read = Read("steps", chain)
        if len(chain) == 3 and read in self.info.defaulted:
            return
        skippers = [target, *self.enclosing(target)]
        candidates: list[ir.AnyNode | None] = (
            [None] if site.where == "output" else [r for r, _ in self.readers(site)]
        )
        for reader in candidates:
            if reader is not None and (
                reader.id == target or reader.id in self.facts.in_on_failure
            ):
                continue
            around = set(self.enclosing(reader.id)) if reader is not None else set()
            # A group skipped together with the reader does not count: neither runs.
            maybe = [s for s in skippers if s not in around and self.nodes[s].when is not None]
            if not maybe:
                continue
            if reader is not None and self.when_tests(reader, status):
                continue
            spelled = "steps." + ".".join(str(k) for k in chain[:3])
            why = (
                f"{target!r} has a `when`"
                if maybe[0] == target
                else f"{target!r} is inside {maybe[0]!r}, which has a `when`"
            )
            when = f"before {reader.id!r} runs" if reader is not None else "when the saga succeeds"
            test = f"steps.{target}.status == 'completed'"
            hint = f"guard the read: `{{{{ {spelled} if {test} else none }}}}`"
            if len(chain) == 3:
                hint += f", or `{{{{ {spelled} | default(none) }}}}`"
            if reader is not None:
                hint += f', or give {reader.id!r} `when: "{{{{ {test} }}}}"`'
            self.report(
                site,
                "E017",
                f"{site.field} reads `{spelled}`, but {why}: it may have been skipped (its result "
                f"is null) {when}",
                hint,
            )
            return

    def when_tests(self, reader: ir.AnyNode, status: Read) -> bool:
        """Whether the `when` of `reader` or of a group around it reads `status`."""
        for nid in (reader.id, *self.enclosing(reader.id)):
            when = self.nodes[nid].when
            if when is not None and status in analyze(when).reads:
                return True
        return False

    def keep(self, site: Site, node: ir.AnyNode, field: str, spelled: str) -> None:
        """E021: only the fields a step keeps are journaled, so only they can be read."""
        keep = getattr(node, "keep", None)
        if keep is None or field in keep:
            return
        self.report(
            site,
            "E021",
            f"{site.field} reads `{spelled}.{field}`, but {node.id!r} keeps only {', '.join(keep)}",
            _did_you_mean(field, keep) + f"add {field!r} to `keep:` of {node.id!r}",
        )


def check_templates(saga: ir.Saga, facts: Facts, doc: Document) -> list[Diagnostic]:
    """E016, E017, E018, E021, E022, E024: template syntax and what each template may read."""
    return _TemplateChecker(saga, facts, doc).run()


def check_semantics(saga: ir.Saga, graph: SagaGraph, doc: Document) -> list[Diagnostic]:
    """Every semantic check (section 5 of the spec) that needs the graph."""
    facts = Facts.of(saga, graph)
    return [
        *check_unknown_actions(saga, doc),
        *check_irreversible_compensate(saga, doc),
        *check_fixed_destinations(saga, doc),
        *check_retry_codes(saga, doc),
        *check_input_schema(saga, doc),
        *check_templates(saga, facts, doc),
        *check_idempotency(saga, doc),
        *check_pivots(saga, facts, doc),
        *check_approval_timeouts(saga, doc),
        *check_compensation_retry(saga, doc),
        *check_unused_actions(saga, doc),
        *check_any_branches(saga, doc),
    ]
