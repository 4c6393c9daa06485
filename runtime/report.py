"""The report of a run: one JSON document (spec section 7), as pydantic models.

`RunReport.model_json_schema()` documents the JSON that `sagac run --json` prints and the API
returns. The executor builds the report once, at the end of a run, from its plain-dataclass
state, already in this JSON shape (`shaped`): that dict is what the store keeps and the last
event carries, and one validation makes the model (no dump back to JSON).
`tests/runtime/test_report.py` checks that the dict is what the model dumps. Nothing on the
hot path touches pydantic.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from sagac.errors import ExitCode

RunStatus = Literal[
    "running",
    "waiting_approval",
    "waiting",
    "succeeded",
    "compensated",
    "compensation_failed",
    "failed",
]
# The statuses of a parked run: it waits for a decision, a time, a signal, a callback, a child.
WAITING = frozenset({"waiting_approval", "waiting"})

EXIT_CODES: dict[str, ExitCode] = {
    "succeeded": ExitCode.OK,
    "compensated": ExitCode.FAILED,
    "failed": ExitCode.FAILED,
    "compensation_failed": ExitCode.COMPENSATION_FAILED,
    "waiting_approval": ExitCode.WAITING_APPROVAL,
    "waiting": ExitCode.WAITING_APPROVAL,
    "running": ExitCode.FAILED,
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorInfo(_Model):
    """One error: where it came from (`step`, `branch` = "<group>/<index>", `item_index` in a
    foreach) and what it was."""

    step: str | None = Field(None, description="The node that failed (null: the saga itself)")
    branch: str | None = Field(None, description='Innermost group branch, "<group>/<index>"')
    item_index: int | None = Field(None, description="Index of the foreach item")
    code: str
    message: str = ""
    detail: Any = None
    phase: Literal["run", "compensation", "on_failure"] = "run"


class Failure(_Model):
    """Why the run failed: the first error that failed it for good."""

    step: str | None = None
    branch: str | None = None
    item_index: int | None = None
    code: str
    message: str = ""
    attempts: int = 0
    detail: Any = None


class CompensationInfo(_Model):
    step: str
    item_index: int | None = None
    status: Literal["ok", "failed", "not_run"]
    attempts: int = 0
    error: ErrorInfo | None = None


class WaitingGate(_Model):
    """An approval gate the run waits at: what a program needs to route the decision."""

    id: str = Field(description="The gate's id (`--gate ID`)")
    key: str | None = Field(None, description="The gate's rendered key")
    message: str | None = Field(None, description="The rendered message for the decider")
    approvers: list[str] = Field(default_factory=list, description='Names and "group:NAME"')
    deadline: str | None = Field(None, description="RFC 3339 UTC; null: no timeout")
    token: str | None = Field(
        None,
        description="The single-use token (`--token T`), only in the output of the run or "
        "resume that reached the gate; null in stored reports and later outputs",
    )


class ParkedNode(_Model):
    """A sleep, wait, callback or call the run is parked on (gates are in `waiting`)."""

    id: str
    kind: Literal["sleep", "wait", "callback", "call"]
    due: str | None = Field(
        None, description="RFC 3339 UTC: a sleep's due time, or the timeout's deadline"
    )
    signal: str | None = Field(None, description="The signal a `wait` waits for")


class RunReport(_Model):
    """What a run did and how it ended."""

    run_id: str
    saga: str
    version: int
    status: RunStatus
    failure: Failure | None = None
    errors: list[ErrorInfo] = Field(default_factory=list)
    compensations: list[CompensationInfo] = Field(
        default_factory=list, description="In the order they ran"
    )
    needs_attention: list[str] = Field(
        default_factory=list, description="Steps whose compensation failed or never ran"
    )
    output: Any = None
    duration_ms: int = 0
    started_at: str = Field(description="RFC 3339 UTC")
    finished_at: str | None = Field(None, description="RFC 3339 UTC; null while waiting")
    definition_hash: str
    waiting: list[WaitingGate] = Field(
        default_factory=list,
        description="The gates the run waits at; in the JSON only when status is waiting_approval",
    )
    parked: list[ParkedNode] = Field(
        default_factory=list,
        description="The other nodes a waiting run is parked on; in the JSON only when there"
        " are some",
    )

    # Clear approval tokens of the gates this run just reached (gate id -> token): handed to
    # the caller once, never serialised, stored or journaled (the journal keeps a sha256).
    _approval_tokens: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def approval_tokens(self) -> dict[str, str]:
        return self._approval_tokens

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def to_json_dict(self, tokens: bool = False) -> dict[str, Any]:
        """The report as JSON data; with `tokens`, each waiting gate carries the clear token
        this process got for it (for the caller's output only: never store that form)."""
        data = self.model_dump(mode="json")
        if not data["parked"]:
            del data["parked"]
        if not data["waiting"]:
            del data["waiting"]  # only a waiting run has gates to show
        elif tokens:
            for gate in data["waiting"]:
                gate["token"] = self._approval_tokens.get(gate["id"])
        return data


_SHAPES: dict[type[BaseModel], tuple[tuple[str, Any], ...]] = {}


def shaped(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """`data` as `model`'s JSON: exactly its fields, in their order, missing ones at their
    default (the nested models here have no default factories)."""
    fields = _SHAPES.get(model)
    if fields is None:
        fields = _SHAPES[model] = tuple(
            (name, info.get_default(call_default_factory=True))
            for name, info in model.model_fields.items()
        )
    return {name: data.get(name, default) for name, default in fields}
