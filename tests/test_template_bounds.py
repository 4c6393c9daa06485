"""One template cannot exhaust memory or CPU: `*` and `**`, loops, filters and methods that
build large strings, and the size of what it renders."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError
from sagac.compiler.templates import environment
from sagac.runtime.templates import TemplateEngine

from sagac.errors import StepError


@pytest.mark.parametrize(
    "source",
    ["{{ 'a' * 10**10 }}", "{{ [0] * 10**9 }}", "{{ 10**10 * 'a' }}", "{{ 2 ** 5000 }}"],
)
def test_huge_arithmetic_is_refused(source: str) -> None:
    with pytest.raises(SecurityError):
        environment().from_string(source).render()


@pytest.mark.parametrize(
    ("source", "expected"),
    [("{{ 'ab' * 3 }}", "ababab"), ("{{ 2 ** 10 }}", "1024"), ("{{ 3 * 4 }}", "12")],
)
def test_ordinary_arithmetic_still_works(source: str, expected: str) -> None:
    assert environment().from_string(source).render() == expected


# -- time and size: an operation budget, a deadline and caps inside the sandbox ---------------

NESTED_LOOPS = (
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}done"
)


@pytest.mark.parametrize(
    "source",
    [
        NESTED_LOOPS,  # no output at all: only the loops count
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% set k = j | string %}"
        "{% endfor %}{% endfor %}",
    ],
)
def test_endless_loops_run_out_of_operations(source: str) -> None:
    # Out of operations, or out of time first on a busy machine; an alarm ends the test where
    # nothing bounds the template (it would otherwise run for hours).
    def hung(signum: int, frame: object) -> None:
        raise AssertionError("the template was not stopped within 30 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        with pytest.raises(SecurityError, match=r"more than|longer than"):
            environment().from_string(source).render()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' | indent(10**9) }}",
        "{{ 'x' | indent(999999) * 1 }}{{ ('x\n' * 999) | indent(999999) }}",
        "{{ 'x' | center(10**9) }}",
        "{{ '%999999999s' | format('x') }}",
        "{{ '%*s' | format(10**9, 'x') }}",
        "{{ '%.999999999f' % 1.5 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '{:>99999999} %'.format(1) }}",
        "{{ [1, 2] | slice(10**9) | list }}",
        "{{ 'x'.ljust(10**9) }}",
        "{{ 'x'.zfill(10**9) }}",
        "{{ ('x' * 999999).replace('x', 'yy') }}",
        "{{ ('x' * 999999) | replace('x', 'yy') }}",
        "{{ ('x' * 600000) ~ ('x' * 600000) }}",
        "{{ ('x' * 600000) + ('x' * 600000) }}",
        "{{ ([('x' * 999999)] * 999) | join }}",
        "{% for i in range(1000) %}{{ 'x' * 999 }}{% endfor %}{{ 'y' * 999999 }}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s | length }}",
    ],
)
def test_templates_cannot_build_huge_values(source: str) -> None:
    with pytest.raises(SecurityError, match="more than"):
        environment().from_string(source).render()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'a\nb' | indent(2) }}", "a\n  b"),
        ("{{ 'ab' | center(6) }}", "  ab  "),
        ("{{ '%05.1f' | format(2.25) }}", "002.2"),
        ("{{ '%s-%s' % ('a', 1) }}", "a-1"),
        ("{{ '{:>4}'.format(7) }}", "   7"),
        ("{{ 'abc'.replace('b', 'xx') ~ [1, 2] | join(',') }}", "axxc1,2"),
        ("{{ 'a' + 'b' }}{{ 1 + 2 }}{{ 7 % 4 }}", "ab33"),
        (
            "{% for i in range(3) %}{% for j in range(2) %}{{ i }}{{ j }}{% endfor %}{% endfor %}",
            "000110112021",
        ),
        ("{{ 12345678 | default(0) }}{{ 12345678 | string | length }}", "123456788"),
        ("{{ '%d' % 12345678 }} {{ '%d' | format(12345678) }}", "12345678 12345678"),
        ("{{ '{} %'.format(12345678) }}", "12345678 %"),
        ("{{ range(100000) | map('string') | join | length }}", "488890"),
    ],
)
def test_ordinary_templates_still_render(source: str, expected: str) -> None:
    assert environment().from_string(source).render() == expected


def test_the_budget_is_per_render() -> None:
    template = environment().from_string(
        "{% for i in range(1000) %}{% for j in range(500) %}{% endfor %}{% endfor %}ok"
    )
    for _ in range(3):  # half the budget each: fine every time
        assert template.render() == "ok"


def test_the_runtime_reports_a_template_error() -> None:
    engine = TemplateEngine()
    for source in ("{{ 'x' | indent(10**9) }}", "x{{ 'x' | indent(10**9) }}", "x" + NESTED_LOOPS):
        with pytest.raises(StepError) as info:
            engine.render({"v": source}, {})
        assert info.value.code == "TEMPLATE_ERROR"
        assert "more than" in info.value.message or "longer than" in info.value.message


SAGA = """\
saga: busy
timeout: 5s
steps:
  - id: busy
    action: {mock: {}}
    timeout: 2s
    with: {x: "TEMPLATE"}
"""


# Runs `sagac` as a child of a small interpreter and writes that child's peak RSS (kilobytes)
# to argv[1]: measured from pytest directly, the child's figure would start at pytest's own size
# (Linux keeps a process's peak across fork and exec). An unbounded run is killed at 60 s.
PEAK_OF_CHILD = """
import resource, subprocess, sys
try:
    code = subprocess.run(sys.argv[2:], timeout=60).returncode
except subprocess.TimeoutExpired:
    code = -9
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code if code >= 0 else 99)
"""


SAGAC = [sys.executable, "-m", "sagac", "run", "--store", "memory", "--json"]


@pytest.mark.parametrize("template", [NESTED_LOOPS, "{{ 'x' | indent(10**9) }}"])
def test_a_run_ends_with_template_error_and_little_memory(tmp_path: Path, template: str) -> None:
    saga = tmp_path / "busy.yaml"
    saga.write_text(SAGA.replace("TEMPLATE", template.replace('"', '\\"')))
    out, err, peak = tmp_path / "out", tmp_path / "err", tmp_path / "peak"
    with out.open("w") as stdout, err.open("w") as stderr:
        ran = subprocess.run(
            [sys.executable, "-c", PEAK_OF_CHILD, str(peak), *SAGAC, str(saga)],
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
        )
    assert ran.returncode == 1, err.read_text()
    report = json.loads(out.read_text())
    assert report["failure"]["code"] == "TEMPLATE_ERROR"
    assert report["failure"]["step"] == "busy"
    peak_mb = int(peak.read_text()) / 1024
    assert peak_mb < 400, f"{peak_mb:.0f} MB"
