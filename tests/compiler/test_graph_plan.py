"""The step graph and the plan: dependencies, layers, order, cycles, ancestry through groups."""

from __future__ import annotations

import textwrap

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st
from sagac.compiler import ir
from sagac.compiler.graph import Scope
from sagac.compiler.pipeline import Compilation, compile_text
from sagac.compiler.plan import _order_and_layers


def _compile(text: str) -> Compilation:
    return compile_text(textwrap.dedent(text))


FAN = """\
saga: fan
steps:
  - {id: start, action: {mock: {}}}
  - {id: left, action: {mock: {}}, after: [start]}
  - {id: right, action: {mock: {}}, after: [start]}
  - {id: join, action: {mock: {}}, after: [right, left]}
  - {id: tail, action: {mock: {}}}
"""


def test_fan_out_fan_in_layers_and_order() -> None:
    c = _compile(FAN)
    assert c.plan is not None, c.diagnostics
    top = c.plan.scope("steps")
    assert top.layers == [["start"], ["left", "right"], ["join"], ["tail"]]
    assert top.order == ["start", "left", "right", "join", "tail"]
    assert top.deps["join"] == ["right", "left"]
    assert c.plan.nodes["tail"].depends_on == ["join"]


def test_cycle_is_reported_with_its_path() -> None:
    c = _compile(
        """\
        saga: loop
        steps:
          - {id: a, action: {mock: {}}, after: [b]}
          - {id: b, action: {mock: {}}}
        """
    )
    [d] = c.diagnostics
    assert (d.code, d.message, d.line) == ("E013", "cycle: a -> b -> a", 3)
    assert c.plan is None


def test_after_cannot_reach_into_a_branch_or_itself() -> None:
    c = _compile(
        """\
        saga: s
        steps:
          - parallel:
              id: g
              branches:
                - [{id: inner, action: {mock: {}}}]
          - {id: outer, action: {mock: {}}, after: [inner, outer, ghost]}
        """
    )
    messages = [(d.code, d.message) for d in c.diagnostics]
    assert messages == [
        ("E015", "`after` of 'outer' names 'inner': it is not in the same list as this node"),
        ("E015", "`after` of 'outer' names 'outer': a node cannot come after itself"),
        ("E015", "`after` of 'outer' names 'ghost': no node has that id"),
    ]


GROUPS = """\
saga: groups
steps:
  - {id: before, action: {mock: {}}}
  - parallel:
      id: every
      branches:
        - [{id: a1, action: {mock: {}}}, {id: a2, action: {mock: {}}}]
        - [{id: b1, action: {mock: {}}}]
  - parallel:
      id: first
      mode: any
      branches:
        - [{id: c1, action: {mock: {}}, compensate: {action: {mock: {}}, retry: {}}}]
        - [{id: d1, action: {mock: {}}, compensate: {action: {mock: {}}, retry: {}}}]
  - {id: after_all, action: {mock: {}}}
"""


def test_ancestry_through_parallel_groups() -> None:
    c = _compile(GROUPS)
    assert c.graph is not None and c.plan is not None, c.diagnostics
    anc = c.graph.ancestors
    assert anc("a1") == {"before"}
    assert anc("a2") == {"before", "a1"}
    assert anc("c1") == {"before", "every", "a1", "a2", "b1"}
    # Every branch of an `all` group has completed after it; a branch of `any` may not have.
    assert anc("after_all") == {"before", "every", "a1", "a2", "b1", "first"}
    assert c.plan.scope("every/0").order == ["a1", "a2"]
    assert c.plan.scope("first/1").owner == "first"


@st.composite
def _dags(draw: st.DrawFn) -> list[list[int]]:
    """Node i depends on a random subset of the nodes before it: always acyclic."""
    n = draw(st.integers(1, 12))
    return [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(_dags(), st.randoms(use_true_random=False))
def test_random_dags_compile_and_the_order_respects_every_dependency(
    deps: list[list[int]], rnd: object
) -> None:
    order = list(range(len(deps)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    lines = ["saga: dag", "steps:"]
    for i in order:  # declared in a random order: only `after` decides
        after = ", ".join(f"n{d}" for d in deps[i])
        reads = "".join(f"{{{{ steps.n{d}.result }}}}" for d in deps[i])
        lines.append(f"  - {{id: n{i}, action: {{mock: {{}}}}, after: [{after}]")
        lines[-1] += f", with: {{x: '{reads}'}}}}" if reads else "}"
    c = compile_text("\n".join(lines) + "\n")
    assert c.plan is not None and c.diagnostics == [], c.diagnostics
    scope = c.plan.scope("steps")
    position = {nid: k for k, nid in enumerate(scope.order)}
    layer_of = {nid: k for k, layer in enumerate(scope.layers) for nid in layer}
    assert sorted(position) == sorted(f"n{i}" for i in range(len(deps)))
    for i, ds in enumerate(deps):
        for d in ds:
            assert position[f"n{d}"] < position[f"n{i}"]
            assert layer_of[f"n{d}"] < layer_of[f"n{i}"]


@settings(max_examples=80, deadline=None)
@given(_dags(), st.randoms(use_true_random=False), st.booleans())
def test_order_and_layers_are_networkx_s(deps: list[list[int]], rnd: object, shuffle: bool) -> None:
    """The one-pass order and layers of backward-only scopes are networkx's exactly; declared
    out of order, the scope goes to networkx itself."""
    order = list(range(len(deps)))
    if shuffle:
        rnd.shuffle(order)  # type: ignore[attr-defined]
    scope = Scope("steps", [])
    for i in order:
        nid = f"n{i}"
        scope.deps[nid] = tuple(f"n{d}" for d in deps[i])
    scope.nodes = [ir.FailNode(id=f"n{i}", code="X") for i in order]
    index = {nid: k for k, nid in enumerate(scope.ids)}
    dag = scope.digraph()
    expected = (
        list(nx.lexicographical_topological_sort(dag, key=index.__getitem__)),
        [sorted(g, key=index.__getitem__) for g in nx.topological_generations(dag)],
    )
    assert _order_and_layers(scope) == expected
