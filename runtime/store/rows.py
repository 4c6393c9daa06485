"""Journal rows as Python values, the same for every SQL store: JSON columns, run records and
approval requests.

SQLite and PostgreSQL keep the same tables with the same columns; what a row means is decided
here once, so that both stores read a run or an approval back alike. Plain functions on
already-fetched rows: this module never talks to a database and never sees a secret (what it
is given has been redacted by the executor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagac.runtime import codec

from .base import Approval, RunRecord

dumps = codec.dumps


def loads(text: str | None) -> Any:
    return None if text is None else codec.loads(text)


RUN_COLUMNS = (
    "run_id, saga, version, definition_hash, file, input, status, created_at, updated_at,"
    " report, meta, cancel_requested_at, cancel_by, cancel_reason,"
    " (SELECT key FROM idempotency_keys k WHERE k.run_id = runs.run_id LIMIT 1)"
)


def run_record(r: Sequence[Any]) -> RunRecord:
    """A `RunRecord` from a row of `RUN_COLUMNS`."""
    meta = loads(r[10]) or {}
    for name, value in zip(
        ("cancel_requested_at", "cancel_by", "cancel_reason", "idempotency_key"),
        r[11:],
        strict=True,
    ):
        if value is not None:
            meta[name] = value
    return RunRecord(
        run_id=r[0],
        saga=r[1],
        version=r[2],
        definition_hash=r[3],
        file=r[4],
        input=loads(r[5]),
        status=r[6],
        created_at=r[7],
        updated_at=r[8],
        report=loads(r[9]),
        meta=meta,
    )


APPROVAL_COLUMNS = (
    "run_id, gate, key, message, approvers, context, deadline, deadline_epoch, on_timeout,"
    " token_sha256, definition_hash, status, requested_at, requested_seq, decided_by,"
    " decided_at, comment, value, decision_code"
)
_APPROVAL_NAMES = tuple(n.strip() for n in APPROVAL_COLUMNS.split(","))


def approval_row(r: Sequence[Any]) -> Approval:
    """An approval request (and its decision) from a row of `APPROVAL_COLUMNS`."""
    out = dict(zip(_APPROVAL_NAMES, r, strict=True))
    out["approvers"] = loads(out["approvers"]) or []
    out["context"] = loads(out["context"])
    out["value"] = loads(out["value"])
    return out
