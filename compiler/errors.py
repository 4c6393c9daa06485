"""A re-export shim: the exception tree lives in `sagac.errors` (issue 11).

Kept only while other modules still import `sagac.compiler.errors`; new code imports
`sagac.errors`. The lead deletes this shim once every import is rewritten. The compiler never
imports the runtime.
"""

from __future__ import annotations

from sagac.errors import DefinitionError, InputError, SagacError, UsageError

__all__ = ["DefinitionError", "InputError", "SagacError", "UsageError"]
