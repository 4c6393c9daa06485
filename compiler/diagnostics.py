"""Diagnostics: what the compiler found, where, and what to do about it.

Every check in the compiler reports through `Diagnostic` values collected in a `DiagnosticBag`;
nothing in the compiler raises for a user mistake. Codes are stable: once published a code
keeps its meaning (see docs/diagnostics.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Code:
    """A stable diagnostic code with its default severity and a one-line title."""

    code: str
    severity: Severity
    title: str


_E, _W = Severity.ERROR, Severity.WARNING

# The registry. Append only: never renumber or reuse a code.
CODES: dict[str, Code] = {
    c.code: c
    for c in (
        Code("E001", _E, "YAML syntax error"),
        Code("E002", _E, "hostile or oversized YAML refused"),
        Code("E003", _E, "duplicate mapping key"),
        Code("E004", _E, "file cannot be read"),
        Code("E010", _E, "schema violation"),
        Code("E011", _E, "unknown key"),
        Code("E012", _E, "duplicate id"),
        Code("E013", _E, "cycle in the step graph"),
        Code("E014", _E, "unknown action"),
        Code("E015", _E, "unknown or out-of-scope `after` reference"),
        Code("E016", _E, "template syntax error"),
        Code("E017", _E, "template reads a step that is not certain to have completed first"),
        Code("E018", _E, "`result` or `error` used outside `compensate`"),
        Code("E019", _E, "`compensate` together with `irreversible`"),
        Code("E020", _E, "retry `on` names a code the step cannot raise"),
        Code("E021", _E, "template reads a result field the step does not `keep`"),
        Code("E022", _E, "template reads an unknown name"),
        Code("E023", _E, "invalid input schema"),
        Code("E024", _E, "idempotency key reads `secrets`"),
        Code("E025", _E, "a template chooses the executable or the host"),
        Code("E026", _E, "python action target cannot be imported or called with its `with`"),
        Code("E027", _E, "called saga missing or with errors"),
        Code("E028", _E, "call cycle"),
        Code("E029", _E, "`with` cannot satisfy the called saga's `input`"),
        Code("W101", _W, "retried step with a side effect has no `idempotency_key`"),
        Code("W102", _W, "step can fail after an irreversible step (pivot) has completed"),
        Code("W103", _W, "approval gate without `timeout`"),
        Code("W104", _W, "compensation without retry"),
        Code("W105", _W, "unused action"),
        Code("W106", _W, "`any` branch without compensation"),
    )
}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding, pointing at a YAML node (line and column are 1-based)."""

    code: str
    message: str
    file: str
    line: int = 1
    column: int = 1
    hint: str | None = None
    severity: Severity | None = None

    @property
    def level(self) -> Severity:
        return self.severity or CODES[self.code].severity

    def to_dict(self) -> dict[str, object]:
        return {
            "severity": self.level.value,
            "code": self.code,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "hint": self.hint,
        }


class DiagnosticBag:
    """Collects diagnostics of one compilation; checks add, drivers read."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def add(self, diagnostic: Diagnostic) -> None:
        self.items.append(diagnostic)

    def extend(self, diagnostics: list[Diagnostic]) -> None:
        self.items.extend(diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.level is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.level is Severity.WARNING]

    def has_errors(self) -> bool:
        return any(d.level is Severity.ERROR for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=lambda d: (d.file, d.line, d.column, d.code))
