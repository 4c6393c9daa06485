"""Semantic checks on the IR: everything the schema cannot say (spec section 5).

Each check is one small function that reads the IR (and the graph) and returns `Diagnostic`s
with stable codes, each pointing at the YAML node to fix. Checks never raise for a user
mistake, and they stay linear in the size of the saga: ancestry questions go to `Ancestry`
(bitsets built in one pass) rather than to a graph search per template.
"""

from __future__ import annotations

import difflib
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema
import networkx as nx

from . import ir
from .diagnostics import Diagnostic
from .errorcodes import EFFECT, HTTP_CODE, action_codes, can_raise, node_codes
from .graph import ON_FAILURE, SagaGraph
from .loader import Document
from .templates import Read, analyze

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
    """The most attempts any policy allows (1: not retried)."""
    return max((p.max_attempts for p in policies), default=1)


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
        dag = graph.ancestry
        self.index: dict[str, int] = {}
        self.masks: dict[str, int] = {}
        try:
            order = list(nx.topological_sort(dag))
        except nx.NetworkXUnfeasible:  # a cycle was reported (E013): answer "unknown"
            self.ok = False
            return
        self.ok = True
        for i, n in enumerate(order):
            self.index[n] = i
        for n in order:
            mask = 0
            for p in dag.predecessors(n):
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
    return code in EFFECT or code in action_codes(spec)


def _retry_code_hint(n: ir.Effectful, code: str, compensation: bool) -> str:
    if HTTP_CODE.match(code):
        return "HTTP_<status> codes come only from http actions; remove it from `on`"
    if code == "COMMAND_FAILED":
        return "COMMAND_FAILED comes only from command actions; remove it from `on`"
    if compensation:
        return (
            "a compensation raises the built-in codes (TIMEOUT, UNAVAILABLE, UNEXPECTED, ...) and "
            "its action's own; remove it from `on`"
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
            self.report(
                site,
                "E022",
                f"{site.field} reads `steps.{target}`, but no node has the id {target!r}",
                _did_you_mean(target, self.nodes).strip() or None,
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
        self.ordering(site, target)
        if len(chain) > 2 and chain[1] == "result" and isinstance(chain[2], str):
            self.keep(site, self.nodes[target], chain[2], f"steps.{target}.result")

    def ordering(self, site: Site, target: str) -> None:
        """E017: a template may read only steps certain to have completed before it runs."""
        if self.in_on_failure(site):
            return
        if site.where == "output":
            self.output_read(site, target)
            return
        readers: list[tuple[ir.AnyNode, bool]]
        if site.action is not None:
            readers = [(n, c) for n, c in self.users.get(site.action, [])]
        elif site.node is not None:
            readers = [(site.node, site.where == "compensate")]
        else:
            readers = []
        for reader, compensation in readers:
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
                return
            if not self.facts.ancestry.is_ancestor(target, reader.id):
                via = f" (through action {site.action!r})" if site.action else ""
                self.report(
                    site,
                    "E017",
                    f"{site.field}{via} reads `steps.{target}`, but {target!r} is not certain to "
                    f"have completed before {reader.id!r} starts",
                    self.ordering_hint(reader, target),
                )
                return

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

    def output_read(self, site: Site, target: str) -> None:
        if target in self.facts.in_on_failure:
            hint = f"{target!r} is an `on_failure` node: it runs only after the saga failed"
        elif target in self.facts.in_any_branch:
            group = self.facts.in_any_branch[target]
            hint = (
                f"it is in a branch of the `any` group {group!r}: read `steps.{group}.result` "
                "(the winning branch's last result)"
            )
        else:
            return
        self.report(
            site,
            "E017",
            f"{site.field} reads `steps.{target}`, which is not certain to have run when the "
            "saga succeeds",
            hint,
        )

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
