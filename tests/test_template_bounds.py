"""One template cannot exhaust memory or CPU through `*` and `**`."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError
from sagac.compiler.templates import environment


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
