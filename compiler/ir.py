"""The typed intermediate representation of a saga (pydantic v2, frozen).

The IR is what every later stage reads: `checks`, `graph`, `plan`, the renderers and the
runtime. It is normalised: durations are seconds, retry is always a tuple of policies, named
actions are resolved, wrapper nodes (`{parallel: ...}`) become typed nodes with a `kind`.
`path` fields locate a node in the source document (for diagnostics); they are not part of the
saga's meaning and are left out of serialisation.

Node kinds are listed once, here: the `AnyNode` union (and `NodeKind`, checked against it at
import). What differs per kind and is asked by several layers (nested node lists, calling
actions, being a pivot) is answered once too, by `children`, `effectful` and `irreversible`;
each is a `match` ending in `assert_never`, so mypy names it when a kind is added. This module
imports no other part of sagac and does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal, assert_never, get_args

from pydantic import BaseModel, ConfigDict, Field

Path = tuple[str | int, ...]
JSON = Any

DEFAULT_RETRY_ON = ("TIMEOUT", "UNAVAILABLE")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class RetryPolicy(_Model):
    """One retry policy; a step's `retry` is a list matched in order by error code."""

    max_attempts: int = 3
    backoff: Literal["exponential", "fixed", "linear"] = "exponential"
    initial_delay: float = 0.2
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: Literal["full", "none"] = "full"
    on: tuple[str, ...] = DEFAULT_RETRY_ON
    path: Path = Field(default=(), exclude=True)


class PythonAction(_Model):
    kind: Literal["python"] = "python"
    target: str  # "pkg.module:function"


class HttpAction(_Model):
    kind: Literal["http"] = "http"
    method: str = "POST"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: JSON = Field(default=None, alias="json")
    has_json: bool = False  # `json:` given (even as null): `with` is not the body
    timeout: float | None = None
    ok_status: tuple[int, ...] = ()


class CommandAction(_Model):
    kind: Literal["command"] = "command"
    argv: tuple[str, ...]


class MockAction(_Model):
    kind: Literal["mock"] = "mock"
    result: JSON = None
    fail: str | None = None
    fail_times: int | None = None  # None: fail every attempt
    delay: float = 0.0


Action = Annotated[
    PythonAction | HttpAction | CommandAction | MockAction, Field(discriminator="kind")
]


class ActionRef(_Model):
    """A step's action: a name from `actions` (resolved) or an inline spec (`name` is None)."""

    name: str | None = None
    spec: Action | None = None  # None only while a name is unknown (the checks report it)
    path: Path = Field(default=(), exclude=True)


class Compensation(_Model):
    action: ActionRef
    with_: dict[str, JSON] = Field(default_factory=dict, alias="with")
    idempotency_key: str | None = None
    errors: tuple[str, ...] = ()  # the domain codes the undo may return (for retry `on`)
    retry: tuple[RetryPolicy, ...] = ()
    retry_declared: bool = False  # the author (or `defaults`) gave a retry
    timeout: float | None = None
    on: Literal["completed", "attempted"] = "completed"
    path: Path = Field(default=(), exclude=True)


class NodeBase(_Model):
    id: str
    name: str | None = None
    after: tuple[str, ...] | None = None  # None: depends on the previous node of its list
    when: str | None = None
    path: Path = Field(default=(), exclude=True)

    @property
    def label(self) -> str:
        return self.name or self.id


class TaskStep(NodeBase):
    kind: Literal["task"] = "task"
    action: ActionRef
    with_: dict[str, JSON] = Field(default_factory=dict, alias="with")
    idempotency_key: str | None = None
    errors: tuple[str, ...] = ()
    retry: tuple[RetryPolicy, ...] = ()
    timeout: float | None = None
    deadline: float | None = None
    keep: tuple[str, ...] | None = None
    irreversible: bool = False
    compensate: Compensation | None = None
    # What a simulated run (`--simulate`) returns instead of calling the action (templates,
    # with `args` in scope); `has_simulate` tells `simulate: null` from no `simulate:`.
    simulate: JSON = None
    has_simulate: bool = False
    # `callback:` given: the step completes only when `sagac callback TOKEN` reports its
    # outcome; its action gets the single-use token as `callback.token`.
    callback: Callback | None = None


class Callback(_Model):
    """A task step's `callback:` (the `.waitForTaskToken` pattern)."""

    timeout: float | None = None  # after the action returned; None: wait for ever (W107)
    path: Path = Field(default=(), exclude=True)


class BatchSpec(_Model):
    size: int = 50
    concurrency: int = 5
    delay: float = 0.01
    preset: Literal["conservative", "balanced", "aggressive"] | None = None


BATCH_PRESETS: dict[str, BatchSpec] = {
    "conservative": BatchSpec(size=20, concurrency=3, delay=0.05, preset="conservative"),
    "balanced": BatchSpec(size=50, concurrency=5, delay=0.01, preset="balanced"),
    "aggressive": BatchSpec(size=100, concurrency=10, delay=0.0, preset="aggressive"),
}


class ForeachNode(NodeBase):
    kind: Literal["foreach"] = "foreach"
    items: str
    as_: str = Field(alias="as")
    action: ActionRef
    with_: dict[str, JSON] = Field(default_factory=dict, alias="with")
    idempotency_key: str | None = None
    errors: tuple[str, ...] = ()
    retry: tuple[RetryPolicy, ...] = ()
    timeout: float | None = None
    deadline: float | None = None
    keep: tuple[str, ...] | None = None
    batch: BatchSpec = BATCH_PRESETS["balanced"]
    checkpoint: str | None = None
    on_error: Literal["stop", "continue"] = "stop"
    compensate: Compensation | None = None


class ApprovalGate(NodeBase):
    kind: Literal["approval"] = "approval"
    key: str | None = None  # None: "<saga>:<run id>:<id>"
    approvers: tuple[str, ...]
    message: str | None = None
    timeout: float | None = None
    on_timeout: Literal["reject", "fail"] = "fail"  # fail: APPROVAL_TIMEOUT


class FailNode(NodeBase):
    kind: Literal["fail"] = "fail"
    code: str
    message: str | None = None


class SleepNode(NodeBase):
    """`sleep`: a durable timer. Exactly one of `for_` (seconds) and `until` (a template
    rendering an RFC 3339 time with a zone) is set."""

    kind: Literal["sleep"] = "sleep"
    for_: float | None = Field(default=None, alias="for")
    until: str | None = None


class WaitNode(NodeBase):
    """`wait`: park until `sagac signal RUN_ID <signal>` delivers a payload (its `result`)."""

    kind: Literal["wait"] = "wait"
    signal: str
    payload_schema: dict[str, JSON] | None = Field(default=None, alias="schema")
    timeout: float | None = None  # None: wait for ever (W107)
    on_timeout: Literal["fail", "continue"] = "fail"  # fail: WAIT_TIMEOUT; continue: result null


class CallNode(NodeBase):
    """`call`: run another saga as a child run; its `output` is this node's `result`.

    `saga` is the path as written, relative to the calling file; the pipeline resolves it
    and compiles the child into `Plan.calls[id]`. `child_irreversible` is set by the
    pipeline once the child is compiled (a child with an irreversible step makes the call a
    pivot)."""

    kind: Literal["call"] = "call"
    saga: str
    with_: dict[str, JSON] = Field(default_factory=dict, alias="with")
    child_irreversible: bool = False


class SwitchCase(_Model):
    when: str
    steps: tuple[Node, ...]
    path: Path = Field(default=(), exclude=True)


class SwitchNode(NodeBase):
    """`switch`: the first case whose `when` holds runs (else `default`, else nothing)."""

    kind: Literal["switch"] = "switch"
    cases: tuple[SwitchCase, ...]
    default: tuple[Node, ...] | None = None


class ParallelGroup(NodeBase):
    kind: Literal["parallel"] = "parallel"
    mode: Literal["all", "all_settled", "any"] = "all"
    max_concurrency: int | None = None
    branches: tuple[tuple[Node, ...], ...]


# The node union: adding a kind here makes mypy (every `match` ending in `assert_never`) and
# the import-time checks of the kind registries (`require_kinds`) name each place to handle it.
AnyNode = (
    TaskStep
    | ParallelGroup
    | ApprovalGate
    | ForeachNode
    | FailNode
    | SleepNode
    | WaitNode
    | CallNode
    | SwitchNode
)
Node = Annotated[AnyNode, Field(discriminator="kind")]
NodeKind = Literal[
    "task", "parallel", "approval", "foreach", "fail", "sleep", "wait", "call", "switch"
]
# The kinds that may park a run (status `waiting`, or `waiting_approval` for a gate) until
# something outside it happens: a time, a signal, a decision, a callback, a child run.
PARKING_KINDS: frozenset[NodeKind] = frozenset({"approval", "sleep", "wait", "call"})


class CompensateDefaults(_Model):
    """`defaults.compensate` as written (the layering onto each compensation is in `lower`)."""

    timeout: float | None = None
    retry: tuple[RetryPolicy, ...] = ()
    errors: tuple[str, ...] = ()
    on: Literal["completed", "attempted"] = "completed"


class Defaults(_Model):
    timeout: float | None = None
    retry: tuple[RetryPolicy, ...] = ()
    compensate: CompensateDefaults = CompensateDefaults()


class Saga(_Model):
    saga: str
    version: int = 1
    description: str | None = None
    input_schema: dict[str, JSON] | None = Field(default=None, alias="input")
    env: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    actions: dict[str, Action] = Field(default_factory=dict)
    defaults: Defaults = Defaults()
    compensation: Literal["sequential", "parallel"] = "sequential"
    on_compensation_failure: Literal["continue", "stop"] = "continue"
    timeout: float | None = None
    steps: tuple[Node, ...]
    on_failure: tuple[Node, ...] = ()
    output: JSON = None

    def walk(self) -> list[AnyNode]:
        """Every node (steps, then on_failure), depth first in declaration order."""
        out: list[AnyNode] = []
        stack: list[AnyNode] = [*reversed(self.on_failure), *reversed(self.steps)]
        while stack:
            node = stack.pop()
            out.append(node)
            for nodes in reversed(children(node)):
                stack.extend(reversed(nodes))
        return out


Effectful = TaskStep | ForeachNode  # nodes that call actions and may be compensated


def children(node: AnyNode) -> tuple[tuple[AnyNode, ...], ...]:
    """The node lists nested in `node`, in order (a parallel group's branches; none for the
    other kinds). Each list is a scope of its own: `graph.branch_key(node.id, index)`."""
    match node:
        case ParallelGroup():
            return node.branches
        case SwitchNode():
            cases = tuple(c.steps for c in node.cases)
            return cases if node.default is None else (*cases, node.default)
        case TaskStep() | ApprovalGate() | ForeachNode() | FailNode():
            return ()
        case SleepNode() | WaitNode() | CallNode():
            return ()
        case _:
            assert_never(node)


def descendants(node: AnyNode) -> Iterator[AnyNode]:
    """Every node nested in `node` (not `node` itself), depth first in declaration order."""
    for nodes in children(node):
        for child in nodes:
            yield child
            yield from descendants(child)


def effectful(node: AnyNode) -> Effectful | None:
    """`node` if it calls an action (and may have a `compensate`), else None.

    The one place that decides which kinds call actions: the checks, error codes, targets,
    plan and renderers find a node's actions through it.
    """
    match node:
        case TaskStep() | ForeachNode():
            return node
        case ParallelGroup() | ApprovalGate() | FailNode():
            return None
        case SleepNode() | WaitNode() | CallNode() | SwitchNode():
            return None
        case _:
            assert_never(node)


def irreversible(node: AnyNode) -> bool:
    """Whether `node` is a pivot: once it has completed, what it did cannot be undone."""
    match node:
        case TaskStep():
            return node.irreversible
        case CallNode():
            return node.child_irreversible
        case ParallelGroup() | ApprovalGate() | ForeachNode() | FailNode():
            return False
        case SleepNode() | WaitNode() | SwitchNode():
            return False
        case _:
            assert_never(node)


# The node kinds in the union's order, and each kind's model.
NODE_CLASSES: dict[NodeKind, type[AnyNode]] = {
    cls.model_fields["kind"].default: cls for cls in get_args(AnyNode)
}
NODE_KINDS: tuple[NodeKind, ...] = tuple(NODE_CLASSES)
# The key that wraps each kind in YAML (`{parallel: {...}}`); a task step is the bare mapping.
WRAPPER_KEYS: dict[NodeKind, str | None] = {
    "task": None,
    "parallel": "parallel",
    "approval": "approval",
    "foreach": "foreach",
    "fail": "fail",
    "sleep": "sleep",
    "wait": "wait",
    "call": "call",
    "switch": "switch",
}


def require_kinds(table: Iterable[str], name: str, kinds: Iterable[str] = NODE_KINDS) -> None:
    """Raise unless `table` (a registry keyed by kind) lists exactly `kinds`.

    Called at import by every module that keeps such a registry, so a kind added to the
    union (or a key left behind) fails the first import, and every test, by name.
    """
    have, want = set(table), set(kinds)
    if have != want:
        missing, extra = sorted(want - have), sorted(have - want)
        raise TypeError(
            f"{name} must list exactly {sorted(want)}: missing {missing}, extra {extra}"
        )


require_kinds(get_args(NodeKind), "ir.NodeKind")
require_kinds(WRAPPER_KEYS, "ir.WRAPPER_KEYS")

ParallelGroup.model_rebuild()
SwitchCase.model_rebuild()
SwitchNode.model_rebuild()
TaskStep.model_rebuild()
Saga.model_rebuild()
