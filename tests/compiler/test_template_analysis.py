"""What a template reads, found without rendering it; the fast path agrees with Jinja's parse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import TemplateSyntaxError
from sagac.compiler.templates import Read, TemplateInfo, _Reads, analyze, parse


@pytest.mark.parametrize(
    ("text", "reads"),
    [
        ("no template here", ()),
        ("{{ steps.charge.result.id }}", (Read("steps", ("charge", "result", "id")),)),
        ("a-{{ input['k'][0] }}-{{ run.id }}", (Read("input", ("k", 0)), Read("run", ("id",)))),
        ("{{ steps[name].result }}", (Read("steps", ()), Read("name", ()))),
        (
            "{{ steps.a.result | default(input.x) }}",
            (Read("steps", ("a", "result")), Read("input", ("x",))),
        ),
        ("{% set n = input.n %}{{ n.m }}", (Read("input", ("n",)),)),
        (
            "{% for u in input.users %}{{ u.id }}{{ loop.index }}{% endfor %}",
            (Read("input", ("users",)),),
        ),
        ("{{ range(3) | list }}{{ dict(a=1) }}", ()),
        ("{{ x is defined and true }}", (Read("x", ()),)),
    ],
)
def test_reads(text: str, reads: tuple[Read, ...]) -> None:
    assert analyze(text) == TemplateInfo(reads)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{{ a.b }", "unexpected '}'"),
        ("{{ a | frobnicate }}", "no filter named 'frobnicate'"),
        ("{{ a is frob }}", "no test named 'frob'"),
        ("{% import 'x' as y %}", "`{% import %}` is not available in saga templates"),
        ("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", None),
    ],
)
def test_errors_are_values(text: str, error: str | None) -> None:
    info = analyze(text)
    assert info.error is not None and info.reads == ()
    if error is not None:
        assert info.error == error


def test_error_line_inside_a_multiline_template() -> None:
    assert analyze("line one\n{{ ok }}\n{{ broken( }}").error_line == 3


_NAME = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in {"and", "or", "not", "in", "is", "if", "else", "none", "true", "false"}
)
_SEGMENT = st.one_of(
    _NAME.map(lambda n: f".{n}"),
    st.integers(0, 99).map(lambda i: f"[{i}]"),
    _NAME.map(lambda n: f"['{n}']"),
)
_EXPR = st.tuples(_NAME, st.lists(_SEGMENT, max_size=4)).map(lambda t: t[0] + "".join(t[1]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text("ab- \n", max_size=4), _EXPR), min_size=1, max_size=4))
def test_fast_path_agrees_with_jinja(parts: list[tuple[str, str]]) -> None:
    text = "".join(f"{prefix}{{{{ {expr} }}}}" for prefix, expr in parts)
    slow = tuple(_Reads(parse(text)).reads)
    assert analyze(text).reads == slow


def _jinja_analysis(text: str) -> TemplateInfo:
    """What `analyze` finds when it always goes through Jinja's parser."""
    try:
        walker = _Reads(parse(text))
    except TemplateSyntaxError as e:
        return TemplateInfo(error=e.message or "invalid template", error_line=e.lineno or 1)
    if walker.problems:
        message, line = walker.problems[0]
        return TemplateInfo(error=message, error_line=line)
    reads = tuple(dict.fromkeys(walker.reads))
    return TemplateInfo(reads, defaulted=frozenset(reads) - walker.bare)


_CONDITION = st.tuples(
    st.sampled_from(["", "not ", " not  ", "not not "]),
    _EXPR,
    st.sampled_from(
        [
            *("", " is none", " is not none", " is  defined ", " is not\nstring", " is frob"),
            *(" is not", " is none(1)", " is divisibleby 3", " is sameas x", "is none", " is a.b"),
            " == 1",
        ]
    ),
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text("ab- \n", max_size=3), _CONDITION), min_size=1, max_size=3))
def test_fast_path_agrees_with_jinja_on_conditions(parts: list[tuple[str, str]]) -> None:
    """`not x`, `x is [not] <test>`: what `when:` conditions are made of, recognised without
    Jinja when it is sure to agree (a test it does not know is left to Jinja to report)."""
    text = "".join(f"{prefix}{{{{ {expr} }}}}" for prefix, expr in parts)
    info = analyze(text)
    assert TemplateInfo(tuple(dict.fromkeys(info.reads)), info.error, info.error_line) == (
        _jinja_analysis(text)
    )


@pytest.mark.parametrize(
    ("text", "defaulted"),
    [
        ("{{ steps.a.result.id | default(0) }}", {Read("steps", ("a", "result", "id"))}),
        ("{{ (steps.a.result.id | d(1)) + 2 }}", {Read("steps", ("a", "result", "id"))}),
        # Also read outside the operand, or only in the default's argument: not defaulted.
        ("{{ steps.a.result.id | default(0) }} {{ steps.a.result.id }}", set()),
        ("{{ input.x | default(steps.a.result.id) }}", {Read("input", ("x",))}),
    ],
)
def test_reads_under_default(text: str, defaulted: set[Read]) -> None:
    assert analyze(text).defaulted == defaulted


_DEFAULTED = st.tuples(
    st.sampled_from(["", "not "]),
    _EXPR,
    st.sampled_from(
        [
            *("", " | default(0)", "|d(none)", " | default('x')", ' | default("-1.5")'),
            *(" | default(a.b)", " | default(0) | int", " | default(0, true)", " | upper"),
        ]
    ),
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text("ab- \n", max_size=3), _DEFAULTED), min_size=1, max_size=3))
def test_fast_path_agrees_with_jinja_on_defaults(parts: list[tuple[str, str]]) -> None:
    """`x | default(<literal>)`, the usual guard of a step that may be skipped, is recognised
    without Jinja, with the same reads and the same defaulted reads."""
    text = "".join(f"{prefix}{{{{ {expr} }}}}" for prefix, expr in parts)
    info, slow = analyze(text), _jinja_analysis(text)
    assert (tuple(dict.fromkeys(info.reads)), info.error) == (slow.reads, slow.error)
    assert info.defaulted == slow.defaulted
