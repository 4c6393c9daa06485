"""Runtime errors: the part of the `SagacError` tree raised while a saga runs.

`StepError` is also the public way for a python action to fail with a domain code:
`raise StepError("PAYMENT_DECLINED", "card declined")` (or return one as an error result).
"""

from __future__ import annotations

from typing import Any

from sagac.compiler.errors import SagacError


class StepError(SagacError):
    """A step (or compensation) failed with `code`; `detail` is small JSON data for the report."""

    exit_code = 1

    def __init__(self, code: str, message: str = "", detail: Any = None) -> None:
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
