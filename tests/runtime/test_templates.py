"""The runtime template engine: native values, text, the sandbox, errors and secret redaction."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sagac.runtime.redaction import Redactor
from sagac.runtime.templates import TemplateEngine

from sagac.errors import StepError

SCOPE: dict[str, Any] = {
    "input": {"order_id": "o7", "amount": 12.5, "items": [{"sku": "A"}, {"sku": "B"}], "n": 3},
    "steps": {"charge": {"result": {"id": "pay_1", "ok": True}, "status": "completed"}},
    "run": {"id": "run_1", "saga": "checkout"},
}


def render(value: Any, scope: dict[str, Any] | None = None) -> Any:
    return TemplateEngine().render(value, SCOPE if scope is None else scope)


def template_error(source: str, engine: TemplateEngine | None = None) -> StepError:
    with pytest.raises(StepError) as info:
        (engine or TemplateEngine()).render(source, SCOPE)
    assert info.value.code == "TEMPLATE_ERROR"
    return info.value


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ input.amount }}", 12.5),
        ("{{ input.n * 2 }}", 6),
        ("  {{ input.items }} ", [{"sku": "A"}, {"sku": "B"}]),
        ("{{ steps.charge.result }}", {"id": "pay_1", "ok": True}),
        ("{{ steps.charge.result.ok }}", True),
        ("{{ steps.charge.status }}", "completed"),
        ("{{ none }}", None),
        ("{{ (1, 2) }}", [1, 2]),
        ("{{ input.items | map(attribute='sku') }}", ["A", "B"]),
        ("{{ range(3) }}", [0, 1, 2]),
        ("{{ {'a': [input.n]} }}", {"a": [3]}),
    ],
)
def test_single_expression_yields_native_json_data(source: str, expected: Any) -> None:
    result = render(source)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("order-{{ input.order_id }}-charge", "order-o7-charge"),
        ("{{ input.n }} items", "3 items"),
        ("{{ input.n }}{{ input.n }}", "33"),
        ("{% if input.n > 2 %}many{% else %}few{% endif %}", "many"),
        ("{# a comment #}x", "x"),
    ],
)
def test_other_templates_render_to_text(source: str, expected: str) -> None:
    assert render(source) == expected


def test_plain_strings_and_other_values_pass_through() -> None:
    plain = "no markers { here }"
    assert render(plain) is plain
    value = {"a": 1, "b": [True, None, 2.5], "{{ key }}": "{{ input.n }}"}
    assert render(value) == {"a": 1, "b": [True, None, 2.5], "{{ key }}": 3}  # keys: literal


def test_containers_are_walked_and_copied() -> None:
    source = {"with": ({"amount": "{{ input.amount }}"}, ["{{ run.id }}", "x"])}
    assert render(source) == {"with": [{"amount": 12.5}, ["run_1", "x"]]}
    result = render("{{ input.items }}")
    result[0]["sku"] = "changed"
    assert SCOPE["input"]["items"][0]["sku"] == "A"


def test_mapping_keys_win_over_methods() -> None:
    assert render("{{ input.items[1].sku }}") == "B"
    assert render("{{ d.keys }}", {"d": {"keys": "the key"}}) == "the key"


def test_data_is_never_rendered_again() -> None:
    scope = {"input": {"note": "{{ 7 * 7 }}", "nested": {"x": "{{ secrets }}"}}}
    assert render("{{ input.note }}", scope) == "{{ 7 * 7 }}"
    assert render("note: {{ input.note }}", scope) == "note: {{ 7 * 7 }}"
    assert render({"n": "{{ input.nested }}"}, scope) == {"n": {"x": "{{ secrets }}"}}


def test_strings_in_one_value_do_not_see_each_others_assignments() -> None:
    value = {"a": "{% set input = 5 %}{{ input }}", "b": "{{ input.order_id }}"}
    assert render(value) == {"a": "5", "b": "o7"}


def test_render_text_always_gives_text() -> None:
    engine = TemplateEngine()
    assert engine.render_text("{{ input.n }}", SCOPE) == "3"
    assert engine.render_text("{{ none }}", SCOPE) == ""
    assert engine.render_text("key-{{ input.order_id }}", SCOPE) == "key-o7"
    assert engine.render_text("plain", SCOPE) == "plain"


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ input.missing }}", "the input has no key 'missing'"),
        ("{{ nope }}", "'nope' is undefined"),
        ("id-{{ input.missing }}", "the input has no key 'missing'"),
        ("{{ [input.missing] }}", "the input has no key 'missing'"),
        ("{{ {'k': input.missing} }}", "the input has no key 'missing'"),
        ("{{ input.n + 'x' }}", "TypeError"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ input.get }}", "not JSON data"),
        ("{{ cycler(1, 2) }}", "not JSON data"),
        ("{{ input.n", "expected 'end of print statement'"),
        ("{% include 'other.txt' %}", "no loader"),
    ],
)
def test_errors_are_template_errors_naming_the_template(source: str, reason: str) -> None:
    error = template_error(source)
    assert error.message.startswith(f"{source}: ")
    assert reason in error.message
    assert error.detail == {"template": source}


def test_long_templates_are_shortened_in_messages() -> None:
    source = "{{ nope }}" + "x" * 1000
    error = template_error(source)
    assert len(error.message) < 300 and "'nope' is undefined" in error.message


# -- the sandbox -----------------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ input.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ input._private }}",
    "{{ input['__class__'] }}",
    "{{ input | attr('__class__') }}",
    "{{ '{0.__class__}'.format(input) }}",
    "{{ range(10**9) }}",
    "{{ input.items.append(1) }}",
    "{{ input.update({'n': 1}) }}",
    "{% for x in range(10**9) %}{% endfor %}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_fail_with_template_error(source: str) -> None:
    template_error(source)
    assert SCOPE["input"]["n"] == 3 and len(SCOPE["input"]["items"]) == 2


# Objects a template can reach. (Not the `dict` type itself: `dict['_x']` is a class
# subscription giving the harmless text "dict['_x']", not an attribute.)
ROOTS = ["''", "0", "[]", "{}", "input", "steps", "run", "input.items", "cycler", "joiner"]
ROOTS += ["namespace", "lipsum", "range", "dict(a=1)", "input.get", "(1).real", "'x'.upper"]
DUNDERS = ["__class__", "__mro__", "__subclasses__", "__globals__", "__init__", "__dict__"]
DUNDERS += ["__builtins__", "__code__", "__func__", "__self__", "__module__", "_private", "__"]
UNDERSCORE_NAMES = st.one_of(st.sampled_from(DUNDERS), st.from_regex(r"\A_[A-Za-z0-9_]{0,12}\Z"))
STYLES = st.sampled_from(["dot", "item", "attr"])


@settings(max_examples=300, deadline=None)
@given(
    root=st.sampled_from(ROOTS),
    chain=st.lists(st.tuples(UNDERSCORE_NAMES, STYLES), min_size=1, max_size=4),
)
def test_attribute_chains_starting_with_underscore_never_succeed(
    root: str, chain: list[tuple[str, str]]
) -> None:
    expr = root
    for name, style in chain:
        if style == "dot":
            expr += f".{name}"
        elif style == "item":
            expr = f"{expr}['{name}']"
        else:
            expr = f"({expr} | attr('{name}'))"
    for source in (f"{{{{ {expr} }}}}", f"x{{{{ {expr} }}}}"):
        with pytest.raises(StepError) as info:
            TemplateEngine().render(source, SCOPE)
        assert info.value.code == "TEMPLATE_ERROR"


# -- secrets ---------------------------------------------------------------------------------


def test_secrets_are_in_scope_by_default_and_rendered_where_asked() -> None:
    engine = TemplateEngine({"API_TOKEN": "tok_123"})
    assert engine.render("Bearer {{ secrets.API_TOKEN }}", SCOPE) == "Bearer tok_123"
    assert engine.render("{{ secrets.API_TOKEN }}", {**SCOPE, "secrets": {"API_TOKEN": "x"}}) == "x"


def test_redact_masks_every_secret_in_values_never_in_keys() -> None:
    engine = TemplateEngine({"A": "sk_live_42", "B": "pass", "EMPTY": ""})
    value = {
        "token": "sk_live_42",
        "header": "Bearer sk_live_42; again sk_live_42",
        "list": [("pass", 1), {"nested": "xpassx"}],
        "password": "kept: a key is structure, not data",
        "n": 42,
        "none": None,
    }
    assert engine.redact(value) == {
        "token": "***",
        "header": "Bearer ***; again ***",
        "list": [["***", 1], {"nested": "x***x"}],
        "password": "kept: a key is structure, not data",
        "n": 42,
        "none": None,
    }
    assert engine.redact_text("no secrets here") == "no secrets here"


def test_redaction_prefers_the_longest_secret_and_its_json_spelling() -> None:
    redactor = Redactor(["abcd", "abcdef", 'quo"te\\'])
    assert redactor.redact_text("xabcdefx abcd") == "x***x ***"
    assert redactor.redact_text('{"v": "quo\\"te\\\\"}') == '{"v": "***"}'


def test_redaction_masks_url_encoded_spellings() -> None:
    secret = 'open sesame "42"/+é'
    redactor = Redactor([secret])
    for spelled in (
        "open%20sesame%20%2242%22%2F%2B%C3%A9",  # quote(safe="")
        "open%20sesame%20%2242%22/%2B%C3%A9",  # quote()
        "open+sesame+%2242%22%2F%2B%C3%A9",  # quote_plus, a form body
        "open%20sesame%20%2242%22/+%C3%A9",  # httpx's path and query encoding
    ):
        assert redactor.redact_text(f"GET /x/{spelled}?a=1") == "GET /x/***?a=1", spelled


def test_values_derived_from_a_secret_are_secret_as_a_whole() -> None:
    engine = TemplateEngine({"KEY": "hunter2-abc"})
    derived = {
        "upper": "{{ secrets.KEY | upper }}",
        "reversed": "{{ secrets.KEY[::-1] }}",
        "joined": "{{ secrets.KEY | list | join('-') }}",
        "text": "Basic {{ secrets.KEY | title }}!",
        "native": "{{ [secrets.KEY | replace('-', '_')] }}",
    }
    out = engine.render(derived, SCOPE)
    assert out["upper"] == "HUNTER2-ABC" and out["joined"].startswith("h-u-n")
    leaked = json.dumps(out)
    assert engine.redact(out) == {
        "upper": "***",
        "reversed": "***",
        "joined": "***",
        "text": "***",
        "native": ["***"],
    }
    assert "HUNTER" not in engine.redact_text(f"error body: {leaked}")
    # An action spec reading `args` that carry a secret-derived value makes a secret too.
    args = {"token": out["upper"]}
    url = engine.render_text(
        "https://h/{{ args.token | lower | replace('-', '') }}", {"args": args}
    )
    assert engine.redact_text(url) == "***"


def test_derived_values_are_registered_only_from_templates_that_read_secrets() -> None:
    engine = TemplateEngine({"KEY": "hunter2-abc"})
    assert engine.render("{{ input.word | upper }}", {"input": {"word": "echo"}}) == "ECHO"
    engine.render("{{ secrets.KEY[:2] }}", SCOPE)  # shorter than the minimum: not registered
    assert engine.redact({"echo": "ECHO hu"}) == {"echo": "ECHO hu"}
    assert not TemplateEngine().tainting


def test_without_secrets_redact_returns_the_value_itself() -> None:
    value = {"a": ["b"]}
    assert TemplateEngine().redact(value) is value
    assert not Redactor([""])


def test_template_errors_never_show_a_secret() -> None:
    engine = TemplateEngine({"KEY": "hunter2"})
    error = template_error("{{ input[secrets.KEY] }}", engine)
    assert "hunter2" not in error.message and "***" in error.message
    error = template_error("{{ secrets.KEY ~ input.missing }}", engine)
    assert "hunter2" not in error.message
    error = template_error("{{ steps[secrets.KEY].result }}", engine)
    assert "hunter2" not in str(error.to_dict())


# -- speed -----------------------------------------------------------------------------------


def test_cached_single_expression_renders_in_microseconds() -> None:
    engine = TemplateEngine()
    engine.render("{{ steps.charge.result.id }}", SCOPE)  # compile once
    n = 5000
    started = time.perf_counter()
    for _ in range(n):
        engine.render("{{ steps.charge.result.id }}", SCOPE)
    per_call = (time.perf_counter() - started) / n
    # A few µs on a laptop; the bound is loose so a busy CI machine does not flake.
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per render"


# Templates of literal text and dotted names take a fast path (dict lookups); it must give what
# Jinja gives for every scope, or hand the template to Jinja. Compared here against the same
# template with the fast path taken away.
SIMPLE = [
    "k-{{ run.id }}-{{ input.order.id }}",
    "{{ input.order.id }}",
    "{{ input.order }}",
    "{{ input.items }}",
    "{{ input.none }}-{{ input.flag }}-{{ input.n }}-{{ input.x }}",
    "  {{ run.id }}  ",
    "{{- input.n -}} / {{ input.missing }}",
    "{{ input.order.id.deeper }}",
    "{{ nobody }}",
    "{{ secrets.token }}",
    "{{ input.list }}",
]
SCOPES = [
    {
        "run": {"id": "r1"},
        "input": {
            "order": {"id": 7},
            "items": 3,
            "none": None,
            "flag": True,
            "n": 1.5,
            "x": "é",
            "list": [1, 2],
        },
    },
    {"run": {"id": "r2"}, "input": {"order": "not a dict", "items": {"a": 1}}},
    {"run": {"id": "r3"}, "input": {}},
]


def _outcomes(engine: TemplateEngine, source: str, scope: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for render in (engine.render_text, engine.render):
        try:
            out.append(("ok", render(source, scope)))
        except StepError as e:
            out.append(("error", e.code, e.message))
    return out


@pytest.mark.parametrize("source", SIMPLE)
def test_the_fast_path_for_dotted_names_gives_what_jinja_gives(source: str) -> None:
    from sagac.runtime import templates

    engine = TemplateEngine({"token": "s3cret"})
    compiled = templates._compiled(source)
    assert compiled is not None and compiled.simple is not None, "expected the fast path"
    for scope in SCOPES:
        fast = _outcomes(engine, source, scope)
        saved, compiled.simple = compiled.simple, None
        try:
            slow = _outcomes(engine, source, scope)
        finally:
            compiled.simple = saved
        assert fast == slow, (source, scope)


@pytest.mark.parametrize(
    "source",
    ["{{ input.a | upper }}", "{{ input['a'] }}", "{{ input.a + 1 }}", "{% if x %}y{% endif %}"],
)
def test_templates_with_more_than_names_have_no_fast_path(source: str) -> None:
    from sagac.runtime import templates

    compiled = templates._compiled(source)
    assert compiled is not None and compiled.simple is None


def test_a_literal_fallback_of_a_secret_template_is_not_a_secret() -> None:
    """`default('none')` renders text the author wrote: registering it would mask every `none`
    of the run. What the secret itself made is still registered."""
    engine = TemplateEngine({"K": "s3cret-value"})
    assert engine.render("{{ secrets.MISSING | default('none') }}", {}) == "none"
    assert engine.render("Bearer {{ secrets.K | upper }}", {}) == "Bearer S3CRET-VALUE"
    assert engine.redactor.redact_text("none and Bearer S3CRET-VALUE") == "none and ***"
