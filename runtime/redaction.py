"""Secret redaction: every occurrence of a secret value becomes `***`.

Secrets (`secrets.<NAME>` in templates) may reach action arguments, but never the journal, the
events or a report. The executor passes everything it writes through one `Redactor`; the
template engine redacts its own error messages with the same one, and registers with `add` every
value it renders from a template that reads `secrets` (`{{ secrets.K | upper }}` is as secret as
`K`). A `Redactor` only replaces text: it never decides what is secret.

Each secret is masked as written, as it appears inside JSON text, and URL-encoded (the forms an
error body echoing a request URL or a query string shows). Only values are masked, never the
keys of a mapping: a key is structure that the saga and its readers depend on. Secrets shorter
than `MIN_SECRET_LENGTH` are refused before a run starts (`check_secrets`): masking them would
rewrite ordinary text (`echo` would become `***cho`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from sagac.errors import InputError

MASK = "***"
MIN_SECRET_LENGTH = 4

# The characters httpx leaves as they are in a URL's path and query (it encodes spaces, quotes,
# `<`, `>` and non-ASCII): a server echoing the URL it was sent shows the secret this way.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]^`{|}~"


def spellings(secret: str) -> set[str]:
    """`secret` as written, JSON-escaped (ASCII or not) and URL-encoded (path, form and httpx
    styles): every form in which a secret that reached a request or a body can come back."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote(secret, safe="/"),
        quote(secret, safe=_URL_SAFE),
        quote_plus(secret),
    }


def check_secrets(secrets: Mapping[str, str]) -> None:
    """Refuse (InputError, exit 4) any secret shorter than `MIN_SECRET_LENGTH`, naming it."""
    short = sorted(name for name, value in secrets.items() if len(str(value)) < MIN_SECRET_LENGTH)
    if not short:
        return
    problems = [
        f"secret {name} is {len(str(secrets[name]))} character(s) long: secrets must have at "
        f"least {MIN_SECRET_LENGTH} (a shorter value cannot be masked without masking ordinary "
        f"text); set {name} to the real secret, or list it under `env:` if it is not secret"
        for name in short
    ]
    raise InputError("; ".join(problems), problems=problems)


class Redactor:
    """Replaces secret values in strings, recursively in the values of mappings and lists, with
    `***`. Secrets can be added while a run goes on; the pattern is rebuilt on next use."""

    __slots__ = ("_pattern", "_stale", "_values", "_variants")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._variants: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._stale = False
        self.add(secrets)

    def __bool__(self) -> bool:
        return bool(self._variants)

    def add(self, secrets: Iterable[str]) -> None:
        """Treat every value of `secrets` as secret from now on (empty ones are ignored: they
        would match between every two characters)."""
        for secret in secrets:
            text = str(secret)
            if text and text not in self._values:
                self._values.add(text)
                self._variants |= spellings(text)
                self._stale = True

    def knows(self, text: str) -> bool:
        """Whether `text` is already one of the secrets."""
        return text in self._values

    def _current(self) -> re.Pattern[str] | None:
        if self._stale:
            # Longest first: a secret that contains another is masked whole, not in pieces.
            ordered = sorted(self._variants, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)))
            self._stale = False
        return self._pattern

    def redact_text(self, text: str) -> str:
        """`text` with every secret value replaced by `***`."""
        pattern = self._current()
        if pattern is None:
            return text
        return pattern.sub(MASK, text)

    def contains(self, value: Any) -> bool:
        """Whether any string value inside `value` holds a secret."""
        pattern = self._current()
        if pattern is None:
            return False
        if isinstance(value, str):
            return pattern.search(value) is not None
        if isinstance(value, Mapping):
            return any(self.contains(v) for v in value.values())
        if isinstance(value, list | tuple):
            return any(self.contains(v) for v in value)
        return False

    def redact(self, value: Any) -> Any:
        """A copy of `value` with secrets masked in every string value (mapping keys are kept
        as they are); other values are returned as they are. Without secrets, `value` itself
        is returned."""
        pattern = self._current()
        if pattern is None:
            return value
        return self._walk(value, pattern)

    def _walk(self, value: Any, pattern: re.Pattern[str]) -> Any:
        if isinstance(value, str):
            return pattern.sub(MASK, value)
        if isinstance(value, Mapping):
            return {k: self._walk(v, pattern) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v, pattern) for v in value]
        return value
