"""A plan's diagram as renderer-neutral data: nodes, clusters, edges and a legend.

The Mermaid and DOT templates both draw this model, so the two formats always show the same
graph. What it draws:

- forward edges (solid): each node's dependencies, from a `start` node to a `done` node;
- a parallel group is a cluster with a fork node (the group's own node, which a run overlay
  colours) and a join node; each branch is a nested cluster;
- a switch is the same with a decision node: one edge per case, labelled with its `when` (and
  "default", or "no case" straight to the merge when there is no default); with an overlay the
  cases not taken are drawn skipped;
- sleeps, waits and calls have shapes of their own; a call links to the saga it calls (to its
  child run's report, with an overlay) and, with `expand`, is a cluster that draws the called
  saga inline (its keys prefixed `<call id>_C_`);
- each compensable step has a compensation node beside it, tied to it by a dashed line;
- rollback edges (dashed arrows) run from a compensation to the compensations of the nearest
  compensable steps before it: the forward DAG reversed. Sequential compensation runs them one
  at a time in reverse order of completion, which always follows these arrows; parallel
  compensation starts each one as soon as the arrows into it are done;
- `on_failure` nodes sit in their own cluster, entered from a "saga failed" node.

Keys are identifiers in both languages. Saga ids match `[a-z][a-z0-9_]*`; a key is a one-letter
category, `_`, then an id (`s_` node, `j_` join, `c_` compensation, `g_` group, `b_` branch),
or an upper-case word (`START`), so no two keys collide and none is a Mermaid keyword.
This module never renders text: escaping belongs to the templates' environments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, assert_never, get_args

from ..durations import format_duration
from ..graph import ON_FAILURE, TOP, branch_key
from ..ir import (
    ActionRef,
    AnyNode,
    ApprovalGate,
    CallNode,
    CommandAction,
    Compensation,
    Effectful,
    FailNode,
    ForeachNode,
    HttpAction,
    MockAction,
    ParallelGroup,
    PythonAction,
    RetryPolicy,
    SleepNode,
    SwitchNode,
    TaskStep,
    WaitNode,
    children,
    descendants,
    effectful,
    require_kinds,
)
from ..plan import Plan
from .overlay import NodeRun
from .styles import COMPENSATION_STATUS, KIND_WORDS, STATUS_WORDS, StyleKind

LineStyle = Literal["title", "meta", "run"]
Line = tuple[LineStyle, str]
# How a saga node is drawn (`_shape`); "fork" draws a node with nested node lists as a cluster.
NodeShape = Literal[
    "task", "irreversible", "approval", "foreach", "fail", "fork", "sleep", "wait", "call", "switch"
]
# The other parts of a diagram.
PartShape = Literal["compensation", "join", "start", "end", "failed"]
Shape = NodeShape | PartShape
SHAPES: tuple[str, ...] = (*get_args(NodeShape), *get_args(PartShape))
EdgeRole = Literal["flow", "undo", "rollback", "order"]
MAX_TEXT = 48
# The legend draws each kind it explains in that kind's own shape.
require_kinds(KIND_WORDS, "styles.KIND_WORDS", (*get_args(NodeShape), "compensation"))


@dataclass(frozen=True, slots=True)
class DNode:
    key: str
    shape: Shape
    kind: StyleKind
    lines: tuple[Line, ...]
    status: str | None = None  # a key of styles.STATUS_STYLES, with an overlay
    node_id: str | None = None  # the saga node it draws
    link: str | None = None  # where the node links to (a call: the saga it calls, or its run)

    @property
    def title(self) -> str:
        return self.lines[0][1] if self.lines else ""


@dataclass(slots=True)
class DCluster:
    key: str
    label: str
    role: Literal["root", "group", "branch", "call", "on_failure", "legend"]
    members: list[DNode | DCluster] = field(default_factory=list)  # in flow order
    side_by_side: list[tuple[str, str]] = field(default_factory=list)  # same rank (DOT)

    @property
    def nodes(self) -> list[DNode]:
        return [m for m in self.members if isinstance(m, DNode)]

    @property
    def clusters(self) -> list[DCluster]:
        return [m for m in self.members if isinstance(m, DCluster)]

    def walk(self) -> list[DNode]:
        """Every node in this cluster and the clusters inside it."""
        out: list[DNode] = []
        for m in self.members:
            out.extend(m.walk() if isinstance(m, DCluster) else [m])
        return out


@dataclass(frozen=True, slots=True)
class DEdge:
    src: str
    dst: str
    role: EdgeRole
    label: str | None = None  # a switch's case: its `when`, "default" or "no case"


@dataclass(slots=True)
class Diagram:
    title: str
    subtitle: str
    root: DCluster
    edges: list[DEdge]
    legend: DCluster
    compensation_mode: str
    overlaid: bool


def short(text: str, limit: int = MAX_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _expr(template: str) -> str:
    """`{{ input.amount > 0 }}` as `input.amount > 0`, for a compact label."""
    t = template.strip()
    if t.startswith("{{") and t.endswith("}}") and t.count("{{") == 1:
        t = t[2:-2]
    return short(t, 40)


def action_label(ref: ActionRef) -> str:
    """An action in a few words: `charge · http`, `POST https://...`, `python pkg.mod:f`."""
    spec = ref.spec
    if ref.name:
        return f"{ref.name} · {spec.kind}" if spec else ref.name
    match spec:
        case None:
            return "?"
        case PythonAction():
            return f"python {spec.target}"
        case HttpAction():
            return f"{spec.method} {spec.url}"
        case CommandAction():
            return f"command {spec.argv[0] if spec.argv else ''}".rstrip()
        case MockAction():
            return "mock"
        case _:
            assert_never(spec)


def _retry(policies: tuple[RetryPolicy, ...]) -> str | None:
    attempts = [p.max_attempts for p in policies]
    return f"retry ×{max(attempts)}" if attempts and max(attempts) > 1 else None


def _facts(*parts: str | None) -> Line | None:
    text = " · ".join(p for p in parts if p)
    return ("meta", short(text, 60)) if text else None


def _duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s".replace(".00 s", " s")
    return format_duration(round(ms / 1000))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def run_line(run: NodeRun) -> str:
    """What happened to a node, for its label: `failed TIMEOUT · 3 attempts · 1.20 s`."""
    head = STATUS_WORDS[run.status]
    if run.error and run.status in ("failed", "cancelled") and run.error != "CANCELLED":
        head += f" {run.error}"
    parts = [head]
    if run.attempts > 1:
        parts.append(_plural(run.attempts, "attempt"))
    if run.waited_ms is not None:
        parts.append(f"waited {_duration(run.waited_ms)}")
    elif run.duration_ms is not None:
        parts.append(_duration(run.duration_ms))
    if run.waiting_for is not None and run.status == "waiting":
        parts.append(short(run.waiting_for, 40))
    if run.case_chosen:
        parts.append(case_line(run.case))
    if run.child_run_id is not None:
        parts.append(f"child run {run.child_run_id}")
    if run.items_total is not None:
        items = f"{run.items_processed or 0}/{run.items_total} items"
        if run.items_failed:
            items += f", {run.items_failed} failed"
        parts.append(items)
    return " · ".join(parts)


def case_label(case: int | str | None) -> str:
    """A switch case as `steps.<id>.case` names it: `case 0`, `default`, `no case`."""
    if case is None:
        return "no case"
    return "default" if case == "default" else f"case {case}"


def case_line(case: int | str | None) -> str:
    return "nothing ran" if case is None else f"took {case_label(case)}"


def _compensation_line(run: NodeRun) -> str | None:
    words = {"ok": "undone", "failed": "undo failed", "running": "undoing"}
    if run.compensation_status is None:
        return None
    if run.compensation_attempts > 1:
        return f"{words[run.compensation_status]} · {run.compensation_attempts} attempts"
    return words[run.compensation_status]


def _node_lines(n: AnyNode) -> list[Line]:
    title: Line = ("title", short(n.name or n.id))
    sub: list[Line] = [("meta", n.id)] if n.name and n.name != n.id else []
    when = f"when {_expr(n.when)}" if n.when else None
    lines: list[Line | None] = [title, *sub]
    match n:
        case TaskStep():
            lines.append(("meta", short(action_label(n.action))))
            lines.append(
                _facts(
                    _retry(n.retry),
                    f"timeout {format_duration(n.timeout)}" if n.timeout else None,
                    "irreversible" if n.irreversible else None,
                )
            )
            if n.callback is not None:
                lines.append(("meta", f"callback, {_timeout(n.callback.timeout)}"))
        case ForeachNode():
            lines.append(("meta", short(f"for each {n.as_} in {_expr(n.items)}")))
            lines.append(("meta", short(action_label(n.action))))
            size = f"batches of {n.batch.size}, {n.batch.concurrency} at once"
            lines.append(_facts(n.batch.preset or size, f"on_error {n.on_error}", _retry(n.retry)))
        case ApprovalGate():
            lines.append(("meta", short("approvers " + ", ".join(n.approvers))))
            timeout = (
                f"timeout {format_duration(n.timeout)} → {n.on_timeout}" if n.timeout else None
            )
            lines.append(_facts(timeout))
        case FailNode():
            lines.append(("meta", f"fail {n.code}"))
        case SleepNode():
            if n.for_ is not None:
                lines.append(("meta", f"sleep {format_duration(n.for_)}"))
            else:
                lines.append(("meta", short(f"until {_expr(n.until or '')}")))
        case WaitNode():
            lines.append(("meta", short(f"wait for signal {n.signal}")))
            on = f" → {n.on_timeout}" if n.timeout else ""
            lines.append(_facts(_timeout(n.timeout) + on))
        case CallNode():
            lines.append(("meta", short(f"call {n.saga}")))
            lines.append(_facts("irreversible inside" if n.child_irreversible else None))
        case SwitchNode():
            cases = _plural(len(n.cases), "case") + (" + default" if n.default else "")
            lines = [("title", f"switch: {cases}"), ("meta", n.id)]
        case ParallelGroup():
            mode = {"all": "all branches", "all_settled": "all settled", "any": "first wins"}[
                n.mode
            ]
            max_ = f"at most {n.max_concurrency} at once" if n.max_concurrency else None
            lines = [("title", f"parallel: {mode}"), ("meta", n.id), _facts(max_)]
        case _:
            assert_never(n)
    lines.append(_facts(when))
    return [line for line in lines if line is not None]


def _shape(n: AnyNode) -> NodeShape:
    match n:
        case TaskStep():
            return "irreversible" if n.irreversible else "task"
        case ForeachNode():
            return "foreach"
        case ApprovalGate():
            return "approval"
        case FailNode():
            return "fail"
        case ParallelGroup():
            return "fork"
        case SleepNode():
            return "sleep"
        case WaitNode():
            return "wait"
        case CallNode():
            return "call"
        case SwitchNode():
            return "switch"
        case _:
            assert_never(n)


def _timeout(seconds: float | None) -> str:
    return f"timeout {format_duration(seconds)}" if seconds else "no timeout"


def _clustered(n: AnyNode) -> bool:
    """A node with nested node lists, drawn as a cluster: a parallel group, a switch."""
    return isinstance(n, ParallelGroup | SwitchNode)


def _compensation_lines(n: Effectful, comp: Compensation) -> list[Line]:
    lines: list[Line | None] = [
        ("title", short(f"undo {n.name or n.id}")),
        ("meta", short(action_label(comp.action))),
        _facts(
            "each item, LIFO" if isinstance(n, ForeachNode) else None,
            _retry(comp.retry),
            "on attempted" if comp.on == "attempted" else None,
        ),
    ]
    return [line for line in lines if line is not None]


class _Builder:
    """Draws one plan; `prefix` keeps the keys of a called saga drawn inline (`expand`) apart
    from its caller's (ids are lower-case: `_C_` never occurs in one)."""

    def __init__(
        self,
        plan: Plan,
        overlay: Mapping[str, NodeRun] | None,
        expand: bool = False,
        prefix: str = "",
    ) -> None:
        self.plan = plan
        self.overlay = overlay
        self.expand = expand
        self.prefix = prefix
        self.expanded: set[str] = set()  # calls drawn with their saga inline
        self.nodes = {n.id: n for n in plan.definition.walk()}
        self.edges: list[DEdge] = []
        self.compensable: set[str] = set()
        self.kinds: set[StyleKind] = {"task"}
        self.statuses: set[str] = set()
        self.not_taken: set[str] = set()  # nodes of a switch's cases that the run did not take

    def k(self, category: str, node_id: str) -> str:
        """The key of a part of node `node_id`: `s_<id>`, `c_<id>`, `j_<id>`..."""
        return f"{category}_{self.prefix}{node_id}"

    def _run(self, node_id: str) -> NodeRun | None:
        if self.overlay is None:
            return None
        run = self.overlay.get(node_id, NodeRun())
        if node_id in self.not_taken and run.status == "pending":
            return NodeRun(status="skipped")
        return run

    def node(self, n: AnyNode) -> DNode:
        shape = _shape(n)
        kind = shape
        self.kinds.add(kind)
        lines = _node_lines(n)
        run = self._run(n.id)
        status = None
        if run is not None:
            status = run.status
            self.statuses.add(status)
            if run.status != "pending":
                lines.append(("run", run_line(run)))
        link = None
        if isinstance(n, CallNode):
            child = run.child_run_id if run is not None else None
            link = f"sagac-report-{child}.html" if child else n.saga
        return DNode(self.k("s", n.id), shape, kind, tuple(lines), status, n.id, link)

    def compensation(self, n: Effectful, comp: Compensation) -> DNode:
        self.kinds.add("compensation")
        lines = _compensation_lines(n, comp)
        run = self._run(n.id)
        status = None
        if run is not None:
            status = COMPENSATION_STATUS.get(run.compensation_status or "", "pending")
            if n.id in self.not_taken:
                status = "skipped"
            self.statuses.add(status)
            text = _compensation_line(run)
            if text:
                lines.append(("run", text))
        return DNode(self.k("c", n.id), "compensation", "compensation", tuple(lines), status, n.id)

    def entry(self, node_id: str) -> str:
        return self.k("s", node_id)

    def exit(self, node_id: str) -> str:
        inline = _clustered(self.nodes[node_id]) or node_id in self.expanded
        return self.k("j" if inline else "s", node_id)

    def scope(
        self,
        key: str,
        cluster: DCluster,
        entry: str | None,
        exit: str | None,
        label: str | None = None,
    ) -> None:
        """Draw one list of nodes into `cluster`, entered from `entry` (by edges labelled
        `label`) and left to `exit`."""
        scope = self.plan.scope(key)
        for nid in scope.order:
            n = self.nodes[nid]
            deps = scope.deps[nid]
            if deps:
                self.edges.extend(DEdge(self.exit(d), self.entry(nid), "flow") for d in deps)
            elif entry:
                self.edges.append(DEdge(entry, self.entry(nid), "flow", label))
            if _clustered(n):
                cluster.members.append(self.group(n))
                continue
            if isinstance(n, CallNode) and self.expand and nid in self.plan.calls:
                cluster.members.append(self.call(n, self.plan.calls[nid]))
                continue
            cluster.members.append(self.node(n))
            step = effectful(n)
            comp = step.compensate if step is not None else None
            if step is not None and comp is not None and key != ON_FAILURE:
                self.compensable.add(nid)
                cluster.members.append(self.compensation(step, comp))
                cluster.side_by_side.append((self.k("s", nid), self.k("c", nid)))
                self.edges.append(DEdge(self.k("s", nid), self.k("c", nid), "undo"))
        if exit:
            used = {d for deps in scope.deps.values() for d in deps}
            tails = [nid for nid in scope.order if nid not in used]
            if tails:
                self.edges.extend(DEdge(self.exit(t), exit, "flow") for t in tails)
            elif entry:
                self.edges.append(DEdge(entry, exit, "flow"))

    def group(self, g: AnyNode) -> DCluster:
        """A node with nested node lists (a parallel group, a switch): its own node, a cluster
        per list, a join (a switch's merge)."""
        cluster = DCluster(self.k("g", g.id), short(g.name or g.id), "group")
        lists = children(g)
        labels = [f"branch {i + 1}" for i in range(len(lists))]
        edges: list[str | None] = [None] * len(lists)
        if isinstance(g, SwitchNode):
            labels = [case_label(i) for i in range(len(g.cases))] + ["default"] * bool(g.default)
            whens: list[str | None] = [_expr(c.when) for c in g.cases]
            edges = whens + ["default"] * bool(g.default)
            run = self._run(g.id)
            if run is not None and run.case_chosen:
                taken = len(g.cases) if run.case == "default" else run.case
                for i, nodes in enumerate(lists):
                    if i != taken:
                        for n in nodes:
                            self.not_taken.update(m.id for m in (n, *descendants(n)))
        fork = self.node(g)
        cluster.members.append(fork)
        for i in range(len(lists)):
            branch = DCluster(self.k("b", f"{g.id}_{i}"), labels[i], "branch")
            self.scope(branch_key(g.id, i), branch, fork.key, self.k("j", g.id), edges[i])
            cluster.members.append(branch)
        if isinstance(g, SwitchNode) and g.default is None:
            self.edges.append(DEdge(fork.key, self.k("j", g.id), "flow", "no case"))
        word = "merge" if isinstance(g, SwitchNode) else "join"
        cluster.members.append(
            DNode(self.k("j", g.id), "join", "join", (("title", word),), fork.status, g.id)
        )
        return cluster

    def call(self, n: CallNode, child: Plan) -> DCluster:
        """A call with the saga it calls drawn inline: the call, the child's steps (their own
        compensations and rollback edges), and an "end" node."""
        self.expanded.add(n.id)
        cluster = DCluster(self.k("x", n.id), short(f"saga {child.saga} · {n.saga}"), "call")
        start = self.node(n)
        cluster.members.append(start)
        inner = _Builder(child, None, self.expand, f"{self.prefix}{n.id}_C_")
        inner.scope(TOP, cluster, start.key, self.k("j", n.id))
        inner.rollback()
        self.edges.extend(inner.edges)
        self.kinds |= inner.kinds
        # A later step's undo is followed by the child's: its undo nodes are this builder's
        # rollback targets too (`k("c", ...)` of these names their keys).
        self.compensable |= {f"{n.id}_C_{c}" for c in inner.compensable}
        cluster.members.append(
            DNode(self.k("j", n.id), "join", "join", (("title", "end"),), start.status, n.id)
        )
        return cluster

    def rollback(self) -> None:
        """Rollback edges: each compensation to those of its nearest compensable ancestors."""
        preds: dict[str, list[str]] = {}
        for e in self.edges:
            if e.role == "flow":
                preds.setdefault(e.dst, []).append(e.src)
        for nid in self._in_flow_order():
            seen: set[str] = set()
            stack = list(preds.get(self.k("s", nid), []))
            mine = self.k("s", "")
            targets: list[str] = []
            while stack:
                key = stack.pop(0)
                if key in seen:
                    continue
                seen.add(key)
                if key.startswith(mine) and key[len(mine) :] in self.compensable:
                    targets.append(key[len(mine) :])
                    continue
                stack.extend(preds.get(key, []))
            self.edges.extend(DEdge(self.k("c", nid), self.k("c", t), "rollback") for t in targets)

    def _in_flow_order(self) -> list[str]:
        return [n.id for n in self.plan.definition.walk() if n.id in self.compensable]


def _legend(kinds: set[StyleKind], statuses: set[str], overlaid: bool) -> DCluster:
    legend = DCluster("legend", "Legend", "legend")
    for kind, word in KIND_WORDS.items():
        if kind in kinds:
            shape: Shape = kind  # type: ignore[assignment]
            legend.members.append(DNode(f"legend_{kind}", shape, kind, (("title", word),)))
    if overlaid:
        for status, word in STATUS_WORDS.items():
            if status in statuses:
                legend.members.append(
                    DNode(f"legend_st_{status}", "task", "task", (("title", word),), status)
                )
    return legend


def build_diagram(
    plan: Plan, overlay: Mapping[str, NodeRun] | None = None, expand: bool = False
) -> Diagram:
    """The diagram of `plan`, coloured by `overlay` (node id -> what happened) when given;
    with `expand`, each called saga is drawn inline in its call's cluster."""
    saga = plan.definition
    b = _Builder(plan, overlay, expand)
    root = DCluster("root", saga.saga, "root")
    root.members.append(DNode("START", "start", "terminal", (("title", "start"),)))
    b.scope(TOP, root, "START", "DONE")
    root.members.append(DNode("DONE", "end", "terminal", (("title", "done"),)))
    if saga.on_failure:
        cluster = DCluster("on_failure", "on failure, after compensation", "on_failure")
        cluster.members.append(DNode("FAILED", "failed", "terminal", (("title", "saga failed"),)))
        b.scope(ON_FAILURE, cluster, "FAILED", None)
        root.members.append(cluster)
    b.rollback()
    subtitle = short(saga.description or "", 100)
    if b.compensable:
        how = "LIFO, one at a time" if saga.compensation == "sequential" else "reverse DAG"
        subtitle = (subtitle + " · " if subtitle else "") + f"compensation: {how}"
    return Diagram(
        title=f"{saga.saga} v{saga.version}",
        subtitle=subtitle,
        root=root,
        edges=b.edges,
        legend=_legend(b.kinds, b.statuses, overlay is not None),
        compensation_mode=saga.compensation,
        overlaid=overlay is not None,
    )
