"""Semantic checks: what each template may read, retries, pivots, and the other warnings.

Each case is a small saga and the exact codes it must produce; the clean cases matter as much
as the failing ones (a check that cries wolf gets ignored).
"""

from __future__ import annotations

import textwrap

import pytest
from sagac.compiler.pipeline import compile_text

HEAD = """\
saga: s
env: [SHOP_URL]
secrets: [API_TOKEN]
actions:
  charge: {python: "shop.payments:charge"}
  refund: {python: "shop.payments:refund"}
  lookup: {http: {method: GET, url: "{{ env.SHOP_URL }}/items/{{ args.id }}"}}
  create:
    http: {url: "{{ env.SHOP_URL }}/orders", headers: {Authorization: "{{ secrets.API_TOKEN }}"}}
  run_cli: {command: ["./bin/x"]}
  stub: {mock: {result: {id: 1}}}
steps:
"""
USE_ALL = """\
  - {id: use_charge, action: charge}
  - {id: use_refund, action: refund}
  - {id: use_lookup, action: lookup, with: {id: 1}}
  - {id: use_create, action: create}
  - {id: use_cli, action: run_cli}
  - {id: use_stub, action: stub}
"""


def _steps(steps: str) -> str:
    return textwrap.indent(textwrap.dedent(steps).rstrip("\n") + "\n", "  ")


def _codes(steps: str, tail: str = "", *, use_all: bool = True) -> list[str]:
    text = HEAD + _steps(steps) + (USE_ALL if use_all else "")
    c = compile_text(text + textwrap.dedent(tail))
    return [d.code for d in c.diagnostics]


def test_the_baseline_is_clean() -> None:
    assert _codes("") == []


@pytest.mark.parametrize(
    ("steps", "codes"),
    [
        # Reading an earlier step, input, run, env and secrets that are listed: fine.
        (
            """\
            - {id: a, action: stub}
            - id: b
              action: stub
              with: {x: "{{ steps.a.result.id }}-{{ steps.a.status }}", r: "{{ run.id }}"}
              when: "{{ input.go and env.SHOP_URL and secrets.API_TOKEN }}"
            """,
            [],
        ),
        # Jinja locals, loop variables, filters, tests and globals are not reads.
        (
            """\
            - id: a
              action: stub
              with:
                x: "{% for i in input.items %}{{ i.id ~ loop.index }}{% endfor %}"
                y: "{% set n = input.n | default(3) %}{{ range(n) | list if n is number }}"
            """,
            [],
        ),
        ("- {id: a, action: stub, with: {x: '{{ stps.a }}'}}", ["E022"]),
        ("- {id: a, action: stub, with: {x: '{{ env.HOME }}'}}", ["E022"]),
        ("- {id: a, action: stub, with: {x: '{{ env.API_TOKEN }}'}}", ["E022"]),
        ("- {id: a, action: stub, with: {x: '{{ run.attempt }}'}}", ["E022"]),
        ("- {id: a, action: stub, with: {x: '{{ args.id }}'}}", ["E022"]),
        ("- {id: a, action: stub, with: {x: '{{ failure.code }}'}}", ["E022"]),
        ("- {id: a, action: stub, with: {x: '{{ report }}'}}", ["E022"]),
        (
            """\
            - {id: a, action: stub}
            - {id: b, action: stub, with: {x: "{{ steps.a.output }}"}}
            - {id: c, action: stub, with: {x: "{{ steps.ghost.result }}"}}
            """,
            ["E022", "E022"],
        ),
        ("- {id: a, action: stub, when: '{{ error }}'}", ["E018"]),
        # A step cannot read itself, nor a later step, nor one that runs at the same time.
        ("- {id: a, action: stub, with: {x: '{{ steps.a.result }}'}}", ["E017"]),
        (
            """\
            - {id: a, action: stub, with: {x: "{{ steps.b.result }}"}}
            - {id: b, action: stub}
            """,
            ["E017"],
        ),
        (
            """\
            - {id: a, action: stub}
            - {id: b, action: stub, after: [], with: {x: "{{ steps.a.result }}"}}
            - {id: c, action: stub, after: [a, b], with: {x: "{{ steps.a.result }}"}}
            """,
            ["E017"],
        ),
        # `keep` limits what can be read, through steps.X.result and through `result`.
        (
            """\
            - id: a
              action: stub
              keep: [id]
              compensate:
                action: stub
                with: {x: "{{ result.id }}", y: "{{ result.total }}", e: "{{ error }}"}
                retry: {max_attempts: 2}
            - {id: b, action: stub, with: {x: "{{ steps.a.result.id }}{{ steps.a.result.tax }}"}}
            """,
            ["E021", "E021"],
        ),
        # An idempotency key is journaled verbatim and sent elsewhere: it never reads secrets
        # (a step's, a compensation's or a foreach's key), though other fields may.
        ("- {id: a, action: stub, idempotency_key: 'k-{{ secrets.API_TOKEN }}'}", ["E024"]),
        ("- {id: a, action: stub, idempotency_key: '{{ secrets | length }}'}", ["E024"]),
        (
            """\
            - id: a
              action: stub
              compensate:
                action: stub
                retry: {max_attempts: 2}
                idempotency_key: "u-{{ secrets.API_TOKEN | upper }}"
            """,
            ["E024"],
        ),
        (
            """\
            - foreach:
                id: each
                items: "{{ input.items }}"
                as: it
                action: stub
                idempotency_key: "{% set t = secrets.API_TOKEN %}{{ t }}-{{ it.id }}"
            """,
            ["E024"],
        ),
        (
            """\
            - id: a
              action: stub
              with: {token: "{{ secrets.API_TOKEN }}"}
              idempotency_key: "k-{{ run.id }}-{{ input.id }}"
            """,
            [],
        ),
        ("- {id: a, action: stub, with: {x: '{{ input.a | nosuchfilter }}'}}", ["E016"]),
        ("- {id: a, action: stub, with: {x: \"{% include 'x.j2' %}\"}}", ["E016"]),
        ("- {id: a, action: stub, with: {x: '{{ input.a.}}'}}", ["E016"]),
    ],
)
def test_template_reads(steps: str, codes: list[str]) -> None:
    assert _codes(steps) == codes


def test_foreach_item_name_is_in_scope_only_inside_the_foreach() -> None:
    steps = """\
    - foreach:
        id: each
        items: "{{ input.users }}"
        as: user
        action: stub
        with: {id: "{{ user.id }}"}
        checkpoint: "{{ user.id }}"
        compensate: {action: stub, with: {id: "{{ user.id }}"}, retry: {max_attempts: 3}}
    - {id: after_each, action: stub, with: {x: "{{ user.id }}"}}
    """
    assert _codes(steps) == ["E022"]
    assert _codes(steps.replace('"{{ input.users }}"', '"{{ user.all }}"'))[0] == "E022"


def test_compensate_may_read_its_own_step() -> None:
    steps = """\
    - id: a
      action: stub
      compensate:
        action: stub
        with: {x: "{{ steps.a.result.id }}", f: "{{ failure.code }}"}
        retry: {max_attempts: 2}
    """
    assert _codes(steps) == []


def test_on_failure_and_output_scopes() -> None:
    steps = """\
    - {id: a, action: stub}
    - parallel:
        id: race
        mode: any
        branches:
          - [{id: fast, action: stub}]
          - [{id: slow, action: stub}]
    - {id: b, action: stub, with: {x: "{{ steps.fast.result }}"}}
    """
    tail = """\
    on_failure:
      - {id: notify, action: stub, with: {x: "{{ steps.b.result }}{{ failure.code }}{{ report }}"}}
    output:
      a: "{{ steps.a.result }}"
      race: "{{ steps.race.result }}"
      fast: "{{ steps.fast.result }}"
      notified: "{{ steps.notify.result }}"
    """
    text = HEAD + _steps(steps) + USE_ALL + textwrap.dedent(tail)
    diags = compile_text(text).diagnostics
    assert [d.code for d in diags] == ["E017", "E017", "E017"]
    assert "steps.race.result" in (diags[0].hint or "")
    assert "`output.fast`" in diags[1].message and "`output.notified`" in diags[2].message


def test_named_actions_are_checked_where_they_are_used() -> None:
    text = HEAD.replace(
        "  stub: {mock: {result: {id: 1}}}\n",
        "  stub: {mock: {result: {id: 1}}}\n"
        '  follow: {http: {method: GET, url: "x/{{ steps.use_stub.result.id }}/{{ result }}"}}\n',
    )
    steps = "  - {id: early, action: follow}\n" + USE_ALL + "  - {id: late, action: follow}\n"
    diags = compile_text(text + steps).diagnostics
    assert [d.code for d in diags] == ["E017", "E018"]
    assert "through action 'follow'" in diags[0].message and "'early'" in diags[0].message


@pytest.mark.parametrize(
    ("steps", "codes"),
    [
        ("- {id: a, action: stub, retry: {on: [TIMEOUT, UNEXPECTED]}}", []),
        ("- {id: a, action: stub, errors: [DECLINED], retry: {on: [DECLINED]}}", []),
        ("- {id: a, action: {mock: {fail: BUSY}}, retry: {on: [BUSY]}}", []),
        ("- {id: a, action: lookup, retry: {on: [HTTP_429]}}", []),
        ("- {id: a, action: run_cli, retry: {on: [COMMAND_FAILED]}, idempotency_key: k}", []),
        ("- {id: a, action: stub, retry: [{on: [TIMEOUT]}, {on: [HTTP_429]}]}", ["E020"]),
        ("- {id: a, action: stub, retry: {on: [COMMAND_FAILED]}}", ["E020"]),
        ("- {id: a, action: stub, retry: {on: [DECLINED]}}", ["E020"]),
        (
            "- {id: a, action: stub, errors: [X], compensate: {action: stub, retry: {on: [X]}}}",
            ["E020"],
        ),
    ],
)
def test_retry_codes(steps: str, codes: list[str]) -> None:
    assert _codes(steps) == codes


def test_retry_codes_from_defaults_are_not_checked() -> None:
    text = HEAD.replace(
        "steps:\n", "defaults:\n  retry: {max_attempts: 1, on: [ANYTHING]}\nsteps:\n"
    )
    assert [d.code for d in compile_text(text + USE_ALL).diagnostics] == []


@pytest.mark.parametrize(
    ("steps", "codes"),
    [
        ("- {id: a, action: charge, retry: {max_attempts: 3}}", ["W101"]),
        ("- {id: a, action: create, retry: {max_attempts: 3}}", ["W101"]),
        ("- {id: a, action: run_cli, retry: {max_attempts: 3}}", ["W101"]),
        ("- {id: a, action: charge, retry: {max_attempts: 3}, idempotency_key: k}", []),
        ("- {id: a, action: lookup, retry: {max_attempts: 3}}", []),
        ("- {id: a, action: stub, retry: {max_attempts: 3}}", []),
        ("- {id: a, action: charge, retry: {max_attempts: 1}}", []),
        (
            "- {id: a, action: stub, compensate: {action: refund, retry: {max_attempts: 4}}}",
            ["W101"],
        ),
        ("- {id: a, action: stub, compensate: {action: refund}}", ["W104"]),
        (
            "- {id: a, action: {mock: {}}, irreversible: true, compensate: {action: stub}}",
            ["E019", "W104"],
        ),
    ],
)
def test_effects_and_compensations(steps: str, codes: list[str]) -> None:
    found = [c for c in _codes(steps) if c != "W102"]  # the irreversible case: see test_pivots
    assert sorted(found) == sorted(codes)


def test_default_retry_counts_for_w101_and_w104() -> None:
    text = HEAD.replace("steps:\n", "defaults:\n  retry: {max_attempts: 2}\nsteps:\n")
    steps = "  - {id: a, action: stub, compensate: {action: stub}}\n  - {id: b, action: charge}\n"
    diags = compile_text(text + steps + USE_ALL).diagnostics
    mine = [d for d in diags if not d.message.startswith("'use_")]
    assert [d.code for d in mine] == ["W101"]
    assert mine[0].message.startswith("'b' is retried (up to 2 attempts, from `defaults`)")


@pytest.mark.parametrize(
    ("steps", "late"),
    [
        # Nothing after the pivot: fine.
        ("- {id: a, action: stub}\n- {id: p, action: stub, irreversible: true}\n", []),
        # A retried step after it is fine; one without retry, a fail node or a gate is not.
        (
            """\
            - {id: p, action: stub, irreversible: true}
            - {id: ok, action: stub, retry: {max_attempts: 3}}
            - {id: bad, action: stub}
            - {fail: {id: stop, code: STOP, when: "{{ input.stop }}"}}
            - {approval: {id: gate, approvers: [alice], timeout: 1h}}
            """,
            ["bad", "stop", "gate"],
        ),
        # Running at the same time is not "after".
        (
            "- {id: p, action: stub, irreversible: true}\n- {id: side, action: stub, after: []}\n",
            [],
        ),
        # A pivot inside an `any` branch: what follows the group is after it.
        (
            """\
            - parallel:
                id: race
                mode: any
                branches:
                  - [{id: p, action: stub, irreversible: true}]
                  - [{id: q, action: stub}]
            - {id: next, action: stub}
            """,
            ["next"],
        ),
    ],
)
def test_pivots(steps: str, late: list[str]) -> None:
    text = HEAD + _steps(steps) + USE_ALL
    diags = [d for d in compile_text(text).diagnostics if d.code == "W102"]
    # USE_ALL comes last, so every one of its steps also follows the pivot (unless retried).
    named = [d.message.split("'")[1] for d in diags if not d.message.startswith("'use_")]
    assert named == late
    assert all("'p'" in d.message for d in diags)


def test_pivot_rule_ignores_on_failure() -> None:
    pivot = "  - {id: p, action: stub, irreversible: true}\n"
    tail = "on_failure:\n  - {id: ticket, action: stub}\n"
    assert [d.code for d in compile_text(HEAD + USE_ALL + pivot + tail).diagnostics] == []


def test_approval_unused_action_and_any_branch_warnings() -> None:
    steps = """\
    - approval: {id: gate, approvers: [alice]}
    - parallel:
        id: race
        mode: any
        branches:
          - [{id: safe, action: stub}]
          - - parallel:
                id: inner
                branches: [[{id: risky, action: charge}]]
    """
    diags = compile_text(HEAD + _steps(steps) + USE_ALL.replace("use_charge", "x")).diagnostics
    assert [d.code for d in diags] == ["W103", "W106"]
    assert "'risky'" in diags[1].message
    assert _codes("- {id: a, action: stub}\n", use_all=False).count("W105") == 5


def test_input_schema_must_be_a_json_schema() -> None:
    text = HEAD.replace("steps:\n", "input: {type: object, required: yes}\nsteps:\n")
    diags = compile_text(text + USE_ALL).diagnostics
    assert [(d.code, d.line) for d in diags] == [("E023", 12)]
    good = HEAD.replace("steps:\n", "input: {type: object, required: [a]}\nsteps:\n")
    assert compile_text(good + USE_ALL).diagnostics == []
