"""The YAML loader: YAML 1.2 scalars, exact positions, and hostile input refused fast."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from sagac.compiler import loader
from sagac.compiler.loader import load_file, load_text


def test_yaml_1_2_keeps_on_yes_no_as_strings() -> None:
    doc, diags = load_text("on: [yes, no, on, off, y, n]\nflag: true\nother: False\n")
    assert not diags and doc is not None
    assert doc.data == {"on": ["yes", "no", "on", "off", "y", "n"], "flag": True, "other": False}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12", 12),
        ("0o17", 15),
        ("0x1F", 31),
        ("1.5", 1.5),
        ("~", None),
        ("'12'", "12"),
        ("!!str 12", "12"),
        ("1_000", "1_000"),  # a YAML 1.1 int, a 1.2 string
        ("2001-12-14", "2001-12-14"),  # no implicit timestamps
    ],
)
def test_core_schema_scalars(text: str, value: object) -> None:
    doc, diags = load_text(f"v: {text}\n")
    assert not diags and doc is not None
    assert doc.data["v"] == value
    assert type(doc.data["v"]) is type(value)


def test_positions_of_keys_and_values() -> None:
    doc, _ = load_text("saga: s\nsteps:\n  - id: a\n    with: {x: 1}\n")
    assert doc is not None
    at = doc.source.at
    assert (at(("steps", 0, "id")).line, at(("steps", 0, "id")).column) == (3, 9)
    assert (at(("steps", 0, "id"), key=True).line, at(("steps", 0, "id"), key=True).column) == (
        3,
        5,
    )
    assert (at(("steps", 0, "with", "x")).line, at(("steps", 0, "with", "x")).column) == (4, 15)
    # A path that does not exist points at its nearest ancestor.
    assert at(("steps", 0, "with", "nope")) == at(("steps", 0, "with"))


def _single(text: str) -> tuple[str, str, int]:
    doc, diags = load_text(text)
    assert doc is None and len(diags) == 1
    return diags[0].code, diags[0].message, diags[0].line


def test_alias_bomb_is_refused_fast() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    start = time.perf_counter()
    code, message, _ = _single("\n".join(lines) + "\n")
    assert code == "E002" and "expands to more than" in message
    assert time.perf_counter() - start < 2


def test_deep_nesting_is_refused() -> None:
    code, message, _ = _single("v: " + "[" * 500 + "]" * 500 + "\n")
    assert code == "E002" and "nesting deeper" in message


def test_node_limit_counts_each_node_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nested containers are not counted once per ancestor; aliases count what they expand to."""
    monkeypatch.setattr(loader, "MAX_NODES", 1_000)
    nested = "steps:\n" + "".join(f"  - {{a: {{b: {{c: [{i}, {i}]}}}}}}\n" for i in range(100))
    doc, diags = load_text(nested)  # 100 * 9 + 3 = 903 nodes (keys included), 7 deep
    assert not diags and doc is not None
    code, _, _ = _single(
        "base: &b ["
        + ", ".join("x" * 1 for _ in range(100))
        + "]\n"
        + "".join(f"k{i}: *b\n" for i in range(10))
    )
    assert code == "E002"


@pytest.mark.parametrize(
    "text",
    [
        "v: !!python/object/apply:os.system ['echo hi']\n",
        "v: !!python/name:os.system\n",
        "v: !!python/object:collections.OrderedDict {}\n",
        "v: !custom 1\n",
        "v: !!binary aGk=\n",
    ],
)
def test_tags_that_construct_objects_are_refused(text: str) -> None:
    code, message, line = _single(text)
    assert code == "E002" and "tag" in message and line == 1


def test_files_over_16_mib_are_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * (17 * 1024 * 1024) + b"\n")
    start = time.perf_counter()
    doc, diags = load_file(path)
    assert doc is None and [d.code for d in diags] == ["E002"]
    assert "larger than 16 MiB" in diags[0].message
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("a: 1\na: 2\n", "E003"),
        ("a: 1\n---\nb: 2\n", "E001"),
        ("a: [1, 2\n", "E001"),
        ("a: *nope\n", "E001"),
        ("? [1, 2]\n: x\n", "E001"),
    ],
)
def test_malformed_yaml_is_a_diagnostic(text: str, code: str) -> None:
    assert _single(text)[0] == code


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    doc, diags = load_file(tmp_path / "missing.yaml")
    assert doc is None and diags[0].code == "E004"
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    doc, diags = load_file(bad)
    assert doc is None and diags[0].code == "E001" and "UTF-8" in diags[0].message


_WALK_CASES = [
    "a: &x {b: [1, *x0]}\n",
    "base: &b [1, {k: &s v}]\nk1: *b\nk2: *s\nk3: [*b, *b]\n",
    "? [1, 2]\n: x\n",
    "? {a: 1}\n: x\n",
    "base: &m {a: 1}\n? *m\n: x\n",
    "a: 1\nb: {a: 1, a: 2}\n",
    "[1, 0o7, 0x1f, .5, -.inf, .NaN, ~, null, true, 'x', !!str 1, ! 2, !!int 3, !!float 4]\n",
    "{null: 1, true: 2, 3: 4, 1.5: 5, '': 6}\n",
    "{1: a, '1': b}\n",
    "v: !!int x\n",
    "v: !!map {a: 1}\nw: !!seq [1]\nx: !!set {a}\n",
    "a: 1\n---\nb: 2\n",
    "v: " + "[" * 70 + "]" * 70 + "\n",
    "",
    "# only a comment\n",
    "plain\n",
]


_SAGAS = sorted((Path(__file__).resolve().parents[2] / "sagas").glob("*.yaml"))


@pytest.mark.parametrize("max_nodes", [loader.MAX_NODES, 40])
@pytest.mark.parametrize("text", _WALK_CASES + [p.read_text("utf-8") for p in _SAGAS])
def test_fast_walk_agrees_with_the_recording_walk(
    text: str, max_nodes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_data` (the hot path) and `_build` (which also records positions) build the same data
    and refuse the same input with the same diagnostic, node limit included."""
    monkeypatch.setattr(loader, "MAX_NODES", max_nodes)

    def outcome(build: Callable[[], object]) -> object:
        try:
            return ("ok", build())
        except loader._Refused as r:
            return ("refused", r.code, r.message, r.mark, r.hint)
        except yaml.YAMLError as e:
            return ("error", type(e).__name__, str(e))

    assert outcome(lambda: loader._data(text)) == outcome(lambda: loader._build(text, None))
