"""Durations as authors write them (`250ms`, `30s`, `5m`, `48h`, `2d`), in seconds, and the
RFC 3339 times a `sleep` waits `until` (checked at compile time when literal: E030)."""

from __future__ import annotations

import re
from datetime import datetime

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)$")


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError for anything that is not a duration."""
    m = DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"not a duration: {text!r} (write e.g. 250ms, 30s, 5m, 48h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of `seconds`, for diagrams and messages."""
    for unit in ("d", "h", "m", "s"):
        n = seconds / _UNITS[unit]
        if n >= 1 and float(n).is_integer():
            return f"{int(n)}{unit}"
    ms = seconds * 1000
    return f"{int(ms)}ms" if float(ms).is_integer() else f"{ms:g}ms"


# RFC 3339 (section 5.6): `T` (or `t`) between date and time, a zone `Z` or `+hh:mm`.
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?$"
)


def parse_time(text: str) -> datetime:
    """The aware datetime an RFC 3339 time with a zone names (`2026-12-24T09:00:00+01:00`,
    `...Z`); raises ValueError, saying what is wrong, for anything else."""
    m = _RFC3339.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time (2026-12-24T09:00:00+01:00)")
    if m.group(1) is None:
        raise ValueError(f"{text!r} has no zone (`Z` for UTC, or e.g. `+01:00`)")
    try:
        return datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"{text!r} is not a valid time: {e}") from None
