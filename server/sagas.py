"""The sagas a server accepts submits for: every `*.yaml` and `*.yml` of one folder, compiled
once at start. A folder with a saga that does not compile, or two sagas of one name, stops
the server before it listens (the diagnostics name the file and line)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sagac.errors import UsageError

if TYPE_CHECKING:
    from sagac import Plan


def load_sagas(folder: Path | None) -> dict[str, Plan]:
    """Saga name -> compiled plan, for the files directly in `folder` (None: no sagas)."""
    if folder is None:
        return {}
    from sagac import load

    if not folder.is_dir():
        raise UsageError(f"--sagas {folder}: not a folder", hint="give the folder of saga files")
    plans: dict[str, Plan] = {}
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    for path in files:
        plan = load(path)  # DefinitionError (exit 65) with every diagnostic
        if plan.saga in plans:
            raise UsageError(
                f"{path}: saga {plan.saga!r} is also defined in {plans[plan.saga].file}",
                hint="a saga's name must be unique in the --sagas folder",
            )
        plans[plan.saga] = plan
    return plans
