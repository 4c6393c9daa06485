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
        # A compensation declares its own domain codes (it does not inherit the step's).
        (
            "- {id: a, action: stub, compensate: {action: stub, errors: [X], retry: {on: [X]}}}",
            [],
        ),
        (
            "- {id: a, action: stub, compensate: {action: stub, errors: [X], retry: {on: [Y]}}}",
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


def test_compensation_errors_are_in_the_ir_and_the_hint() -> None:
    text = HEAD + _steps(
        "- {id: a, action: stub, compensate: {action: stub, errors: [HELD], retry: {on: [HELD]}}}\n"
        "- {id: b, action: stub, errors: [HELD], compensate: {action: stub, retry: {on: [HELD]}}}"
    )
    c = compile_text(text + USE_ALL)
    assert [d.code for d in c.diagnostics] == ["E020"]
    assert "`errors:` of the `compensate` of 'b'" in (c.diagnostics[0].hint or "")
    assert c.saga is not None
    step = c.saga.steps[0]
    assert step.kind == "task" and step.compensate is not None
    assert step.compensate.errors == ("HELD",)


@pytest.mark.parametrize(
    ("retry", "attempts"),
    [
        ("{max_attempts: 3}", 3),
        # Each policy counts its own retries (runtime/retry.py): 1 + 6 + 3 attempts in all.
        ("[{on: [HTTP_429], max_attempts: 7}, {max_attempts: 4}]", 10),
        # A policy whose codes are all taken by an earlier one never applies.
        ("[{on: [TIMEOUT], max_attempts: 5}, {on: [TIMEOUT], max_attempts: 9}]", 5),
        ("[{on: [TIMEOUT], max_attempts: 1}, {on: [UNAVAILABLE], max_attempts: 2}]", 2),
    ],
)
def test_w101_counts_the_attempts_of_a_retry_list(retry: str, attempts: int) -> None:
    c = compile_text(HEAD + _steps(f"- {{id: a, action: create, retry: {retry}}}") + USE_ALL)
    w101 = [d for d in c.diagnostics if d.code == "W101"]
    assert len(w101) == 1
    assert f"(up to {attempts} attempts)" in w101[0].message


@pytest.mark.parametrize(
    ("action", "codes"),
    [
        ('{command: ["./bin/x", "{{ args.mode }}", "{{ input.file }}"]}', []),
        ('{command: ["{{ args.prog }}", "--x"]}', ["E025"]),
        ('{command: ["{{ env.SHOP_URL }}"]}', ["E025"]),  # the executable is always literal
        ('{http: {url: "https://shop.test/items/{{ args.id }}?q={{ input.q }}"}}', []),
        ('{http: {url: "http://127.0.0.1:{{ args.port }}/x"}}', []),  # the port may vary
        ('{http: {url: "{{ env.SHOP_URL }}/items"}}', []),  # the operator's choice
        ('{http: {url: "https://user:{{ secrets.API_TOKEN }}@shop.test/"}}', []),
        ('{http: {url: "https://{{ input.host }}/x"}}', ["E025"]),
        ('{http: {url: "{{ args.scheme }}://shop.test/x"}}', ["E025"]),
        ('{http: {url: "https://shop.{{ args.tld }}/x"}}', ["E025"]),
        # A "password" followed by `@` can move the host: https://evil.test/?@shop.test/
        ('{http: {url: "https://u:{{ args.pw }}@shop.test/"}}', ["E025"]),
        # Whatever follows a templated base before a literal `/` still extends the host.
        ('{http: {url: "{{ env.SHOP_URL }}{{ args.rest }}"}}', ["E025"]),
    ],
)
def test_input_never_chooses_the_executable_or_the_host(action: str, codes: list[str]) -> None:
    assert _codes(f"- {{id: a, action: {action}, with: {{id: 1}}}}") == codes


def test_destinations_are_checked_in_every_action_spec() -> None:
    text = HEAD.replace(
        "  stub: {mock: {result: {id: 1}}}\n",
        '  stub: {mock: {result: {id: 1}}}\n  pick: {command: ["{{ args.p }}"]}\n',
    )
    steps = """\
    - {id: a, action: pick}
    - id: b
      action: stub
      compensate: {action: {http: {url: "http://{{ result.host }}/undo"}}, retry: {max_attempts: 1}}
    - foreach: {id: c, items: "{{ input.xs }}", as: x, action: {command: ["{{ x }}"]}}
    """
    tail = """\
    on_failure:
      - {id: d, action: {http: {method: GET, url: "{{ failure.message }}"}}}
    """
    source = text + _steps(steps) + USE_ALL + textwrap.dedent(tail)
    c = compile_text(source)
    lines = source.splitlines()
    found = [(d.code, lines[d.line - 1].strip()[:14]) for d in c.diagnostics]
    assert found == [
        ("E025", "pick: {command"),  # a named action
        ("E025", "compensate: {a"),  # an inline compensation
        ("E025", "- foreach: {id"),  # a foreach
        ("E025", "- {id: d, acti"),  # an on_failure node
    ]


WHEN = """\
- {id: a, action: stub, when: "{{ input.go }}"}
- parallel:
    id: g
    when: "{{ input.g }}"
    branches:
      - [{id: g1, action: stub}, {id: g2, action: stub, with: {x: "{{ steps.g1.result.id }}"}}]
"""


@pytest.mark.parametrize(
    ("reader", "codes"),
    [
        ('with: {x: "{{ steps.a.result.id }}"}', ["E017"]),
        ('with: {x: "{{ steps.a.result[0] }}"}', ["E017"]),
        ('with: {x: "{{ steps.g1.result.id }}"}', ["E017"]),  # inside a group with `when`
        ('with: {x: "{{ steps.g.result[0].id }}"}', ["E017"]),
        ('with: {x: "{{ steps.a.result.id > 1 }}"}', ["E017"]),
        # Guards: a status test in the template, `| default`, or the reader's own `when`.
        ("with: {x: \"{{ steps.a.result.id if steps.a.status == 'completed' else 0 }}\"}", []),
        ('with: {x: "{{ steps.a.result.id | default(0) }}"}', []),
        (
            'when: "{{ steps.a.status == \'completed\' }}"\n  with: {x: "{{ steps.a.result.id }}"}',
            [],
        ),
        # `default` guards one field below `result`: deeper, the missing field itself fails.
        ('with: {x: "{{ steps.a.result.x.y | default(0) }}"}', ["E017"]),
        # The whole result (null when skipped) and the status are always readable.
        ('with: {x: "{{ steps.a.result }}", y: "{{ steps.a.status }}"}', []),
    ],
)
def test_reading_a_step_that_may_have_been_skipped(reader: str, codes: list[str]) -> None:
    assert _codes(WHEN + f"- id: r\n  action: stub\n  {reader}\n") == codes


def test_skipped_reads_in_output_and_named_actions() -> None:
    follow = '  follow: {http: {url: "https://x.test/{{ steps.a.result.id }}"}}\n'
    text = HEAD.replace("steps:\n", follow + "steps:\n")
    steps = "- {id: a, action: stub, when: '{{ input.go }}'}\n- {id: b, action: follow}\n"
    tail = 'output: {id: "{{ steps.a.result.id }}", ok: "{{ steps.a.result.id | default(0) }}"}\n'
    diags = compile_text(text + _steps(steps) + USE_ALL + tail).diagnostics
    assert [d.code for d in diags] == ["E017", "E017"]
    assert "before 'b' runs" in diags[0].message
    assert "when the saga succeeds" in diags[1].message
    assert "steps.a.status == 'completed'" in (diags[1].hint or "")


def test_did_you_mean_for_unknown_step_ids_is_bounded_per_saga() -> None:
    """Each guess compares against every node id: after GUESSES_PER_SAGA of them the hint is
    left out, so a huge saga of unknown reads is checked in linear time."""
    from sagac.compiler.check_templates import GUESSES_PER_SAGA

    n = GUESSES_PER_SAGA + 5
    lines = ["saga: many", "steps:"]
    for i in range(n):
        read = "{{ steps.stap_" + str(i) + ".status }}"  # a typo of step_<i>: a close match
        lines.append(f"  - {{id: step_{i}, action: {{mock: {{}}}}, with: {{x: '{read}'}}}}")
    diags = [d for d in compile_text("\n".join(lines) + "\n").diagnostics if d.code == "E022"]
    assert len(diags) == n
    hinted = [d for d in diags if d.hint and "did you mean" in d.hint]
    assert len(hinted) == GUESSES_PER_SAGA
    assert all(d.hint is None for d in diags[GUESSES_PER_SAGA:])
