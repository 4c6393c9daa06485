"""The sagac exception tree. Every error a user can cause is one of these, with a stable code.

`SagacError` is the root; callers catch the level they care about. The runtime extends this
tree (`sagac.runtime.errors`); the compiler never imports the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .diagnostics import Diagnostic


class SagacError(Exception):
    """Root of every error sagac raises on purpose. `exit_code` is the CLI's (spec section 8)."""

    code: str = "SAGAC_ERROR"
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(SagacError):
    """The command line or an API call was used wrongly."""

    code = "USAGE"
    exit_code = 64


class DefinitionError(SagacError):
    """A saga definition did not compile; `diagnostics` says every reason."""

    code = "INVALID_DEFINITION"
    exit_code = 65

    def __init__(self, diagnostics: list[Diagnostic], message: str | None = None) -> None:
        errors = [d for d in diagnostics if d.level.value == "error"]
        first = errors[0] if errors else (diagnostics[0] if diagnostics else None)
        summary = message or (
            f"{first.file}:{first.line}:{first.column}: {first.code} {first.message}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
            if first
            else "invalid saga definition"
        )
        super().__init__(summary)
        self.diagnostics = diagnostics


class InputError(SagacError):
    """A run's input does not match the saga's `input` schema; nothing ran."""

    code = "INVALID_INPUT"
    exit_code = 4

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []
