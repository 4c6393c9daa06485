"""Node kinds are listed once (the IR's union) and every place that treats them differently is
made to handle each one: mypy through `match` + `assert_never`, registries at import, and the
JSON Schema's node union by the tests here."""

from __future__ import annotations

import copy
import re
import textwrap
from pathlib import Path
from typing import Any, get_args

import pytest
from sagac.compiler import ir, schema

ROOT = Path(__file__).resolve().parents[2]

# IR fields the lowerer derives instead of reading a key of the same name.
DERIVED = {"kind", "path", "has_simulate", "child_irreversible"}
# IR fields the lowerer always fills, from a YAML key that may be left out (`wait.signal`
# defaults to the node's id).
DEFAULTED = {"signal"}


def _ir_keys(cls: type[ir.AnyNode]) -> tuple[set[str], set[str]]:
    """(every YAML key of a node of `cls`, the required ones), read off the model."""
    keys, required = set(), set()
    for name, f in cls.model_fields.items():
        if name in DERIVED:
            continue
        keys.add(f.alias or name)
        if f.is_required() and name not in DEFAULTED:
            required.add(f.alias or name)
    return keys, required


def test_node_kinds_come_from_the_union() -> None:
    assert ir.NODE_KINDS == (
        "task",
        "parallel",
        "approval",
        "foreach",
        "fail",
        "sleep",
        "wait",
        "call",
        "switch",
    )
    assert set(get_args(ir.NodeKind)) == set(ir.NODE_KINDS)
    assert tuple(ir.NODE_CLASSES.values()) == get_args(ir.AnyNode)


def test_the_schema_node_union_lists_the_ir_kinds_with_the_same_keys() -> None:
    """The JSON Schema and the IR are written separately: they must name the same kinds, wrap
    each in the same key, and accept (and require) the same keys per kind."""
    union = schema.node_union(schema.saga_schema())
    assert set(union.wrappers) == {k for k in ir.WRAPPER_KEYS.values() if k is not None}
    defs = schema.saga_schema()["$defs"]
    for kind, cls in ir.NODE_CLASSES.items():
        wrapper = ir.WRAPPER_KEYS[kind]
        entry = defs[union.bare if wrapper is None else union.wrappers[wrapper]]
        keys, required = _ir_keys(cls)
        assert set(entry["properties"]) == keys, kind
        assert set(entry.get("required", ())) == required, kind


def _swap_first_two_wrappers(s: dict[str, Any]) -> None:
    node = s["$defs"]["node"]
    first = {k: node[k] for k in ("if", "then")}
    second = {k: node["else"][k] for k in ("if", "then")}
    node.update(second)
    node["else"].update(first)


def test_the_node_union_is_found_by_what_it_is_not_by_position() -> None:
    s = copy.deepcopy(schema.saga_schema())
    before = schema.node_union(s)
    _swap_first_two_wrappers(s)
    after = schema.node_union(s)
    assert after.wrappers == before.wrappers  # same wrappers, found in the new order
    assert list(after.wrappers)[:2] == list(before.wrappers)[:2][::-1]


def _break_additional(s: dict[str, Any]) -> None:
    s["$defs"]["node"]["else"]["then"].pop("additionalProperties")


def _break_end(s: dict[str, Any]) -> None:
    end = s["$defs"]["node"]
    while "if" in end["else"]:
        end = end["else"]
    end["else"] = {"type": "object"}


def _break_id(s: dict[str, Any]) -> None:
    s["$defs"]["taskStep"]["required"] = ["action"]


def _break_retry(s: dict[str, Any]) -> None:
    s["$defs"]["retry"]["if"] = {"type": "object"}


@pytest.mark.parametrize("edit", [_break_additional, _break_end, _break_id, _break_retry])
def test_the_fast_validator_refuses_a_schema_of_another_shape(edit: Any) -> None:
    """Its rewrite is valid only for the shape it checks: any other fails loudly, by name."""
    s = copy.deepcopy(schema.saga_schema())
    edit(s)
    with pytest.raises(schema.SchemaShapeError):
        schema.fast_definition(s)


def test_the_shipped_schema_gets_the_fast_rewrite() -> None:
    rewritten = schema.fast_definition(schema.saga_schema())
    assert rewritten["$defs"]["node"]["if"] == {"type": "object", "required": ["id"]}
    assert rewritten["$defs"]["retry"]["if"] == {"type": "object"}


def test_a_registry_missing_a_kind_fails_by_name() -> None:
    table = {k: None for k in ir.NODE_KINDS if k != "fail"} | {"nap": None}
    with pytest.raises(TypeError, match=r"missing \['fail'\], extra \['nap'\]"):
        ir.require_kinds(table, "x.TABLE")


def _probe_source() -> tuple[str, dict[int, str]]:
    """A module with one `match` per kind, each missing that kind, and one complete `match`;
    and the line of each `assert_never` that must fail -> the class it must name."""
    names = [cls.__name__ for cls in get_args(ir.AnyNode)]
    lines = ["from typing import assert_never", "", "from sagac.compiler import ir", ""]
    expect: dict[int, str] = {}
    for i, left_out in enumerate([None, *names]):
        cases = " | ".join(f"ir.{n}()" for n in names if n != left_out)
        lines += [
            "",
            f"def f{i}(node: ir.AnyNode) -> int:",
            "    match node:",
            f"        case {cases}:",
            "            return 1",
            "        case _:",
            "            assert_never(node)",
            "",
        ]
        if left_out is not None:
            expect[len(lines) - 1] = left_out
    return "\n".join(lines) + "\n", expect


def test_mypy_reports_a_match_that_misses_a_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The proof that `match` + `assert_never` catches a kind left out: mypy, with the
    project's configuration, on a throwaway module (its cache kept between runs)."""
    from mypy import api

    # The installed layout, as `make typecheck` builds it (mypy cannot follow the editable
    # install): `mypy_path = ".typecheck"` is read relative to the working directory.
    work = Path(request.config.cache.mkdir("mypy-node-kinds"))
    package = work / ".typecheck" / "sagac"
    package.mkdir(parents=True, exist_ok=True)
    for name, target in (
        ("__init__.py", ROOT / "sagac/__init__.py"),
        ("compiler", ROOT / "compiler"),
    ):
        link = package / name
        if not link.is_symlink() or link.resolve() != target.resolve():
            link.unlink(missing_ok=True)
            link.symlink_to(target)
    source, expect = _probe_source()
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    monkeypatch.chdir(work)
    out, err, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--strict", str(probe)]
    )
    assert status == 1, out + err
    found = {
        int(m["line"]): m["cls"]
        for m in re.finditer(
            r'probe\.py:(?P<line>\d+): error: Argument 1 to "assert_never" has incompatible '
            r'type "(?P<cls>\w+)"',
            out,
        )
    }
    assert found == expect, textwrap.indent(out, "  ")
    assert out.count("error:") == len(expect), out
