"""Argument types shared by the commands: whole numbers and durations that argparse checks, so
that a wrong value is a usage error (exit 64) naming the option, never a traceback."""

from __future__ import annotations

import argparse


def positive(text: str) -> int:
    """A whole number of 1 or more (`--limit`, `--concurrency`: zero or less means nothing)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, not {text!r}")
    return n


def duration(text: str) -> float:
    """A duration (`250ms`, `30s`, `5m`) in seconds; zero is allowed (`--grace 0s`)."""
    from sagac import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def period(text: str) -> float:
    """A duration of at least 10ms (a lease, a poll: zero would spin)."""
    seconds = duration(text)
    if seconds < 0.01:
        raise argparse.ArgumentTypeError(f"must be 10ms or more, not {text!r}")
    return seconds
