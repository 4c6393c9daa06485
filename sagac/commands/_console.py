"""What the commands print to people: live progress, run reports, decision help, diagnostics.

Shared by every command that shows a run or a compilation, so that no command module imports
another. Rich is used only in a terminal (and not with NO_COLOR), and imported only then; this
module never runs, reads or writes a journal.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagac import Compilation

    from ._files import EventsFile


def event_sink(progress: Progress, events: EventsFile | None, seen: list[str] | None = None) -> Any:
    """The `on_event` of a command that runs a saga: the `--events` file, then the progress
    lines; `seen` gets the run's id from its first event."""

    def on_event(event: dict[str, Any]) -> None:
        if seen is not None and not seen:
            seen.append(event["run_id"])
        if events is not None:
            events.write(event)
        progress.show(event)

    return on_event


def _fancy(stream: IO[str]) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


_STYLE = {
    "step_completed": "green",
    "compensation_completed": "cyan",
    "step_failed": "red",
    "compensation_failed": "bold red",
    "step_retrying": "yellow",
    "step_skipped": "dim",
    "approval_requested": "magenta",
    "saga_completed": "bold green",
    "saga_failed": "bold red",
    "saga_waiting": "bold magenta",
}


class Progress:
    """One line per event worth seeing, coloured in a terminal."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.console: Any = None
        if _fancy(stream):
            from rich.console import Console

            self.console = Console(file=stream, highlight=False)
        from sagac import BatchProgress

        self.batches = BatchProgress(stream, self.console)  # foreach: a bar, or periodic lines

    def show(self, e: dict[str, Any]) -> None:
        if self.batches.show(e):
            return
        line = describe(e)
        if line is None:
            return
        if self.console is not None:
            from rich.markup import escape

            style = _STYLE.get(e["type"], "")
            text = escape(line)
            self.console.print(f"[{style}]{text}[/]" if style else text)
        else:
            print(line, file=self.stream, flush=True)


def describe(e: dict[str, Any]) -> str | None:
    t = e["type"]
    step = e.get("step", "")
    if e.get("item_index") is not None:
        step = f"{step}[{e['item_index']}]"
    err = e.get("error") or {}
    if t == "saga_started":
        simulated = " (simulated: no action is called)" if e.get("simulate") else ""
        return f"▶ {e['saga']} v{e['version']} run {e['run_id']}{simulated}"
    if t == "step_started":
        return f"  … {step} (attempt {e.get('attempt', 1)})"
    if t == "step_completed":
        return f"  ✓ {step} {e.get('duration_ms', 0)} ms"
    if t == "step_failed":
        mark = "⊘" if e.get("cancelled") else "✗"
        return f"  {mark} {step} {err.get('code')}: {err.get('message', '')}"
    if t == "step_retrying":
        return f"  ↻ {step} {err.get('code')}, retry in {e['delay_ms']} ms"
    if t == "step_skipped":
        return f"  - {step} skipped"
    if t == "group_completed" and e.get("winner") is not None:
        return f"  ✓ {step} won by branch {e['winner']}"
    if t == "batch_progress":
        return (
            f"  ▸ {step} batch {e['batch']}/{e['total_batches']}: {e['processed']}/{e['total']}"
            f" ({e['percent']}%), {e['failed']} failed"
        )
    if t == "approval_requested":
        return f"  ⏸ {step} waits for approval by {', '.join(e['approvers'])}: {e.get('key')}"
    if t == "sleep_started":
        return f"  ⏸ {step} sleeps until {e['until']}"
    if t == "wait_started":
        until = f" (until {e['deadline']})" if e.get("deadline") else ""
        return f"  ⏸ {step} waits for signal {e['signal']}{until}"
    if t == "callback_waiting":
        return f"  ⏸ {step} waits for its callback (attempt {e['attempt']})"
    if t == "wait_ended":
        return f"  ▸ {step} {e['reason']}"
    if t == "call_started":
        return f"  ▸ {step} calls {e['saga']}: child run {e['child_run_id']}"
    if t == "compensation_completed":
        return f"  ↶ undid {step}"
    if t == "compensation_failed":
        return f"  ✗ undo of {step} failed: {err.get('code')}: {err.get('message', '')}"
    if t in ("saga_completed", "saga_failed", "saga_waiting"):
        return f"■ {e['status']}"
    if t == "saga_interrupted":
        return f"■ interrupted by {e['signal']}"
    if t == "saga_resumed" and e.get("ended_processes"):
        return "\n".join(
            f"  ⊘ ended process group {p['pgid']} left running by {p['step']} "
            f"(attempt {p.get('attempt')}): pids {', '.join(map(str, p['pids']))}"
            for p in e["ended_processes"]
        )
    return None


def print_table(report: Any, stream: IO[str]) -> None:
    if _fancy(stream):
        from rich.console import Console
        from rich.table import Table

        console = Console(file=stream)
        table = Table(title=f"{report.saga} v{report.version} — {report.status}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for k, v in _rows(report):
            table.add_row(k, v)
        console.print(table)
        return
    for k, v in _rows(report):
        print(f"{k:<16} {v}", file=stream)


def _rows(report: Any) -> list[tuple[str, str]]:
    rows = [
        ("run", report.run_id),
        ("saga", f"{report.saga} v{report.version}"),
        ("status", report.status),
        ("duration", f"{report.duration_ms} ms"),
    ]
    if report.failure:
        f = report.failure
        where = f.step or "(saga)"
        if f.item_index is not None:
            where += f"[{f.item_index}]"
        rows.append(("failure", f"{where}: {f.code} {f.message} (attempts: {f.attempts})"))
    for e in report.errors:
        where = e.step or "(saga)"
        if e.branch:
            where += f" in {e.branch}"
        if e.item_index is not None:
            where += f" item {e.item_index}"
        rows.append(("error", f"{where}: {e.code} {e.message}".rstrip()))
    for c in report.compensations:
        step = c.step if c.item_index is None else f"{c.step}[{c.item_index}]"
        rows.append(("compensation", f"{step}: {c.status} (attempts: {c.attempts})"))
    if report.needs_attention:
        rows.append(("needs attention", ", ".join(report.needs_attention)))
    if report.output is not None:
        rows.append(("output", json.dumps(report.output)))
    return rows


def print_report(report: Any, as_json: bool) -> None:
    """The report on stdout (a table, or JSON with the clear tokens), then how to decide each
    gate a waiting run waits at, and what else it is parked on, on stderr."""
    if as_json:
        print(json.dumps(report.to_json_dict(tokens=True), indent=2))
    else:
        print_table(report, sys.stdout)
    if report.status == "waiting_approval":
        _print_pending(report)
    print_parked(report, sys.stderr)


def print_parked(report: Any, stream: Any) -> None:
    """What a parked run waits for (its sleeps, waits and callbacks) and how it goes on."""
    run = report.run_id
    for node in report.parked:
        if node.kind == "sleep":
            print(
                f"\nrun {run} sleeps at {node.id!r} until {node.due}: a worker wakes it then"
                f" (or `sagac resume {run}` from then on)",
                file=stream,
            )
        elif node.kind == "wait":
            until = f" until {node.due}" if node.due else ""
            print(
                f"\nrun {run} waits at {node.id!r} for signal {node.signal!r}{until}. Send it"
                f" with:\n  sagac signal {run} {node.signal} --data JSON",
                file=stream,
            )
        elif node.kind == "callback":
            until = f" until {node.due}" if node.due else ""
            print(
                f"\nrun {run} waits at {node.id!r} for its callback{until}: the token went to"
                " its action only. Report the outcome with:\n  sagac callback TOKEN --result"
                " JSON  (or --error CODE [--message M])",
                file=stream,
            )


def _print_pending(report: Any) -> None:
    """How to decide each gate the run now waits at (tokens only when this process got them)."""
    tokens: dict[str, str] = getattr(report, "approval_tokens", None) or {}
    for gate, token in tokens.items():
        print_decision_help(report.run_id, gate, token, sys.stderr)


def print_decision_help(run_id: str, gate: str, token: str, stream: Any) -> None:
    print(
        f"\nrun {run_id} waits for approval at gate {gate!r}. Decide with:\n"
        f"  sagac approve {run_id} --gate {gate} --as USER --token {token} --resume\n"
        f"  sagac reject  {run_id} --gate {gate} --as USER --token {token} --reason R --resume\n"
        "This token is shown once and stored only as a hash: keep it.",
        file=stream,
    )


def describe_request(row: Mapping[str, Any]) -> list[str]:
    """What is being decided, as lines: the rendered message and the values it came from."""
    lines = [
        f"run       {row['run_id']}",
        f"gate      {row['gate']}  (key {row['key']})",
        f"message   {row['message'] or '(none)'}",
    ]
    for name, value in (row.get("context") or {}).items():
        lines.append(f"  {name} = {value!r}")
    lines.append(f"approvers {', '.join(row['approvers'])}")
    lines.append(f"deadline  {row['deadline'] or 'none'}")
    lines.append(f"requested {row['requested_at']}  (definition {row['definition_hash']})")
    return lines


def _line_text(results: list[Compilation]) -> Any:
    def line(file: str, n: int) -> str:
        return next((text for c in results if (text := c.line_text(file, n))), "")

    return line


def print_diagnostics(results: list[Compilation], fmt: str) -> None:
    """Diagnostics as JSON or SARIF on stdout, or as text (with source lines) on stderr."""
    from sagac import format_json, format_sarif, format_text

    diags = [d for c in results for d in c.diagnostics]
    if fmt == "json":
        print(format_json(diags))
    elif fmt == "sarif":
        from sagac import __version__

        print(format_sarif(diags, __version__))
    elif diags:
        print(format_text(diags, _line_text(results)), file=sys.stderr)
