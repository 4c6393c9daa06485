"""Secret redaction: every occurrence of a secret value becomes `***`.

Secrets (`secrets.<NAME>` in templates) may reach action arguments, but never the journal, the
events or a report. The executor passes everything it writes through one `Redactor`; the
template engine redacts its own error messages with the same one. A `Redactor` only replaces
text: it never decides what is secret (the saga's `secrets:` list does).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"


class Redactor:
    """Replaces secret values in strings, recursively in mappings and lists, with `***`."""

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        variants: set[str] = set()
        for secret in secrets:
            text = str(secret)
            if not text:
                continue  # an empty secret would match between every two characters
            variants.add(text)
            # The same value as it appears inside JSON text (quotes, backslashes, non-ASCII).
            variants.add(json.dumps(text)[1:-1])
            variants.add(json.dumps(text, ensure_ascii=False)[1:-1])
        # Longest first: a secret that contains another is masked whole, not in pieces.
        ordered = sorted(variants, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact_text(self, text: str) -> str:
        """`text` with every secret value replaced by `***`."""
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def redact(self, value: Any) -> Any:
        """A copy of `value` with secrets masked in every string (keys included); other values
        are returned as they are. Without secrets, `value` itself is returned."""
        if self._pattern is None:
            return value
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, Mapping):
            return {self._walk(k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v) for v in value]
        return value
