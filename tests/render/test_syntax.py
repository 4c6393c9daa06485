"""Every diagram is valid in its language: Graphviz accepts the DOT, the SVG is XML, the
Mermaid is well formed, and text from saga files can never break out of a label."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sagac.compiler.render import render_dot, render_mermaid, render_svg
from sagac.compiler.render.templating import dot_html, dot_string, mermaid_text

from .conftest import HERE, SAGA_FILES, need_binary, plan_of, saga_id

MERMAID_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
NODE = re.compile(
    r'^\s*([A-Za-z][A-Za-z0-9_]*)(\(\(\(|\(\[|\[\[|\{\{|\[/|\[\\|\(\(|\(|\[|>|\{)"(.*)"'
)
EDGE = re.compile(r'^\s*(\S+) (-->|-\.-|-\.->)(\|"[^"|]*"\|)? (\S+)$')


@pytest.mark.parametrize("path", SAGA_FILES, ids=saga_id)
def test_dot_accepts_every_diagram(path: Path) -> None:
    dot = need_binary("dot", "graphviz")
    done = subprocess.run(
        [dot, "-Tsvg"], input=render_dot(plan_of(path)).encode(), capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b"", done.stderr.decode()  # not even a warning
    ET.fromstring(done.stdout)


@pytest.mark.parametrize("path", SAGA_FILES, ids=saga_id)
def test_svg_is_well_formed_xml(path: Path) -> None:
    need_binary("dot", "graphviz")
    root = ET.fromstring(render_svg(plan_of(path)))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "start" in texts and "Legend" in texts


def mermaid_problems(text: str) -> list[str]:
    """What a Mermaid parser would choke on, checked line by line."""
    problems: list[str] = []
    lines = text.splitlines()
    body = [line for line in lines if line.strip() and not line.lstrip().startswith("%%")]
    if body[0] != "flowchart TD":
        problems.append(f"first statement is {body[0]!r}")
    depth, declared, used = 0, set(), set()
    for line in body[1:]:
        s = line.strip()
        if s.startswith("subgraph "):
            depth += 1
            m = re.match(r'^subgraph ([A-Za-z][A-Za-z0-9_]*) \["([^"]*)"\]$', s)
            if not m:
                problems.append(f"bad subgraph line {s!r}")
            else:
                declared.add(m.group(1))
        elif s == "end":
            depth -= 1
            if depth < 0:
                problems.append("`end` without subgraph")
        elif m := NODE.match(line):
            declared.add(m.group(1))
            if '"' in m.group(3):
                problems.append(f"raw quote in label {s!r}")
            if re.search(r"<(?!br>)", m.group(3)):
                problems.append(f"raw `<` in label {s!r}")
        elif m := EDGE.match(line):
            used.update((m.group(1), m.group(4)))
        elif not re.match(r"^(classDef|class|linkStyle|style) ", s):
            problems.append(f"unknown statement {s!r}")
    if depth != 0:
        problems.append(f"{depth} subgraph(s) without `end`")
    problems += [f"invalid id {i!r}" for i in declared | used if not MERMAID_ID.match(i)]
    problems += [f"edge to undeclared node {i!r}" for i in sorted(used - declared)]
    problems += [f"id is a keyword: {i!r}" for i in declared if i.lower() in ("end", "graph")]
    return problems


@pytest.mark.parametrize("path", SAGA_FILES, ids=saga_id)
def test_mermaid_is_well_formed(path: Path) -> None:
    assert mermaid_problems(render_mermaid(plan_of(path))) == []


def test_escaping_saga_keeps_labels_inside_their_quotes() -> None:
    plan = plan_of(HERE / "sagas" / "escaping.yaml")
    mermaid = render_mermaid(plan)
    assert "<script>" not in mermaid and "#60;script#62;" in mermaid
    assert "#34;hello#34;" in mermaid
    dot = render_dot(plan)
    labels = re.sub(r'tooltip="(?:[^"\\]|\\.)*"', "", dot)  # quoted strings may hold `<`
    assert "<script>" not in labels and "&lt;script&gt;" in labels
    assert "&quot;hello&quot;" in labels
    assert 'tooltip="Say \\"hello\\" [world] <script>' in dot


def test_escaping_saga_svg_has_no_injected_elements() -> None:
    need_binary("dot", "graphviz")
    root = ET.fromstring(render_svg(plan_of(HERE / "sagas" / "escaping.yaml")))
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert any("<script>alert(1)</script>" in t for t in texts)  # shown as text, not run


def test_escapers() -> None:
    assert mermaid_text('a "b" <c> & #d %e `f`\ng') == (
        "a #34;b#34; #60;c#62; #38; #35;d #37;e #96;f#96;<br>g"
    )
    assert dot_html('<a href="x">&\n') == '&lt;a href=&quot;x&quot;&gt;&amp;<BR ALIGN="CENTER"/>'
    assert dot_string('say "hi" \\ \n') == '"say \\"hi\\" \\\\ \\n"'
    assert "\x00" not in dot_html("a\x00b") and "\x07" not in mermaid_text("a\x07b")


def test_expanded_diagrams_are_valid() -> None:
    """`--expand` draws called sagas inline: still one valid graph in each language."""
    plan = plan_of(HERE / "sagas" / "waits_and_calls.yaml")
    assert mermaid_problems(render_mermaid(plan, None, True)) == []
    dot = need_binary("dot", "graphviz")
    done = subprocess.run(
        [dot, "-Tsvg"], input=render_dot(plan, None, True).encode(), capture_output=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()
    svg = ET.fromstring(done.stdout)
    links = [
        a.get("{http://www.w3.org/1999/xlink}href") for a in svg.iter() if a.tag.endswith("}a")
    ]
    assert "called/reserve.yaml" in links  # the call links to the saga it calls
