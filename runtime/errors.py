"""Runtime errors: the part of the `SagacError` tree raised while a saga runs.

`StepError` is also the public way for a python action to fail with a domain code (`from sagac
import StepError`): `raise StepError("PAYMENT_DECLINED", {"decline_code": "insufficient_funds"},
message="card declined")`, the spec's `StepError(code, detail)`, or the older
`StepError("PAYMENT_DECLINED", "card declined")` (a text second argument is the message).
Returning one is the same as raising it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagac.compiler.errors import SagacError


class StepError(SagacError):
    """A step (or compensation) failed with `code`; `detail` is small JSON data for the report.

    `StepError(code, detail, *, message=...)`: a mapping second argument is the detail (the
    spec's form); a text one is the message (`StepError(code, message, detail)`, as before).
    Anything else is a TypeError, which an action's caller reports as UNEXPECTED: a mistake in
    raising the error must still end in a report, not a traceback.
    """

    exit_code = 1

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


class StoreError(SagacError):
    """The journal store could not do what was asked (corrupt, locked, unreachable)."""

    code = "STORE_ERROR"
    exit_code = 70


class SecretMissing(SagacError):
    """A secret that the saga's templates read is not set; nothing ran."""

    code = "SECRET_MISSING"
    exit_code = 64


class RunNotFound(SagacError):
    code = "RUN_NOT_FOUND"
    exit_code = 64


class ApprovalRefused(SagacError):
    """A decision on an approval gate was not accepted (and was audited)."""

    code = "APPROVAL_REFUSED"
    exit_code = 77


class LeaseHeld(StoreError):
    """The run is leased by another live owner (`owner`, until `expires_at`, epoch seconds)."""

    code = "RUN_BUSY"
    exit_code = 75

    def __init__(self, run_id: str, owner: str, expires_at: float) -> None:
        from sagac.runtime.clock import rfc3339

        super().__init__(
            # The holder may be the run's first process or a resumer: say neither.
            f"run {run_id} is in progress in another process: {owner} holds it until"
            f" {rfc3339(expires_at)}",
            hint="wait for it to finish, or retry after that time if its owner died",
        )
        self.run_id, self.owner, self.expires_at = run_id, owner, expires_at


class DecisionConflict(StoreError):
    """A store refused to record a gate's decision: the gate is no longer pending, or its
    definition is no longer the one the decision was checked against. `approvals` reads the
    gate again and turns this into the refusal it then deserves; it never reaches a user."""

    code = "DECISION_CONFLICT"
