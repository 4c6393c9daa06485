"""The sagac exception tree and the CLI's exit codes: every error a user can cause, in one place.

`SagacError` is the root; callers catch the level they care about (httpx's habit). Each class
has a stable `code` (printed as `error[CODE]`, stored in audit entries) and the `exit_code` the
CLI returns for it, a member of `ExitCode`:

    SagacError (SAGAC_ERROR, 1)
    ├── UsageError (USAGE, 64)
    │   ├── IdempotencyConflict, DefinitionUnavailable, UnknownApiToken
    ├── RunNotFound (64), SecretMissing (64)
    ├── DefinitionError (INVALID_DEFINITION, 65), DefinitionChanged (65)
    ├── InputError (INVALID_INPUT, 4)
    ├── StepError (its own code per failure, 1)
    ├── StoreError (STORE_ERROR, 70)
    │   └── LeaseHeld (RUN_BUSY, 75)
    ├── ApprovalRefused (APPROVAL_REFUSED, 77)
    │   └── NotAnApprover, BadToken, TokenUsed, GateNotPending, ApprovalExpired,
    │       DefinitionMismatch
    ├── SignalRefused, CallbackRefused (77)
    ├── Unauthenticated (UNAUTHENTICATED), Forbidden (FORBIDDEN): HTTP 401 and 403
    ├── GraphvizMissing (69), GraphvizFailed (70)
    └── OutputError (CANNOT_WRITE, 73)

Exceptions that never reach a user stay in the modules that raise and catch them: `NodeFailed`,
`AttemptsFailed` and the foreach item's failure are control flow inside the runtime, and the
loader's `TooLarge` (exported, for `read_limited`) is turned by its caller into the error that
names what was too large.

This module imports only the standard library: the compiler, the runtime and the CLI's
`--help` all import it, and it must never pull in the runtime or a heavy library.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagac.compiler.diagnostics import Diagnostic


class ExitCode(IntEnum):
    """Every exit code of the `sagac` command (spec section 8; sysexits names from 64 up)."""

    OK = 0
    FAILED = 1
    COMPENSATION_FAILED = 2
    WAITING_APPROVAL = 3  # any parked run: `waiting_approval` or `waiting`
    INVALID_INPUT = 4
    USAGE = 64  # EX_USAGE
    INVALID_DEFINITION = 65  # EX_DATAERR
    UNAVAILABLE = 69  # EX_UNAVAILABLE
    SOFTWARE = 70  # EX_SOFTWARE: the journal store failed (or a bug)
    CANT_CREATE = 73  # EX_CANTCREAT
    BUSY = 75  # EX_TEMPFAIL
    NOT_PERMITTED = 77  # EX_NOPERM
    SIGINT = 130  # 128 + SIGINT
    SIGTERM = 143  # 128 + SIGTERM


# What each code means: (the words of `sagac --help`'s epilog, the README's exit-code table).
# `tests/test_exit_codes.py` checks that both list exactly these, with these meanings.
EXIT_MEANINGS: Mapping[ExitCode, tuple[str, str]] = {
    ExitCode.OK: ("ok", "succeeded (or: valid)"),
    ExitCode.FAILED: (
        "failed and compensated",
        "failed and fully compensated, or failed with nothing to undo",
    ),
    ExitCode.COMPENSATION_FAILED: (
        "compensation failed",
        "compensation failed: a person is needed (`needs_attention` in the report)",
    ),
    ExitCode.WAITING_APPROVAL: (
        "waiting (an approval, a time, a signal)",
        "waiting: for an approval, a sleep's due time, a signal, a callback or a called run"
        " (status `waiting_approval` or `waiting`)",
    ),
    ExitCode.INVALID_INPUT: ("invalid input", "invalid run input (nothing ran)"),
    ExitCode.USAGE: ("usage", "usage error"),
    ExitCode.INVALID_DEFINITION: ("invalid or changed saga", "invalid saga definition"),
    ExitCode.UNAVAILABLE: (
        "a required program (Graphviz dot) is missing or the store's server is unreachable",
        "a required program (Graphviz `dot`) is missing, or the store's server (PostgreSQL) is"
        " unreachable or the connection was lost: try again later",
    ),
    ExitCode.SOFTWARE: (
        "journal store error",
        "the journal store failed (corrupt, newer schema, not a database, a full disk): a run"
        " it stopped is named, with its `sagac resume` command",
    ),
    ExitCode.CANT_CREATE: (
        "cannot write an output file",
        "an output file (`-o`, `--events`) cannot be written (sysexits `EX_CANTCREAT`); a"
        " previous `-o` file is left whole",
    ),
    ExitCode.BUSY: (
        "run held by another process",
        "the run is in progress in another process (its first run or a resume holds the"
        " lease); try again later",
    ),
    ExitCode.NOT_PERMITTED: (
        "not permitted",
        "not permitted (an approval, a signal or a callback refused; the refusal is audited)",
    ),
    # The two signals share one line in both places.
    ExitCode.SIGINT: (
        "stopped by SIGINT/SIGTERM (a run it stopped is resumable)",
        "stopped by SIGINT (Ctrl-C) / SIGTERM: nothing left running, the run `interrupted` and"
        " resumable (`sagac resume RUN_ID`, printed)",
    ),
}
EXIT_MEANINGS = {**EXIT_MEANINGS, ExitCode.SIGTERM: EXIT_MEANINGS[ExitCode.SIGINT]}


def exit_codes_epilog() -> str:
    """The `sagac --help` epilog: every exit code and what it means, one sentence."""
    parts: list[str] = []
    for code in ExitCode:
        if code is ExitCode.SIGTERM:
            continue  # said with SIGINT: "130/143 stopped by SIGINT/SIGTERM"
        number = "130/143" if code is ExitCode.SIGINT else str(int(code))
        parts.append(f"{number} {EXIT_MEANINGS[code][0]}")
    return "Exit codes: " + ", ".join(parts) + "."


# -- the root and the compiler's errors ---------------------------------------------------------


class SagacError(Exception):
    """Root of every error sagac raises on purpose. `exit_code` is the CLI's (spec section 8)."""

    code: str = "SAGAC_ERROR"
    exit_code: int = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(SagacError):
    """The command line or an API call was used wrongly."""

    code = "USAGE"
    exit_code = ExitCode.USAGE


class DefinitionError(SagacError):
    """A saga definition did not compile; `diagnostics` says every reason."""

    code = "INVALID_DEFINITION"
    exit_code = ExitCode.INVALID_DEFINITION

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
    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class GraphvizMissing(SagacError):
    """Graphviz `dot` is needed (SVG and HTML output) and is not installed."""

    code = "GRAPHVIZ_MISSING"
    exit_code = ExitCode.UNAVAILABLE

    def __init__(self) -> None:
        super().__init__(
            "Graphviz `dot` is not installed: SVG and HTML output need it",
            hint="apt-get install graphviz (or `make system-deps`); "
            "--format mermaid and --format dot work without it",
        )


class GraphvizFailed(SagacError):
    """`dot` rejected the DOT text or did not finish: a bug in the renderer."""

    code = "GRAPHVIZ_FAILED"
    exit_code = ExitCode.SOFTWARE


# -- the runtime's errors -----------------------------------------------------------------------


class StepError(SagacError):
    """A step (or compensation) failed with `code`; `detail` is small JSON data for the report.

    It is also the public way for a python action to fail with a domain code (`from sagac
    import StepError`): `raise StepError("PAYMENT_DECLINED", {"decline_code":
    "insufficient_funds"}, message="card declined")`, the spec's `StepError(code, detail)`, or
    the older `StepError("PAYMENT_DECLINED", "card declined")` (a text second argument is the
    message). Returning one is the same as raising it. Anything else is a TypeError, which an
    action's caller reports as UNEXPECTED: a mistake in raising the error must still end in a
    report, not a traceback.
    """

    exit_code = ExitCode.FAILED

    def __init__(
        self,
        code: str,
        detail_or_message: Mapping[str, Any] | str | None = None,
        detail: Any = None,
        *,
        message: str | None = None,
    ) -> None:
        if not isinstance(code, str) or not code:
            raise TypeError(
                f"StepError's code must be text such as 'PAYMENT_DECLINED', not {code!r}"
            )
        if isinstance(detail_or_message, str):
            if message is not None:
                raise TypeError(f"StepError({code!r}): the message is given twice")
            message = detail_or_message
        elif isinstance(detail_or_message, Mapping):
            if detail is not None:
                raise TypeError(f"StepError({code!r}): the detail is given twice")
            detail = dict(detail_or_message)
        elif detail_or_message is not None:
            raise TypeError(
                f"StepError({code!r}, ...): the second argument is the detail (a mapping) or "
                f"the message (text), not {type(detail_or_message).__name__}; write "
                f"StepError({code!r}, {{...}}, message='...')"
            )
        if message is not None and not isinstance(message, str):
            raise TypeError(
                f"StepError({code!r}): message must be text, not {type(message).__name__}"
            )
        super().__init__(message or code)
        self.code = code  # instance attribute: each failure carries its own code
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


class SecretMissing(SagacError):
    """A secret that the saga's templates read is not set; nothing ran."""

    code = "SECRET_MISSING"
    exit_code = ExitCode.USAGE


class RunNotFound(SagacError):
    """No run with that id in the store."""

    code = "RUN_NOT_FOUND"
    exit_code = ExitCode.USAGE


class DefinitionChanged(SagacError):
    """The saga's definition changed since the run started (resume without `force`)."""

    code = "DEFINITION_CHANGED"
    exit_code = ExitCode.INVALID_DEFINITION


class IdempotencyConflict(UsageError):
    """A run-level idempotency key reused with a different input (exit 64)."""

    code = "IDEMPOTENCY_CONFLICT"


class UnknownApiToken(UsageError):
    """No API token has that id (or a prefix names several): `sagac tokens revoke`."""

    code = "UNKNOWN_API_TOKEN"


class DefinitionUnavailable(UsageError):
    """A run's definition file cannot be found or read to resume it."""

    code = "DEFINITION_UNAVAILABLE"


class StoreError(SagacError):
    """The journal store could not do what was asked (corrupt, locked, unreachable)."""

    code = "STORE_ERROR"
    exit_code = ExitCode.SOFTWARE


class StoreUnavailable(StoreError):
    """The store's server could not be reached, or the connection was lost mid-operation (a
    write may or may not have committed). Trying again later is safe: a worker backs off,
    reconnects and continues its runs from their journals."""

    code = "STORE_UNAVAILABLE"
    exit_code = ExitCode.UNAVAILABLE


class LeaseHeld(StoreError):
    """The run is leased by another live owner (`owner`, until `expires_at`, epoch seconds)."""

    code = "RUN_BUSY"
    exit_code = ExitCode.BUSY

    def __init__(self, run_id: str, owner: str, expires_at: float) -> None:
        super().__init__(
            # The holder may be the run's first process or a resumer: say neither.
            f"run {run_id} is in progress in another process: {owner} holds it until"
            f" {_rfc3339(expires_at)}",
            hint="wait for it to finish, or retry after that time if its owner died",
        )
        self.run_id, self.owner, self.expires_at = run_id, owner, expires_at


class DecisionConflict(StoreError):
    """A store refused to record a gate's decision: the gate is no longer pending, or its
    definition is no longer the one the decision was checked against. `approvals` reads the
    gate again and turns this into the refusal it then deserves; it never reaches a user."""

    code = "DECISION_CONFLICT"


def _rfc3339(epoch: float) -> str:
    """As `sagac.runtime.clock.rfc3339` (which caches for the hot path; this module must not
    import the runtime; imported here: `--help` never formats a time)."""
    from datetime import UTC, datetime

    sec, ms = divmod(int(epoch * 1000), 1000)
    return f"{datetime.fromtimestamp(sec, UTC).strftime('%Y-%m-%dT%H:%M:%S')}.{ms:03d}Z"


class ApprovalRefused(SagacError):
    """A decision on an approval gate was not accepted (and was audited)."""

    code = "APPROVAL_REFUSED"
    exit_code = ExitCode.NOT_PERMITTED


class NotAnApprover(ApprovalRefused):
    """The deciding user is not among the gate's approvers."""

    code = "NOT_AN_APPROVER"


class BadToken(ApprovalRefused):
    """The token is not the one issued for the gate."""

    code = "BAD_TOKEN"


class TokenUsed(ApprovalRefused):
    """The gate's token was already used for a decision."""

    code = "TOKEN_USED"


class GateNotPending(ApprovalRefused):
    """The gate is not waiting for a decision."""

    code = "GATE_NOT_PENDING"


class ApprovalExpired(ApprovalRefused):
    """The gate's deadline passed."""

    code = "APPROVAL_EXPIRED"


class DefinitionMismatch(ApprovalRefused):
    """The definition changed since the approval was requested."""

    code = "DEFINITION_CHANGED"


class SignalRefused(SagacError):
    """A signal was not accepted (and was audited); the run goes on waiting."""

    code = "SIGNAL_REFUSED"
    exit_code = ExitCode.NOT_PERMITTED


class UnknownSignal(SignalRefused):
    """The saga has no `wait` on that signal name."""

    code = "UNKNOWN_SIGNAL"


class InvalidSignalData(SignalRefused):
    """The signal's data does not match its `wait`'s `schema`."""

    code = "INVALID_SIGNAL_DATA"


class SignalAlreadySent(SignalRefused):
    """As many signals of that name were sent as the saga has waits on it."""

    code = "SIGNAL_ALREADY_SENT"


class RunFinished(SignalRefused):
    """The run has finished: it waits for nothing any more."""

    code = "RUN_FINISHED"


class CallbackRefused(SagacError):
    """A callback was not accepted (and was audited)."""

    code = "CALLBACK_REFUSED"
    exit_code = ExitCode.NOT_PERMITTED


class UnknownCallbackToken(CallbackRefused):
    """No callback was issued with that token."""

    code = "UNKNOWN_CALLBACK_TOKEN"


class CallbackTokenUsed(CallbackRefused):
    """The token was used already."""

    code = "CALLBACK_TOKEN_USED"


class CallbackLate(CallbackRefused):
    """The callback's timeout passed."""

    code = "CALLBACK_LATE"


class CallbackNotPending(CallbackRefused):
    """The step no longer waits for this token (the run finished, or another token of the
    step completed it)."""

    code = "CALLBACK_NOT_PENDING"


class Unauthenticated(SagacError):
    """A request to the HTTP API without a bearer token, or with one the store does not know
    or has revoked (HTTP 401; audited). No command exits with it."""

    code = "UNAUTHENTICATED"
    exit_code = ExitCode.NOT_PERMITTED


class Forbidden(SagacError):
    """An authenticated caller's token lacks the scope the request needs (HTTP 403;
    audited)."""

    code = "FORBIDDEN"
    exit_code = ExitCode.NOT_PERMITTED


# -- the CLI's errors ---------------------------------------------------------------------------


class OutputError(SagacError):
    """An output file (`-o`, `--events`) could not be created or written."""

    code = "CANNOT_WRITE"
    exit_code = ExitCode.CANT_CREATE
