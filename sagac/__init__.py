"""sagac: declarative YAML sagas, compiled to a plan and run with LIFO compensation.

The public API is what `__all__` lists; names load lazily so that `sagac validate` does not pay
for the runtime's imports.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load": "sagac.compiler.pipeline",
    "compile_file": "sagac.compiler.pipeline",
    "compile_text": "sagac.compiler.pipeline",
    "Compilation": "sagac.compiler.pipeline",
    "Plan": "sagac.compiler.plan",
    "Diagnostic": "sagac.compiler.diagnostics",
    "SagacError": "sagac.compiler.errors",
    "DefinitionError": "sagac.compiler.errors",
    "InputError": "sagac.compiler.errors",
    "UsageError": "sagac.compiler.errors",
    "StepError": "sagac.runtime.errors",
    "run": "sagac.runtime.api",
    "arun": "sagac.runtime.api",
    "RunReport": "sagac.runtime.report",
    "resume": "sagac.runtime.resume:resume_sync",
    "approve": "sagac.runtime.resume:approve",
    "reject": "sagac.runtime.resume:reject",
    "cancel": "sagac.runtime.resume:cancel_sync",
    "open_store": "sagac.runtime.store",
    "ApprovalRefused": "sagac.runtime.errors",
    "SecretMissing": "sagac.runtime.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sagac' has no attribute {name!r}")
    module, _, attr = module.partition(":")  # "module:attr" when the name differs there
    return getattr(importlib.import_module(module), attr or name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
