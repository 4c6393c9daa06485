"""Errors as `application/problem+json` (RFC 9457): a status, the project's stable code, a
message. A `SagacError` maps to its status by class; anything else is a 500 whose body names
no exception, path or line (the traceback goes to the server's stderr only). No response ever
carries a traceback, a clear token or a request body."""

from __future__ import annotations

import sys
import traceback
from typing import Any

from starlette.responses import JSONResponse

from sagac.errors import (
    ApprovalRefused,
    CallbackRefused,
    Forbidden,
    IdempotencyConflict,
    InputError,
    InvalidSignalData,
    LeaseHeld,
    NotAnApprover,
    RunNotFound,
    SagacError,
    SignalRefused,
    StoreError,
    StoreUnavailable,
    Unauthenticated,
    UnknownCallbackToken,
    UnknownSignal,
)

PROBLEM = "application/problem+json"

# The codes only the HTTP API gives (the others are the CLI's, from sagac.errors).
NOT_FOUND = "NOT_FOUND"  # no such route, or no such saga
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
BODY_TOO_LARGE = "BODY_TOO_LARGE"
INVALID_REQUEST = "INVALID_REQUEST"  # not JSON, or not the body's shape
INTERNAL = "INTERNAL"


class HttpProblem(SagacError):
    """A refusal of the HTTP layer itself, with its status and code."""

    def __init__(self, status: int, code: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code


# The first class an error is an instance of gives its status (subclasses first).
_STATUSES: tuple[tuple[type[SagacError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (RunNotFound, 404),
    (UnknownCallbackToken, 404),
    (NotAnApprover, 403),
    (ApprovalRefused, 409),
    (IdempotencyConflict, 409),
    (UnknownSignal, 422),
    (InvalidSignalData, 422),
    (SignalRefused, 409),
    (CallbackRefused, 409),
    (InputError, 422),
    (LeaseHeld, 409),
    (StoreUnavailable, 503),
    (StoreError, 500),
)


def status_of(error: SagacError) -> int:
    if isinstance(error, HttpProblem):
        return error.status
    for cls, status in _STATUSES:
        if isinstance(error, cls):
            return status
    return 400  # UsageError and the rest: the request was wrong


def problem(
    status: int, code: str, message: str, hint: str | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:sagac:error:{code}",
        "title": code,
        "status": status,
        "code": code,
        "detail": message,
    }
    if hint:
        body["hint"] = hint
    body.update(extra)
    headers = {"WWW-Authenticate": 'Bearer realm="sagac"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def from_error(error: SagacError) -> JSONResponse:
    status = status_of(error)
    if status >= 500 and not isinstance(error, StoreUnavailable):
        _log(error)
        return problem(status, error.code, "the server could not complete the request")
    extra: dict[str, Any] = {}
    if isinstance(error, InputError):
        extra["errors"] = list(error.problems)
    return problem(status, error.code, error.message, error.hint, **extra)


def internal(error: BaseException) -> JSONResponse:
    """A bare 500 (uvicorn logs the traceback to stderr: Starlette re-raises it there)."""
    return problem(500, INTERNAL, "the server could not complete the request")


def _log(error: BaseException) -> None:
    """The traceback, for the operator (stderr), never for the client."""
    traceback.print_exception(error, file=sys.stderr)
