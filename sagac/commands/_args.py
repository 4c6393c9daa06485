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


def add_sleep_limit_option(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    """`--sleep-limit DURATION`: sleeps due within it are waited in this process (active
    time); longer ones park the run (`waiting`, exit 3) for a worker to wake when due."""
    parser.add_argument(
        "--sleep-limit",
        type=duration,
        default=default,
        metavar="DURATION",
        help=f"wait in this process for a `sleep` due within DURATION; a longer one parks the"
        f" run {what} (default {default:g}s)",
    )
