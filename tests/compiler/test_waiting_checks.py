"""Checks for `sleep`, `wait`, task-step callbacks, `switch` and `call` (docs/language.md,
"Waiting, calling and branching"): E030, W107, E023 on a payload schema, what templates may
read around a switch and a callback (E017, E022), W102 and the error codes of the new kinds.

Each case is a small saga and the exact codes it must produce; a saga using every new kind
correctly must produce none.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sagac.compiler import ir
from sagac.compiler.diagnostics import Diagnostic
from sagac.compiler.durations import parse_time
from sagac.compiler.errorcodes import node_codes
from sagac.compiler.graph import branch_key
from sagac.compiler.pipeline import Compilation, compile_file, compile_text

HEAD = """\
saga: s
input: {type: object}
actions:
  start_payment: {mock: {result: {payment_id: p1}}}
  notify: {http: {method: GET, url: "https://example.test/n?t={{ callback.token }}"}}
steps:
"""


def _compile(steps: str, tail: str = "") -> Compilation:
    body = textwrap.indent(textwrap.dedent(steps).rstrip("\n") + "\n", "  ")
    uses = "  - {id: use_start, action: start_payment}\n" if "start_payment" not in body else ""
    return compile_text(HEAD + body + uses + textwrap.dedent(tail), resolver=_any_child)


def _any_child(name: str) -> str:
    """Every called file is one small valid saga (the calls' own checks are test_calls.py's)."""
    return "saga: child\nsteps: [{id: s, action: {mock: {}}}]\n"


def _diags(steps: str, tail: str = "") -> list[Diagnostic]:
    # `notify` is used only by the cases about named actions: W105 is not what is tested here.
    return [d for d in _compile(steps, tail).diagnostics if d.code != "W105"]


def _codes(steps: str, tail: str = "") -> list[str]:
    return [d.code for d in _diags(steps, tail)]


EVERY_KIND = """\
saga: checkout
input: {type: object, properties: {ship_at: {type: string}, express: {type: boolean}}}
actions:
  start_payment:
    http: {url: "https://pay.example/start", headers: {X-Callback: "{{ callback.token }}"}}
steps:
  - id: reserve
    action: {mock: {result: {id: r1}}}
  - sleep: {id: hold, for: 15m}
  - sleep: {id: fixed_day, until: "2026-12-24T09:00:00+01:00"}
  - sleep: {id: ship_day, until: "{{ input.ship_at }}"}
  - wait:
      id: payment_confirmed
      schema: {type: object, required: [payment_id]}
      timeout: 24h
      on_timeout: continue
  - id: charge_card
    action: start_payment
    with: {amount: 10, token: "{{ callback.token }}"}
    callback: {timeout: 1h}
    retry: {max_attempts: 3, on: [CALLBACK_TIMEOUT, UNAVAILABLE]}
    idempotency_key: "charge-{{ run.id }}"
    compensate:
      action: {mock: {}}
      with: {payment_id: "{{ result.payment_id }}"}
      retry: {max_attempts: 5}
  - id: confirm_inline
    action: {command: ["./bin/confirm", "--token", "{{ callback.token }}"]}
    callback: {timeout: 30m}
    idempotency_key: "confirm-{{ run.id }}"
  - switch:
      id: route
      cases:
        - when: "{{ steps.payment_confirmed.result is none or input.express }}"
          steps:
            - {id: book_courier, action: {mock: {result: {tracking: c1}}}}
            - id: label_courier
              action: {mock: {}}
              with: {tracking: "{{ steps.book_courier.result.tracking }}"}
        - when: "{{ steps.reserve.result.id == 'r2' }}"
          steps:
            - {id: weigh, action: {mock: {result: {kg: 40}}}, after: []}
            - {id: book_freight, action: {mock: {}}, after: [weigh]}
      default:
        - {id: book_post, action: {mock: {result: {tracking: p1}}}}
  - call:
      id: reserve_stock
      saga: child.yaml
      with: {route: "{{ steps.route.case }}", tracking: "{{ steps.route.result }}"}
  - id: receipt
    action: {mock: {}}
    with: {case: "{{ steps.route.case }}", stock: "{{ steps.reserve_stock.result }}"}
output:
  route: "{{ steps.route.case }}"
  payment: "{{ steps.charge_card.result.payment_id }}"
"""

CHILD = """\
saga: child
input: {type: object}
steps:
  - {id: take, action: {mock: {result: {ok: true}}}}
output: "{{ steps.take.result }}"
"""


def test_a_saga_using_every_new_kind_is_clean(tmp_path: Path) -> None:
    (tmp_path / "checkout.yaml").write_text(EVERY_KIND, "utf-8")
    (tmp_path / "child.yaml").write_text(CHILD, "utf-8")
    (tmp_path / "bin").mkdir()
    c = compile_file(tmp_path / "checkout.yaml", imports=True)
    assert c.diagnostics == []
    assert c.plan is not None


# --- W107 -------------------------------------------------------------------------------------


def test_a_wait_without_timeout_is_w107_at_the_node() -> None:
    steps = """\
    - {id: a, action: {mock: {}}}
    - wait: {id: paid, signal: payment}
    - wait: {id: shipped, timeout: 1h}
    """
    [d] = _diags(steps)
    assert (d.code, d.line, d.column) == ("W107", 8, 5)
    assert "wait 'paid'" in d.message and "'payment'" in d.message
    assert d.hint is not None and "timeout" in d.hint


def test_a_callback_without_timeout_is_w107_at_its_key() -> None:
    steps = """\
    - id: charge
      action: start_payment
      with: {token: "{{ callback.token }}"}
      callback: {}
    - id: charge_too
      action: start_payment
      callback: {timeout: 1h}
    """
    [d] = _diags(steps)
    assert (d.code, d.line, d.column) == ("W107", 10, 5)
    assert "`callback` of 'charge'" in d.message


# --- E030 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("until", "codes"),
    [
        ("2026-12-24T09:00:00+01:00", []),
        ("2026-12-24T08:00:00Z", []),
        ("2026-12-24t08:00:00.250z", []),
        ("2026-12-24T08:00:00-05:30", []),
        ("{{ input.at }}", []),
        ("{% if input.late %}2027-01-01T00:00:00Z{% else %}{{ input.at }}{% endif %}", []),
        ("2026-12-24T09:00:00", ["E030"]),  # no zone
        ("2026-12-24", ["E030"]),  # a date, not a time
        ("2026-12-24 09:00:00Z", ["E030"]),  # RFC 3339 separates with T
        ("2026-02-30T09:00:00Z", ["E030"]),  # no such day
        ("2026-12-24T24:00:00Z", ["E030"]),
        ("tomorrow", ["E030"]),
        ("1766563200", ["E030"]),
    ],
)
def test_a_literal_until_is_an_rfc3339_time_with_a_zone(until: str, codes: list[str]) -> None:
    assert _codes(f"- sleep: {{id: nap, until: {until!r}}}") == codes


def test_e030_points_at_until_and_says_what_is_wrong() -> None:
    [d] = _diags("- sleep:\n    id: nap\n    until: '2026-12-24T09:00:00'\n")
    assert (d.code, d.line, d.column) == ("E030", 9, 14)
    assert "has no zone" in d.message and "'nap'" in d.message
    [d] = _diags("- sleep: {id: nap, until: 'next friday'}")
    assert "is not an RFC 3339 time" in d.message


def test_parse_time_gives_an_aware_datetime() -> None:
    assert parse_time("2026-12-24T09:00:00+01:00") == datetime(2026, 12, 24, 8, tzinfo=UTC)
    at = parse_time("2026-12-24T09:00:00.5-02:00")
    assert at.utcoffset() == timedelta(hours=-2) and at.microsecond == 500000
    with pytest.raises(ValueError, match="has no zone"):
        parse_time("2026-12-24T09:00:00")


# --- E023 on a wait's schema ------------------------------------------------------------------


def test_an_invalid_payload_schema_is_e023_naming_schema() -> None:
    steps = """\
    - wait:
        id: paid
        timeout: 1h
        schema: {type: object, required: yes, properties: {n: {type: money}}}
    """
    diags = _diags(steps)
    assert [d.code for d in diags] == ["E023", "E023"]
    assert all("of wait 'paid'" in d.message for d in diags)
    assert {d.message.split("`")[1] for d in diags} == {
        "schema.required",
        "schema.properties.n.type",
    }
    assert all(d.hint is not None and "payload" in d.hint for d in diags)
    assert _codes("- wait: {id: paid, timeout: 1h, schema: {type: object, required: [n]}}") == []


# --- callback.token ---------------------------------------------------------------------------


TOKEN = '"{{ callback.token }}"'


def _step(*lines: str, callback: bool = True) -> str:
    """A task step `a` using `start_payment`, with `callback: {timeout: 1h}` and `lines`."""
    more = ["callback: {timeout: 1h}"] if callback else []
    body = "".join(f"  {line}\n" for line in [*more, *lines])
    return "- id: a\n  action: start_payment\n" + body.replace("TOKEN", TOKEN)


@pytest.mark.parametrize(
    ("steps", "codes"),
    [
        # In scope: the `with` and the inline action of a callback step, and a named action
        # whose every use is a callback step's action.
        (_step("with: {t: TOKEN}"), []),
        (
            "- id: a\n  action: {command: [./x, TOKEN]}\n  callback: {timeout: 1h}\n".replace(
                "TOKEN", TOKEN
            ),
            [],
        ),
        ("- {id: a, action: notify, callback: {timeout: 1h}}", []),
        # Elsewhere: E022.
        (_step("with: {t: TOKEN}", callback=False), ["E022"]),
        ("- {id: a, action: notify}", ["E022"]),
        (
            "- {id: a, action: notify, callback: {timeout: 1h}}\n"
            "- {id: b, action: start_payment, compensate: {action: notify, retry: {}}}",
            ["E022"],
        ),
        (_step('idempotency_key: "k-{{ callback.token }}"'), ["E022"]),
        (_step("when: TOKEN"), ["E022"]),
        (_step("simulate: {t: TOKEN}"), ["E022"]),
        (_step("compensate: {action: start_payment, with: {t: TOKEN}, retry: {}}"), ["E022"]),
        ("- call: {id: c, saga: x.yaml, with: {t: '{{ callback.token }}'}}", ["E022"]),
        ("- fail: {id: f, code: X, message: '{{ callback.token }}'}", ["E022"]),
        (_step('with: {t: "{{ callback.id }}"}'), ["E022"]),
    ],
)
def test_callback_token_is_in_scope_only_in_a_callback_steps_with_and_action(
    steps: str, codes: list[str]
) -> None:
    assert _codes(steps) == codes


def test_callback_token_e022_hints_say_why() -> None:
    def hint(steps: str) -> str:
        [d] = _diags(steps)
        assert d.code == "E022" and "`callback" in d.message
        return d.hint or ""

    assert "add e.g. `callback:" in hint(_step("with: {t: TOKEN}", callback=False))
    assert "{{ run.id }}-a" in hint(_step('idempotency_key: "k{{ callback.token }}"'))
    assert "args.token" in hint("- {id: a, action: notify}")
    assert "`result`" in hint(_step("compensate: {action: notify, retry: {}}"))


def test_callback_token_is_not_in_scope_after_the_step() -> None:
    steps = _step() + "- id: b\n  action: start_payment\n  with: {t: " + TOKEN + "}\n"
    assert _codes(steps) == ["E022"]
    assert _codes(steps, "output: '{{ callback.token }}'\n") == ["E022", "E022"]


# --- switch -----------------------------------------------------------------------------------


SWITCH = """\
- {id: before, action: {mock: {result: {n: 1}}}}
- switch:
    id: route
    cases:
      - when: "{{ steps.before.result.n > 0 }}"
        steps:
          - {id: c1, action: {mock: {result: {t: 1}}}}
          - {id: c2, action: {mock: {}}, with: {v: "{{ steps.c1.result.t }}"}}
          - {id: c3, action: {mock: {}}, after: [c1], with: {v: "{{ steps.c1.result }}"}}
      - when: "{{ input.b }}"
        steps: [{id: d1, action: {mock: {}}, with: {v: "{{ steps.before.result.n }}"}}]
    default: [{id: p1, action: {mock: {}}}]
- id: after_switch
  action: {mock: {}}
  with: {r: "{{ steps.route.result }}", c: "{{ steps.route.case }}"}
"""


def test_a_switch_reads_like_branches_inside_and_by_result_and_case_after() -> None:
    assert _codes(SWITCH) == []


@pytest.mark.parametrize(
    ("old", "new", "hint"),
    [
        # After the switch: a case's steps may not have run.
        ("{{ steps.route.result }}", "{{ steps.c1.result }}", "after the switch"),
        ("{{ steps.route.case }}", "{{ steps.p1.status }}", "after the switch"),
        # Another case, or the default, never reads a case's steps.
        ("{{ steps.before.result.n }}", "{{ steps.c2.result }}", "inside a case"),
        # A case's `when` reads only what is before the switch.
        ("{{ input.b }}", "{{ steps.c1.result }}", "`when` reads only what is before"),
    ],
)
def test_steps_in_a_case_are_read_only_inside_it_after_them(old: str, new: str, hint: str) -> None:
    [d] = _diags(SWITCH.replace(old, new))
    assert d.code == "E017"
    assert "in a case of the switch 'route', and that case may not have run" in d.message
    assert d.hint is not None and hint in d.hint


def test_a_case_cannot_read_its_switch_nor_a_later_step_of_its_case() -> None:
    diags = _diags(
        SWITCH.replace("{{ steps.before.result.n }}", "{{ steps.route.result }}").replace(
            '{{ steps.c1.result.t }}"', '{{ steps.c3.result }}"'
        )
    )
    assert [d.code for d in diags] == ["E017", "E017"]
    own = _diags(SWITCH.replace("{{ input.b }}", "{{ steps.route.case }}"))
    assert [d.code for d in own] == ["E017"] and "reads its own" in own[0].message


def test_output_never_reads_inside_a_case() -> None:
    [d] = _diags(SWITCH, "output: {x: '{{ steps.d1.result }}', r: '{{ steps.route.case }}'}\n")
    assert d.code == "E017" and "`output.x`" in d.message and "may not have run" in d.message


def test_case_is_read_only_from_a_switch() -> None:
    diags = _diags(SWITCH.replace("{{ steps.route.case }}", "{{ steps.before.case }}"))
    assert [d.code for d in diags] == ["E022"]
    assert "'before' is not a switch" in diags[0].message
    diags = _diags(SWITCH.replace("{{ steps.route.case }}", "{{ steps.route.cases }}"))
    assert [d.code for d in diags] == ["E022"]
    assert "`case`" in diags[0].message and "did you mean `case`" in (diags[0].hint or "")


def test_switch_cases_are_scopes_of_their_own() -> None:
    c = _compile(SWITCH)
    assert c.graph is not None
    scopes = c.graph.scopes
    assert [scopes[branch_key("route", i)].ids for i in range(3)] == [
        ["c1", "c2", "c3"],
        ["d1"],
        ["p1"],
    ]
    assert scopes[branch_key("route", 2)].owner == "route"
    assert scopes[branch_key("route", 0)].deps["c3"] == ("c1",)
    # Only the case taken runs: what follows the switch waits for the switch alone.
    assert c.graph.ancestors("after_switch") == {"route", "before"}
    assert c.graph.ancestors("c2") == {"c1", "before"}
    # `after:` names only nodes of its own case.
    wrong = _diags(SWITCH.replace("after: [c1]", "after: [d1]"))
    assert [d.code for d in wrong] == ["E015", "E017"]


def test_a_switch_inside_a_branch_and_a_branch_inside_a_case() -> None:
    steps = """\
    - parallel:
        id: g
        branches:
          - - switch:
                id: inner
                cases:
                  - when: "{{ input.x }}"
                    steps:
                      - parallel:
                          id: deep
                          branches: [[{id: leaf, action: {mock: {}}}]]
                      - {id: uses_leaf, action: {mock: {}}, with: {v: "{{ steps.leaf.result }}"}}
            - {id: after_inner, action: {mock: {}}, with: {v: "{{ steps.leaf.result }}"}}
    """
    [d] = _diags(steps)
    assert d.code == "E017" and "switch 'inner'" in d.message and "'after_inner'" in d.message


# --- W102, W106 and error codes ---------------------------------------------------------------


def _late(steps: str) -> list[str]:
    diags = [d for d in _diags(steps) if d.code == "W102"]
    return [d.message.split("'")[1] for d in diags if not d.message.startswith("'use_")]


def test_pivots_and_the_new_kinds() -> None:
    steps = """\
    - {id: p, action: {mock: {}}, irreversible: true}
    - sleep: {id: nap, for: 1s}
    - wait: {id: forever, timeout: 1h, on_timeout: continue}
    - wait: {id: strict, timeout: 1h}
    - wait: {id: no_timeout}
    """
    assert _late(steps) == ["strict"]
    [d] = [d for d in _diags(steps) if d.code == "W102" and "'strict'" in d.message]
    assert "a wait that fails when it times out" in d.message
    assert "on_timeout: continue" in (d.hint or "")


def test_a_pivot_in_a_case_counts_after_the_switch() -> None:
    steps = """\
    - switch:
        id: route
        cases:
          - when: "{{ input.a }}"
            steps:
              - {id: p, action: {mock: {}}, irreversible: true}
              - {id: in_case, action: {mock: {}}}
          - when: "{{ input.b }}"
            steps: [{id: other_case, action: {mock: {}}}]
    - {id: next, action: {mock: {}}}
    """
    assert _late(steps) == ["in_case", "next"]


def test_a_switch_case_without_compensate_is_not_w106() -> None:
    steps = """\
    - switch:
        id: route
        cases: [{when: "{{ input.a }}", steps: [{id: a, action: {http: {url: "https://x.test"}}}]}]
        default: [{id: b, action: {command: [./book]}}]
    """
    assert _codes(steps) == []
    # The same steps in `any` branches are W106: a losing branch may have completed.
    race = "- parallel: {id: race, mode: any, branches: [[{id: a, action: {command: [./a]}}]]}"
    assert _codes(race) == ["W106"]


def _node(steps: str, node_id: str) -> ir.AnyNode:
    c = _compile(steps)
    assert c.saga is not None
    return next(n for n in c.saga.walk() if n.id == node_id)


@pytest.mark.parametrize(
    ("steps", "has"),
    [
        ("- wait: {id: n, timeout: 1h}", {"WAIT_TIMEOUT"}),
        ("- wait: {id: n, timeout: 1h, on_timeout: continue}", set()),
        ("- wait: {id: n}", set()),
        ("- sleep: {id: n, for: 1s}", set()),
        ("- {id: n, action: start_payment, callback: {timeout: 1h}}", {"CALLBACK_TIMEOUT"}),
        ("- {id: n, action: start_payment, callback: {}}", set()),
        ("- {id: n, action: start_payment}", set()),
        (
            "- switch: {id: n, cases: [{when: x, steps: [{wait: {id: w, timeout: 1s}}]}]}",
            {"WAIT_TIMEOUT"},
        ),
    ],
)
def test_node_codes_of_the_new_kinds(steps: str, has: set[str]) -> None:
    waiting = {"WAIT_TIMEOUT", "CALLBACK_TIMEOUT"}
    assert node_codes(_node(steps, "n")) & waiting == has


@pytest.mark.parametrize(
    ("steps", "codes", "hint"),
    [
        (_step("retry: {on: [CALLBACK_TIMEOUT]}"), [], ""),
        (
            "- {id: a, action: start_payment, retry: {on: [CALLBACK_TIMEOUT]}}",
            ["E020"],
            "only from task steps with `callback:`",
        ),
        (
            _step("compensate: {action: {mock: {}}, retry: {on: [CALLBACK_TIMEOUT]}}"),
            ["E020"],
            "only from task steps with `callback:`",
        ),
        (
            "- {id: a, action: start_payment, callback: {}, retry: {on: [CALLBACK_TIMEOUT]}}",
            ["W107", "E020"],
            "give the `callback:` of 'a' a `timeout`",
        ),
    ],
)
def test_retry_on_callback_timeout(steps: str, codes: list[str], hint: str) -> None:
    diags = _diags(steps)
    assert [d.code for d in diags] == codes
    if hint:
        assert hint in (next(d for d in diags if d.code == "E020").hint or "")


# --- call -------------------------------------------------------------------------------------


def test_a_calls_with_is_checked_like_a_steps() -> None:
    steps = """\
    - call:
        id: c
        saga: child.yaml
        with: {a: "{{ steps.later.result }}", b: "{{ inputs.x }}", r: "{{ result }}"}
    - {id: later, action: {mock: {}}, with: {c: "{{ steps.c.result.anything }}"}}
    """
    assert _codes(steps) == ["E017", "E022", "E018"]
