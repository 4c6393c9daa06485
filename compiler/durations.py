"""Durations as authors write them (`250ms`, `30s`, `5m`, `48h`, `2d`), in seconds."""

from __future__ import annotations

import re

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
