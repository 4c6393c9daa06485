"""The schema layer: every shape error, at its node, in words an author understands."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sagac.compiler import schema
from sagac.compiler.loader import load_text
from sagac.compiler.pipeline import compile_text

ROOT = Path(__file__).resolve().parents[2]


def _diags(text: str) -> list[tuple[str, int, int, str, str | None]]:
    c = compile_text(textwrap.dedent(text))
    return [(d.code, d.line, d.column, d.message, d.hint) for d in c.diagnostics]


def test_id_pattern_says_snake_case_and_suggests_one() -> None:
    [(code, line, col, message, hint)] = _diags(
        """\
        saga: s
        steps:
          - id: ChargePayment
            action: {mock: {}}
        """
    )
    assert (code, line, col) == ("E010", 3, 9)
    assert "ids are snake_case: ^[a-z][a-z0-9_]*$" in message
    assert hint == "e.g. `charge_payment`"


def test_duration_enum_and_type_messages() -> None:
    diags = _diags(
        """\
        saga: s
        compensation: lifo
        timeout: 90
        steps:
          - id: a
            action: {mock: {}}
            retry: {backoff: expo, initial_delay: 2 secs}
        """
    )
    by_line = {line: (message, hint) for _, line, _, message, hint in diags}
    assert by_line[2] == (
        "compensation: 'lifo' is not one of: sequential, parallel",
        by_line[2][1],
    )
    assert "expected a string, got an integer" in by_line[3][0]
    assert by_line[3][1] == "durations are strings with a unit, e.g. `90s`"
    messages = [m for _, line, _, m, _ in diags if line == 7]
    assert any("'expo' is not one of: exponential, fixed, linear" in m for m in messages)
    assert any("durations are a number and a unit" in m for m in messages)
    hints = [h for _, line, _, _, h in diags if line == 7]
    assert "did you mean `exponential`?" in hints and "e.g. `2s`" in hints


def test_required_keys_are_named_one_by_one() -> None:
    diags = _diags(
        """\
        saga: s
        steps:
          - name: nothing else
        """
    )
    messages = sorted(m for *_, m, _ in diags)
    assert messages == [
        "steps[0]: missing required key `action`",
        "steps[0]: missing required key `id`",
    ]


def test_unknown_keys_get_a_did_you_mean_at_the_key() -> None:
    diags = _diags(
        """\
        saga: s
        steps:
          - id: a
            action: {mock: {}}
            retyr: {max_attempts: 2}
          - paralel:
              id: g
        """
    )
    assert ("E011", 5, 5, "unknown key 'retyr' in steps[0]", "did you mean `retry`?") in diags
    assert ("E011", 6, 5, "unknown key 'paralel' in steps[1]", "did you mean `parallel`?") in diags


def test_every_error_of_a_document_is_reported() -> None:
    steps = "".join(
        f"  - id: Step{i}\n    action: {{mock: {{}}}}\n    timeout: {i} apples\n" for i in range(5)
    )
    diags = _diags("saga: s\nsteps:\n" + steps)
    assert len(diags) == 10
    assert sorted({line for _, line, *_ in diags}) == [3, 5, 6, 8, 9, 11, 12, 14, 15, 17]


def test_a_document_that_is_not_a_mapping() -> None:
    [(code, *_)] = _diags("- just\n- a list\n")
    assert code == "E010"


def test_large_documents_take_the_fast_path_and_still_explain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(schema, "FAST_THRESHOLD", 0)
    calls: list[object] = []
    real = schema.is_valid_fast
    monkeypatch.setattr(schema, "is_valid_fast", lambda d: calls.append(d) or real(d))
    good = "saga: s\nsteps:\n  - {id: a, action: {mock: {}}}\n"
    assert compile_text(good).diagnostics == [] and len(calls) == 1
    bad = good + "  - {id: B, action: {mock: {}}, timeout: soon}\n"
    assert [d.code for d in compile_text(bad).diagnostics] == ["E010", "E010"]


def _documents() -> list[object]:
    paths = sorted((ROOT / "sagas").glob("*.yaml")) + sorted(
        (ROOT / "tests" / "fixtures" / "invalid").glob("*.yaml")
    )
    out = []
    for p in paths:
        doc, _ = load_text(p.read_text("utf-8"), str(p))
        if doc is not None:
            out.append(doc.data)
    return out


DOCUMENTS = _documents()


def _verdict(data: object) -> bool:
    return not any(True for _ in schema.reference_validator().iter_errors(data))


@pytest.mark.parametrize("index", range(len(DOCUMENTS)))
def test_fast_validator_agrees_with_jsonschema(index: int) -> None:
    data = DOCUMENTS[index]
    assert schema.is_valid_fast(data) == _verdict(data)


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 5),
    st.sampled_from(["", "x", "Bad Id", "10s", "TIMEOUT", "a.b:c", "group:x", "any"]),
    st.just([]),
    st.just({}),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_validator_agrees_after_random_edits(data: st.DataObject) -> None:
    """Replace one node of a real saga with a random value: both validators give one verdict."""
    doc = copy.deepcopy(data.draw(st.sampled_from(DOCUMENTS[:8])))
    node = doc
    for _ in range(data.draw(st.integers(1, 6))):
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        if not children or not isinstance(node, dict | list):
            break
        _, child = data.draw(st.sampled_from(children))
        if not isinstance(child, dict | list):
            break
        node = child
    if isinstance(node, dict) and node:
        node[data.draw(st.sampled_from([*node, "extra"]))] = data.draw(_VALUES)
    elif isinstance(node, list) and node:
        node[data.draw(st.integers(0, len(node) - 1))] = data.draw(_VALUES)
    assert schema.is_valid_fast(doc) == _verdict(doc)


_MOCK = {"mock": {}}
_TRICKY_NODES = [
    {"id": "a", "action": "x"},
    {"id": "a", "action": "x", "parallel": {"id": "p", "branches": [[{"id": "b", "action": "x"}]]}},
    {"parallel": {"id": "p", "branches": [[{"id": "b", "action": "x"}]]}},
    {"parallel": {"id": "p", "branches": [[{"id": "b", "action": "x"}]]}, "id": "p"},
    {"approval": {"id": "g", "approvers": ["u"]}, "id": "g"},
    {"approval": {"id": "g", "approvers": ["u"]}},
    {"foreach": {"id": "f", "items": "{{ input.x }}", "as": "x", "action": "x"}, "id": "f"},
    {"fail": {"id": "f", "code": "NO"}, "id": "f"},
    {"fail": {"id": "f", "code": "NO"}},
    {"id": "a"},
    {"id": 3, "action": "x"},
    {"action": "x"},
    {},
    [],
    "a",
    None,
    {"id": "a", "action": _MOCK, "retry": {"max_attempts": 2}},
    {"id": "a", "action": _MOCK, "retry": [{"max_attempts": 2}, {"on": ["X"]}]},
    {"id": "a", "action": _MOCK, "retry": []},
    {"id": "a", "action": _MOCK, "retry": "3"},
    {"id": "a", "action": _MOCK, "retry": None},
    {"id": "a", "action": _MOCK, "retry": {"max_attempts": 0}},
    {"id": "a", "action": _MOCK, "compensate": {"action": "x", "retry": [{}]}},
]


@pytest.mark.parametrize("node", _TRICKY_NODES)
def test_fast_validator_agrees_on_node_kinds_and_retries(node: object) -> None:
    """The fast validator asks first whether a node has an `id` and whether a retry is one
    policy: nodes that mix a wrapper with step keys, and every shape of retry, get the same
    verdict from both validators."""
    data = {"saga": "s", "actions": {"x": _MOCK}, "steps": [copy.deepcopy(node)]}
    assert schema.is_valid_fast(copy.deepcopy(data)) == _verdict(data)


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].glob("sagas/*.yaml")))
def test_the_fast_validator_never_changes_the_document(path: Path) -> None:
    """Defaults written into the data would change the definition hash of large files only."""
    doc, _ = load_text(path.read_text(), str(path))
    assert doc is not None
    before = copy.deepcopy(doc.data)
    assert schema.is_valid_fast(doc.data)
    assert doc.data == before
