"""`call` at compile time: called sagas are loaded from the calling file's folder and checked
with it (their diagnostics in their own files), E027 to E029, `Plan.calls`, what a call
inherits from its child (pivot, error codes, compensability), and the stored definition that
brings every called saga with it."""

from __future__ import annotations

import asyncio
import json
import textwrap
import uuid
from pathlib import Path

import pytest
from sagac.compiler.pipeline import Compilation, compile_file, compile_text
from sagac.compiler.plan import canonical_json, source_hash

import sagac


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), "utf-8")


def _saga(name: str, *steps: str, extra: str = "") -> str:
    body = "".join(f"  - {s}\n" for s in steps)
    return f"saga: {name}\n{extra}steps:\n{body}"


def _call(node_id: str, saga: str, with_: str = "") -> str:
    return f"call: {{id: {node_id}, saga: {saga}{', with: ' + with_ if with_ else ''}}}"


MOCK = "{id: %s, action: {mock: {result: 1}}}"


def _codes(c: Compilation) -> list[tuple[str, str, int]]:
    return [(d.code, Path(d.file).name, d.line) for d in c.diagnostics]


def test_a_call_compiles_its_saga_into_plan_calls(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "main.yaml": _saga("main", MOCK % "start", _call("reserve", "inv/reserve.yaml")),
            "inv/reserve.yaml": _saga("reserve", MOCK % "hold"),
        },
    )
    c = compile_file(tmp_path / "main.yaml")
    assert c.diagnostics == [] and c.plan is not None
    child = c.plan.calls["reserve"]
    assert child.saga == "reserve" and child.file == str(tmp_path / "inv" / "reserve.yaml")
    assert list(child.nodes) == ["hold"] and child.calls == {}
    assert c.plan.nodes["reserve"].kind == "call"
    plan_json = json.loads(c.plan.model_dump_json(by_alias=True))
    assert plan_json["calls"]["reserve"]["nodes"]["hold"]["kind"] == "task"  # children in full


def test_a_saga_without_calls_keeps_its_source_and_hash(tmp_path: Path) -> None:
    text = _saga("plain", MOCK % "a", MOCK % "b")
    _write(tmp_path, {"plain.yaml": text})
    plan = compile_file(tmp_path / "plain.yaml").plan
    assert plan is not None and plan.calls == {}
    data = {"saga": "plain", "steps": [{"id": i, "action": {"mock": {"result": 1}}} for i in "ab"]}
    assert plan.source == canonical_json(data)
    assert plan.hash == source_hash(canonical_json(data))


def test_diagnostics_of_a_called_saga_point_into_its_own_file(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    _write(
        tmp_path,
        {
            "main.yaml": _saga("main", _call("reserve", "sub/child.yaml")),
            "sub/child.yaml": _saga("child", "{id: hold, action: nowhere}"),
        },
    )
    c = compile_file(tmp_path / "main.yaml")
    assert c.plan is None
    assert _codes(c) == [("E027", "main.yaml", 3), ("E014", "child.yaml", 3)]
    e027, e014 = c.diagnostics
    assert e014.file == str(tmp_path / "sub" / "child.yaml")
    assert "the called saga sub/child.yaml has 1 error(s)" in e027.message
    assert f"sagac validate {e014.file}" in (e027.hint or "")
    assert list(c.called) == [e014.file]
    result = run_cli("validate", str(tmp_path / "main.yaml"))
    assert result.code == 65
    assert f"{e014.file}:3:" in result.err
    assert "   3 |   - {id: hold, action: nowhere}" in result.err  # the child's own line


def test_a_missing_called_saga_is_e027_and_only_that(tmp_path: Path) -> None:
    _write(tmp_path, {"main.yaml": _saga("main", _call("reserve", "gone.yaml"))})
    c = compile_file(tmp_path / "main.yaml")
    assert _codes(c) == [("E027", "main.yaml", 3)]
    assert "the called saga gone.yaml cannot be read: No such file" in c.diagnostics[0].message
    assert c.called == {}


def test_yaml_errors_in_a_called_saga_are_reported_in_its_file(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "main.yaml": _saga("main", _call("reserve", "child.yaml")),
            "child.yaml": "saga: child\nsteps: [\n",
        },
    )
    c = compile_file(tmp_path / "main.yaml")
    assert [(code, name) for code, name, _ in _codes(c)] == [
        ("E027", "main.yaml"),
        ("E001", "child.yaml"),
    ]


def test_recursion_through_two_files_and_relative_paths_from_a_subfolder(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            "main.yaml": _saga("main", _call("reserve", "inv/reserve.yaml")),
            "inv/reserve.yaml": _saga(
                "reserve", _call("pay", "../pay/charge.yaml"), _call("log", "deep/log.yaml")
            ),
            "inv/deep/log.yaml": _saga("log", MOCK % "write"),
            "pay/charge.yaml": _saga("charge", MOCK % "charge"),
        },
    )
    c = compile_file(tmp_path / "main.yaml")
    assert c.diagnostics == [] and c.plan is not None
    reserve = c.plan.calls["reserve"]
    assert reserve.calls["pay"].file == str(tmp_path / "pay" / "charge.yaml")
    assert reserve.calls["log"].file == str(tmp_path / "inv" / "deep" / "log.yaml")
    bundle = json.loads(c.plan.source)
    assert sorted(bundle["calls"]) == ["inv/deep/log.yaml", "inv/reserve.yaml", "pay/charge.yaml"]
    own = json.loads(reserve.source)  # the child's source names paths from its own folder
    assert sorted(own["calls"]) == ["../pay/charge.yaml", "deep/log.yaml"]


def test_a_cycle_through_two_files_is_e028_with_its_path(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "top.yaml": _saga("top", _call("a", "a.yaml")),
            "a.yaml": _saga("a", MOCK % "x", _call("b", "sub/b.yaml")),
            "sub/b.yaml": _saga("b", _call("back", "../a.yaml")),
        },
    )
    c = compile_file(tmp_path / "a.yaml")
    assert _codes(c) == [("E028", "a.yaml", 4)]
    assert c.diagnostics[0].message == "call cycle: a.yaml -> sub/b.yaml -> a.yaml"
    # From a saga that calls into the cycle: the cycle in its file, E027 at the call into it.
    c = compile_file(tmp_path / "top.yaml")
    assert _codes(c) == [("E027", "top.yaml", 3), ("E028", "a.yaml", 4)]
    # Seen from the other file, the same cycle starts there.
    c = compile_file(tmp_path / "sub" / "b.yaml")
    assert c.diagnostics[0].message == "call cycle: b.yaml -> ../a.yaml -> b.yaml"


def test_a_saga_calling_itself_is_e028(tmp_path: Path) -> None:
    _write(tmp_path, {"self.yaml": _saga("self", _call("again", "./self.yaml"))})
    c = compile_file(tmp_path / "self.yaml")
    assert _codes(c) == [("E028", "self.yaml", 3)]
    assert c.diagnostics[0].message == "call cycle: self.yaml -> self.yaml"


def test_a_diamond_is_not_a_cycle_and_compiles_the_shared_saga_once(tmp_path: Path) -> None:
    shared = _saga(
        "shared", "{id: s, action: {mock: {}}, compensate: {action: {mock: {}}}}"
    )  # W104 once, though two sagas call it
    _write(
        tmp_path,
        {
            "top.yaml": _saga("top", _call("left", "l/left.yaml"), _call("right", "right.yaml")),
            "l/left.yaml": _saga("left", _call("d", "../shared.yaml")),
            "right.yaml": _saga("right", _call("d", "shared.yaml")),
            "shared.yaml": shared,
        },
    )
    c = compile_file(tmp_path / "top.yaml")
    assert _codes(c) == [("W104", "shared.yaml", 3)]
    assert c.plan is not None
    left, right = c.plan.calls["left"], c.plan.calls["right"]
    assert left.calls["d"] is right.calls["d"]
    assert list(json.loads(c.plan.source)["calls"]) == [
        "l/left.yaml",
        "right.yaml",
        "shared.yaml",
    ]


def test_compile_text_reads_called_sagas_only_through_a_resolver(tmp_path: Path) -> None:
    text = _saga("main", _call("reserve", "inv/reserve.yaml"))
    c = compile_text(text, "main.yaml")
    assert _codes(c) == [("E027", "main.yaml", 3)]
    assert "compiled from text, not a file" in c.diagnostics[0].message
    files = {"inv/reserve.yaml": _saga("reserve", MOCK % "hold")}

    def resolver(name: str) -> str:
        if name not in files:
            raise FileNotFoundError(2, "No such file or directory", name)
        return files[name]

    c = compile_text(text, "main.yaml", resolver=resolver)
    assert c.diagnostics == [] and c.plan is not None
    assert c.plan.calls["reserve"].file == "inv/reserve.yaml"
    c = compile_text(_saga("m", _call("x", "nope.yaml")), "main.yaml", resolver=resolver)
    assert "nope.yaml cannot be read: No such file or directory" in c.diagnostics[0].message


CHILD_INPUT = """\
    input:
      type: object
      required: [items, warehouse]
      additionalProperties: false
      properties:
        items: {type: array}
        warehouse: {type: string}
        priority: {type: integer}
"""


@pytest.mark.parametrize(
    ("with_", "expected"),
    [
        ('{items: "{{ input.items }}", warehouse: north}', []),
        ('{items: [1], warehouse: "w-{{ input.n }}", priority: 2.0}', []),
        ("{items: [1]}", ["`with` has no `warehouse`, which the input of child.yaml requires"]),
        (
            '{items: 3, warehouse: "{{ input.w }}"}',
            ["`items` is integer, but the input of child.yaml wants array"],
        ),
        (
            '{items: [], warehouse: "w", prio: 1}',
            [
                "the input of child.yaml takes no `prio`"
                " (it takes: `items`, `warehouse`, `priority`)"
            ],
        ),
        ('{items: [], warehouse: "w", priority: 1.5}', ["`priority` is number, but"]),
        ('{items: [], warehouse: "w", priority: true}', ["`priority` is boolean, but"]),
    ],
)
def test_with_that_cannot_satisfy_the_child_input_is_e029(
    tmp_path: Path, with_: str, expected: list[str]
) -> None:
    _write(
        tmp_path,
        {
            "main.yaml": _saga("main", _call("reserve", "child.yaml", with_)),
            "child.yaml": "saga: child\n"
            + textwrap.dedent(CHILD_INPUT)
            + "steps:\n  - "
            + MOCK % "hold"
            + "\n",
        },
    )
    c = compile_file(tmp_path / "main.yaml")
    assert [d.code for d in c.diagnostics] == ["E029"] * len(expected)
    for d, text in zip(c.diagnostics, expected, strict=True):
        assert text in d.message and d.file.endswith("main.yaml")
    assert (c.plan is None) == bool(expected)


def test_a_child_whose_input_is_not_an_object_is_e029(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "main.yaml": _saga("main", _call("c", "child.yaml")),
            "child.yaml": _saga("child", MOCK % "x", extra="input: {type: string}\n"),
        },
    )
    assert [d.code for d in compile_file(tmp_path / "main.yaml").diagnostics] == ["E029"]


def test_a_call_of_a_saga_with_an_irreversible_step_is_a_pivot(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "main.yaml": _saga(
                "main",
                _call("mail", "mid.yaml"),
                "{id: archive, action: a}",
                extra="actions: {a: {mock: {}}}\n",
            ),
            "mid.yaml": _saga("mid", _call("send", "leaf.yaml")),
            "leaf.yaml": _saga("leaf", "{id: send, action: {mock: {}}, irreversible: true}"),
        },
    )
    c = compile_file(tmp_path / "main.yaml")
    assert c.saga is not None and c.plan is not None
    call = c.saga.steps[0]
    assert call.kind == "call" and call.child_irreversible
    assert c.plan.nodes["mail"].irreversible and c.plan.calls["mail"].nodes["send"].irreversible
    w102 = [d for d in c.diagnostics if d.code == "W102"]
    assert len(w102) == 1 and "'archive'" in w102[0].message and "'mail'" in w102[0].message


def test_a_call_inherits_its_child_codes_and_compensability(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "main.yaml": _saga(
                "main",
                "parallel: {id: p, branches: [[{" + _call("pay", "pay.yaml") + "}]]}",
                _call("plain", "plain.yaml"),
            ),
            "pay.yaml": _saga(
                "pay",
                "{id: charge, action: {mock: {fail: CARD_DECLINED}},"
                " compensate: {action: {mock: {}}, retry: {max_attempts: 5}}}",
            ),
            "plain.yaml": _saga("plain", MOCK % "x"),
        },
    )
    c = compile_file(tmp_path / "main.yaml")
    assert c.diagnostics == [] and c.plan is not None
    nodes = c.plan.nodes
    assert "CARD_DECLINED" in nodes["pay"].error_codes and nodes["pay"].compensable
    assert "CARD_DECLINED" in nodes["p"].error_codes  # the group holding the call
    assert "CARD_DECLINED" not in nodes["plain"].error_codes and not nodes["plain"].compensable
    assert "CARD_DECLINED" in c.plan.error_codes


def test_python_actions_of_a_called_saga_import_from_its_own_folder(
    tmp_path: Path, run_cli
) -> None:  # type: ignore[no-untyped-def]
    module = f"callc_{uuid.uuid4().hex[:8]}"
    _write(
        tmp_path,
        {
            "main.yaml": _saga("main", _call("c", "lib/child.yaml")),
            "lib/child.yaml": _saga(
                "child",
                f'{{id: ok, action: {{python: "{module}:pay"}}, with: {{amount: 1}}}}',
                f'{{id: bad, action: {{python: "{module}:pay"}}, with: {{amont: 1}}}}',
            ),
            f"lib/{module}.py": "def pay(amount):\n    return amount\n",
        },
    )
    main = tmp_path / "main.yaml"
    c = compile_file(main, imports=True)
    assert _codes(c) == [("E027", "main.yaml", 3), ("E026", "child.yaml", 4)]
    assert "takes no argument 'amont'" in c.diagnostics[1].message
    assert compile_file(main).ok()  # imports=False: nothing imported, nothing to say
    assert run_cli("validate", "--no-import", str(main)).code == 0
    assert run_cli("validate", str(main)).code == 65


def test_the_stored_definition_rebuilds_the_whole_tree_without_the_files(
    tmp_path: Path,
) -> None:
    from sagac.runtime.resume import stored_plan

    _write(
        tmp_path,
        {
            "main.yaml": _saga("main", MOCK % "start", _call("reserve", "inv/reserve.yaml")),
            "inv/reserve.yaml": _saga("reserve", _call("pay", "../pay.yaml")),
            "pay.yaml": _saga("pay", MOCK % "charge"),
        },
    )
    plan = sagac.load(tmp_path / "main.yaml")
    store_url = f"sqlite:///{tmp_path / 'runs.db'}"

    async def stored() -> tuple[str, sagac.Plan]:
        store = sagac.open_store(store_url)
        try:
            run_id = (await sagac.asubmit(plan, None, store=store)).run_id
            record = await store.get_run(run_id)
            definition = await store.definition(record.definition_hash)
            assert definition is not None
            return definition.source, stored_plan(definition)
        finally:
            await store.close()

    for name in ("main.yaml", "inv/reserve.yaml", "pay.yaml"):
        (tmp_path / name).unlink()
    source, again = asyncio.run(stored())
    assert source == plan.source
    assert again.hash == plan.hash
    assert again.calls.keys() == plan.calls.keys() == {"reserve"}
    child, child_again = plan.calls["reserve"], again.calls["reserve"]
    assert child_again.hash == child.hash and child_again.file == child.file
    assert child_again.calls["pay"].hash == child.calls["pay"].hash
    assert again.model_dump(by_alias=True) == plan.model_dump(by_alias=True)
    # The child's own source stands alone (a child run keeps it as its definition).
    alone = compile_text(child.source, child.file or "")
    assert alone.plan is not None and alone.plan.hash == child.hash
    assert alone.plan.calls["pay"].file == child.calls["pay"].file
