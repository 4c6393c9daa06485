"""`defaults.compensate`: how it layers onto each compensation, and what the checks then see.

A compensation's own setting wins, then `defaults.compensate`, then (timeout and retry only)
`defaults.timeout` and `defaults.retry`, so a saga without `defaults.compensate` lowers as before.
"""

from __future__ import annotations

import textwrap

import pytest
from sagac.compiler import ir
from sagac.compiler.pipeline import compile_text

HEAD = """\
saga: s
actions:
  stub: {mock: {result: {id: 1}}}
"""


def _compile(defaults: str, compensate: str) -> tuple[ir.Compensation, list[str]]:
    text = HEAD + textwrap.dedent(defaults) + "steps:\n"
    text += f"  - {{id: a, action: stub, compensate: {{action: stub{compensate}}}}}\n"
    c = compile_text(text)
    assert c.saga is not None, c.diagnostics
    step = c.saga.steps[0]
    assert isinstance(step, ir.TaskStep) and step.compensate is not None
    return step.compensate, [d.code for d in c.diagnostics]


STEP_DEFAULTS = "  timeout: 20s\n  retry: {max_attempts: 3}\n"
COMP_DEFAULTS = (
    "  compensate:\n"
    "    timeout: 45s\n"
    "    retry: {max_attempts: 10}\n"
    "    errors: [NOT_YET]\n"
    "    on: attempted\n"
)
STEPS_AND = "defaults:\n" + STEP_DEFAULTS


@pytest.mark.parametrize(
    ("defaults", "own", "timeout", "attempts", "errors", "on"),
    [
        # No defaults at all: nothing is inherited.
        ("", "", None, (), (), "completed"),
        # Only the step defaults: a compensation inherits them, as before `defaults.compensate`.
        ("defaults:\n" + STEP_DEFAULTS, "", 20.0, (3,), (), "completed"),
        # `defaults.compensate` wins over the step defaults.
        ("defaults:\n" + STEP_DEFAULTS + COMP_DEFAULTS, "", 45.0, (10,), ("NOT_YET",), "attempted"),
        ("defaults:\n" + COMP_DEFAULTS, "", 45.0, (10,), ("NOT_YET",), "attempted"),
        # A compensation's own settings win over both.
        (
            "defaults:\n" + STEP_DEFAULTS + COMP_DEFAULTS,
            ", timeout: 5s, retry: {max_attempts: 2}, errors: [GONE], on: completed",
            5.0,
            (2,),
            ("GONE",),
            "completed",
        ),
        # One key of `defaults.compensate` leaves the others to the step defaults.
        (STEPS_AND + "  compensate: {timeout: 1m}\n", "", 60.0, (3,), (), "completed"),
        (STEPS_AND + "  compensate: {retry: {max_attempts: 7}}\n", "", 20.0, (7,), (), "completed"),
        # An own empty `errors` replaces the default list: keys replace, never merge.
        ("defaults:\n" + COMP_DEFAULTS, ", errors: []", 45.0, (10,), (), "attempted"),
    ],
)
def test_layering(
    defaults: str,
    own: str,
    timeout: float | None,
    attempts: tuple[int, ...],
    errors: tuple[str, ...],
    on: str,
) -> None:
    comp, _ = _compile(defaults, own)
    assert comp.timeout == timeout
    assert tuple(p.max_attempts for p in comp.retry) == attempts
    assert comp.retry_declared == bool(attempts)
    assert comp.errors == errors
    assert comp.on == on


def test_the_step_itself_keeps_the_step_defaults() -> None:
    c = compile_text(
        HEAD
        + "defaults:\n"
        + STEP_DEFAULTS
        + COMP_DEFAULTS
        + "steps:\n  - {id: a, action: stub, compensate: {action: stub}}\n"
    )
    assert c.saga is not None
    step = c.saga.steps[0]
    assert isinstance(step, ir.TaskStep)
    assert step.timeout == 20.0 and [p.max_attempts for p in step.retry] == [3]
    assert step.errors == ()
    assert c.saga.defaults.compensate.on == "attempted"


def test_a_defaulted_retry_silences_w104() -> None:
    assert "W104" in _compile("", "")[1]
    assert "W104" not in _compile("defaults:\n  compensate: {retry: {max_attempts: 5}}\n", "")[1]


@pytest.mark.parametrize(
    ("defaults", "codes"),
    [
        # Without the code listed anywhere, a compensation's `retry.on` naming it is a typo.
        ("", ["E020"]),
        # Listed in `defaults.compensate.errors`, the compensation may raise it.
        ("defaults:\n  compensate: {errors: [NOT_YET]}\n", []),
        # The step defaults have no `errors`; a step's own `errors` never reach its undo.
        ("defaults:\n  retry: {max_attempts: 2}\n", ["E020"]),
    ],
)
def test_retry_codes_see_the_defaulted_errors(defaults: str, codes: list[str]) -> None:
    _, found = _compile(defaults, ", retry: {max_attempts: 3, on: [NOT_YET]}")
    assert found == codes


def test_policies_of_defaults_compensate_are_not_checked_per_step() -> None:
    # As for `defaults.retry`: a default policy is written for every compensation.
    _, found = _compile("defaults:\n  compensate: {retry: {max_attempts: 3, on: [NOT_YET]}}\n", "")
    assert found == []


def test_an_unknown_key_is_named_with_a_suggestion() -> None:
    text = HEAD + "defaults:\n  compensate:\n    retries: {max_attempts: 3}\nsteps:\n"
    text += "  - {id: a, action: stub}\n"
    [d] = compile_text(text).diagnostics
    assert (d.code, d.line, d.column) == ("E011", 6, 5)
    assert d.message == "unknown key 'retries' in defaults.compensate"
    assert d.hint == "did you mean `retry`?"


def test_a_bad_on_value_names_the_choices() -> None:
    text = HEAD + "defaults:\n  compensate: {on: always}\nsteps:\n  - {id: a, action: stub}\n"
    [d] = compile_text(text).diagnostics
    assert d.code == "E010" and d.line == 5
    assert "defaults.compensate.on: 'always' is not one of: completed, attempted" in d.message
