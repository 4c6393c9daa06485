"""sagac: declarative YAML sagas, compiled to a plan and run with LIFO compensation.

The public API is what `__all__` lists (documented in docs/api.md); the `sagac` command uses
nothing else (`tests/test_cli_imports.py`). Names load lazily, on first use, so that `sagac
validate` does not pay for the runtime's imports and `sagac --help` imports no library. Coroutine
functions are named `a...` (`arun`, `aresume`); their synchronous twins run their own event loop.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_ERRORS = "sagac.errors"

# name -> "module" or "module:attribute" (when the name differs there)
_EXPORTS = {
    # compile
    "load": "sagac.compiler.pipeline",
    "compile_file": "sagac.compiler.pipeline",
    "compile_text": "sagac.compiler.pipeline",
    "Compilation": "sagac.compiler.pipeline",
    "Plan": "sagac.compiler.plan",
    "Diagnostic": "sagac.compiler.diagnostics",
    "Severity": "sagac.compiler.diagnostics",
    "format_text": "sagac.compiler.formatting",
    "format_json": "sagac.compiler.formatting",
    "format_sarif": "sagac.compiler.formatting",
    "saga_schema": "sagac.compiler.schema",
    "read_limited": "sagac.compiler.loader",
    "read_stream": "sagac.compiler.loader",
    "TooLarge": "sagac.compiler.loader",
    # draw
    "FORMATS": "sagac.compiler.render",
    "render": "sagac.compiler.render",
    "render_report_html": "sagac.compiler.render",
    "overlay_from_events": "sagac.compiler.render",
    "overlay_with_report": "sagac.compiler.render",
    # run
    "run": "sagac.runtime.api",
    "arun": "sagac.runtime.api",
    "validate_input": "sagac.runtime.inputs",
    "new_run_id": "sagac.runtime.clock",
    "RunReport": "sagac.runtime.report",
    "BatchProgress": "sagac.runtime.progress",
    "stop_on_signals": "sagac.runtime.interrupts",
    "Interrupt": "sagac.runtime.interrupts",
    "aclose_clients": "sagac.runtime.actions",
    # durable runs
    "open_store": "sagac.runtime.store",
    "DEFAULT_STORE": "sagac.runtime.store",
    "SQLITE_PREFIX": "sagac.runtime.store",
    "RUN_STATUSES": "sagac.runtime.store.base",
    "Store": "sagac.runtime.store.base",
    "FINAL_STATUSES": "sagac.runtime.resume:FINAL",
    "astart": "sagac.runtime.resume:start",
    "resume": "sagac.runtime.resume:resume_sync",
    "aresume": "sagac.runtime.resume:resume",
    "aresume_all": "sagac.runtime.resume:resume_all",
    "plan_of": "sagac.runtime.resume",
    "cancel": "sagac.runtime.resume:cancel_sync",
    "acancel": "sagac.runtime.resume:cancel",
    "approve": "sagac.runtime.resume:approve",
    "reject": "sagac.runtime.resume:reject",
    "adecide": "sagac.runtime.approvals:decide",
    "apending_approvals": "sagac.runtime.approvals:pending",
    "callback": "sagac.runtime.resume:callback_sync",
    "acallback": "sagac.runtime.callbacks:complete",
    "check_group_name": "sagac.runtime.approvals",
    "check_user_names": "sagac.runtime.approvals",
    "signal": "sagac.runtime.signals:send_sync",
    # API tokens (the HTTP API's bearer tokens)
    "API_SCOPES": "sagac.runtime.auth:SCOPES",
    "ApiToken": "sagac.runtime.store.base",
    "Identity": "sagac.runtime.auth",
    "acreate_api_token": "sagac.runtime.auth:create_token",
    "aauthenticate": "sagac.runtime.auth:authenticate",
    "require_scope": "sagac.runtime.auth:require",
    "asignal": "sagac.runtime.signals:send",
    # workers
    "submit": "sagac.runtime.submit:submit_sync",
    "asubmit": "sagac.runtime.submit:submit",
    "Submitted": "sagac.runtime.submit",
    "arun_worker": "sagac.runtime.worker:run_worker",
    "astuck_runs": "sagac.runtime.stuck:stuck_runs",
    "WorkerInfo": "sagac.runtime.store.base",
    "parse_duration": "sagac.compiler.durations",
    # errors (sagac.errors: the whole tree, light to import)
    "ExitCode": _ERRORS,
    "SagacError": _ERRORS,
    "UsageError": _ERRORS,
    "DefinitionError": _ERRORS,
    "InputError": _ERRORS,
    "StepError": _ERRORS,
    "SecretMissing": _ERRORS,
    "RunNotFound": _ERRORS,
    "DefinitionChanged": _ERRORS,
    "StoreError": _ERRORS,
    "StoreUnavailable": _ERRORS,
    "LeaseHeld": _ERRORS,
    "ApprovalRefused": _ERRORS,
    "CallbackRefused": _ERRORS,
    "SignalRefused": _ERRORS,
    "Unauthenticated": _ERRORS,
    "Forbidden": _ERRORS,
    "UnknownApiToken": _ERRORS,
}

# The same names as _EXPORTS, spelled out for type checkers and linters (a test checks).
__all__ = [
    "API_SCOPES",
    "DEFAULT_STORE",
    "FINAL_STATUSES",
    "FORMATS",
    "RUN_STATUSES",
    "SQLITE_PREFIX",
    "ApiToken",
    "ApprovalRefused",
    "BatchProgress",
    "CallbackRefused",
    "Compilation",
    "DefinitionChanged",
    "DefinitionError",
    "Diagnostic",
    "ExitCode",
    "Forbidden",
    "Identity",
    "InputError",
    "Interrupt",
    "LeaseHeld",
    "Plan",
    "RunNotFound",
    "RunReport",
    "SagacError",
    "SecretMissing",
    "Severity",
    "SignalRefused",
    "StepError",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Submitted",
    "TooLarge",
    "Unauthenticated",
    "UnknownApiToken",
    "UsageError",
    "WorkerInfo",
    "__version__",
    "aauthenticate",
    "acallback",
    "acancel",
    "aclose_clients",
    "acreate_api_token",
    "adecide",
    "apending_approvals",
    "approve",
    "aresume",
    "aresume_all",
    "arun",
    "arun_worker",
    "asignal",
    "astart",
    "astuck_runs",
    "asubmit",
    "callback",
    "cancel",
    "check_group_name",
    "check_user_names",
    "compile_file",
    "compile_text",
    "format_json",
    "format_sarif",
    "format_text",
    "load",
    "new_run_id",
    "open_store",
    "overlay_from_events",
    "overlay_with_report",
    "parse_duration",
    "plan_of",
    "read_limited",
    "read_stream",
    "reject",
    "render",
    "render_report_html",
    "require_scope",
    "resume",
    "run",
    "saga_schema",
    "signal",
    "stop_on_signals",
    "submit",
    "validate_input",
]

if TYPE_CHECKING:  # what mypy sees; at run time `__getattr__` loads each name on first use
    from sagac.compiler.diagnostics import (
        Diagnostic,
        Severity,
    )
    from sagac.compiler.durations import (
        parse_duration,
    )
    from sagac.compiler.formatting import (
        format_json,
        format_sarif,
        format_text,
    )
    from sagac.compiler.loader import (
        TooLarge,
        read_limited,
        read_stream,
    )
    from sagac.compiler.pipeline import (
        Compilation,
        compile_file,
        compile_text,
        load,
    )
    from sagac.compiler.plan import (
        Plan,
    )
    from sagac.compiler.render import (
        FORMATS,
        overlay_from_events,
        overlay_with_report,
        render,
        render_report_html,
    )
    from sagac.compiler.schema import (
        saga_schema,
    )
    from sagac.errors import (
        ApprovalRefused,
        CallbackRefused,
        DefinitionChanged,
        DefinitionError,
        ExitCode,
        Forbidden,
        InputError,
        LeaseHeld,
        RunNotFound,
        SagacError,
        SecretMissing,
        SignalRefused,
        StepError,
        StoreError,
        StoreUnavailable,
        Unauthenticated,
        UnknownApiToken,
        UsageError,
    )
    from sagac.runtime.actions import (
        aclose_clients,
    )
    from sagac.runtime.api import (
        arun,
        run,
    )
    from sagac.runtime.approvals import (
        check_group_name,
        check_user_names,
    )
    from sagac.runtime.approvals import (
        decide as adecide,
    )
    from sagac.runtime.approvals import (
        pending as apending_approvals,
    )
    from sagac.runtime.auth import (
        SCOPES as API_SCOPES,
    )
    from sagac.runtime.auth import (
        Identity,
    )
    from sagac.runtime.auth import (
        authenticate as aauthenticate,
    )
    from sagac.runtime.auth import (
        create_token as acreate_api_token,
    )
    from sagac.runtime.auth import (
        require as require_scope,
    )
    from sagac.runtime.callbacks import (
        complete as acallback,
    )
    from sagac.runtime.clock import (
        new_run_id,
    )
    from sagac.runtime.inputs import (
        validate_input,
    )
    from sagac.runtime.interrupts import (
        Interrupt,
        stop_on_signals,
    )
    from sagac.runtime.progress import (
        BatchProgress,
    )
    from sagac.runtime.report import (
        RunReport,
    )
    from sagac.runtime.resume import (
        FINAL as FINAL_STATUSES,
    )
    from sagac.runtime.resume import (
        approve,
        plan_of,
        reject,
    )
    from sagac.runtime.resume import (
        callback_sync as callback,
    )
    from sagac.runtime.resume import (
        cancel as acancel,
    )
    from sagac.runtime.resume import (
        cancel_sync as cancel,
    )
    from sagac.runtime.resume import (
        resume as aresume,
    )
    from sagac.runtime.resume import (
        resume_all as aresume_all,
    )
    from sagac.runtime.resume import (
        resume_sync as resume,
    )
    from sagac.runtime.resume import (
        start as astart,
    )
    from sagac.runtime.signals import (
        send as asignal,
    )
    from sagac.runtime.signals import (
        send_sync as signal,
    )
    from sagac.runtime.store import (
        DEFAULT_STORE,
        SQLITE_PREFIX,
        open_store,
    )
    from sagac.runtime.store.base import (
        RUN_STATUSES,
        ApiToken,
        Store,
        WorkerInfo,
    )
    from sagac.runtime.stuck import (
        stuck_runs as astuck_runs,
    )
    from sagac.runtime.submit import (
        Submitted,
    )
    from sagac.runtime.submit import (
        submit as asubmit,
    )
    from sagac.runtime.submit import (
        submit_sync as submit,
    )
    from sagac.runtime.worker import (
        run_worker as arun_worker,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sagac' has no attribute {name!r}")
    module, _, attr = module.partition(":")  # "module:attr" when the name differs there
    return getattr(importlib.import_module(module), attr or name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
