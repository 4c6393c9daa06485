"""A re-export shim: the runtime's errors live in `sagac.errors` (issue 11).

Kept only while runtime modules owned by other lanes still import `sagac.runtime.errors`; new
code imports `sagac.errors`. The lead deletes this shim once every import is rewritten.
"""

from __future__ import annotations

from sagac.errors import (
    ApprovalRefused,
    DecisionConflict,
    LeaseHeld,
    RunNotFound,
    SecretMissing,
    StepError,
    StoreError,
)

__all__ = [
    "ApprovalRefused",
    "DecisionConflict",
    "LeaseHeld",
    "RunNotFound",
    "SecretMissing",
    "StepError",
    "StoreError",
]
