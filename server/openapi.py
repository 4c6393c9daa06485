"""The OpenAPI 3.1 document of the API (`GET /api/v1/openapi.json`), written once here: the
tests validate every response they get against the schema of its route and status."""

from __future__ import annotations

import functools
from typing import Any

from sagac.runtime.store.base import RUN_STATUSES

_NULLABLE_TEXT = {"type": ["string", "null"]}
_ANY: dict[str, Any] = {}

_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "code", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
            "detail": {"type": "string"},
            "hint": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Saga": {
        "type": "object",
        "required": ["name", "version", "definition_hash"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "definition_hash": {"type": "string"},
            "description": _NULLABLE_TEXT,
            "input_schema": {"type": ["object", "null"]},
        },
    },
    "Submitted": {
        "type": "object",
        "required": ["run_id", "saga", "existing"],
        "properties": {
            "run_id": {"type": "string"},
            "saga": {"type": "string"},
            "existing": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
    "RunSummary": {
        "type": "object",
        "required": ["run_id", "saga", "version", "status", "created_at", "updated_at"],
        "properties": {
            "run_id": {"type": "string"},
            "saga": {"type": "string"},
            "version": {"type": "integer"},
            "status": {"enum": list(RUN_STATUSES)},
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "definition_hash": {"type": "string"},
            "idempotency_key": _NULLABLE_TEXT,
            "cancel_requested": {"type": "boolean"},
            "parent_run_id": _NULLABLE_TEXT,
        },
    },
    "RunPage": {
        "type": "object",
        "required": ["runs", "next_cursor"],
        "properties": {
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/RunSummary"}},
            "next_cursor": _NULLABLE_TEXT,
        },
        "additionalProperties": False,
    },
    "Approval": {
        "type": "object",
        "required": ["run_id", "gate", "approvers", "status"],
        "properties": {
            "run_id": {"type": "string"},
            "gate": {"type": "string"},
            "key": _NULLABLE_TEXT,
            "message": _NULLABLE_TEXT,
            "approvers": {"type": "array", "items": {"type": "string"}},
            "context": _ANY,
            "deadline": _NULLABLE_TEXT,
            "on_timeout": _NULLABLE_TEXT,
            "definition_hash": {"type": "string"},
            "status": {"type": "string"},
            "requested_at": _NULLABLE_TEXT,
            "decided_by": _NULLABLE_TEXT,
            "decided_at": _NULLABLE_TEXT,
            "comment": _NULLABLE_TEXT,
            "value": _ANY,
        },
        "not": {"required": ["token_sha256"]},
    },
    "Run": {
        "allOf": [{"$ref": "#/components/schemas/RunSummary"}],
        "type": "object",
        "required": ["input", "report", "steps", "pending_approvals", "children"],
        "properties": {
            "input": _ANY,
            "report": {"type": ["object", "null"]},
            "steps": {"type": "array", "items": {"type": "object"}},
            "pending_approvals": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Approval"},
            },
            "cancel": {"type": ["object", "null"]},
            "parent": {"type": ["object", "null"]},
            "children": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Events": {
        "type": "object",
        "required": ["run_id", "status", "events"],
        "properties": {
            "run_id": {"type": "string"},
            "status": {"enum": list(RUN_STATUSES)},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "run_id", "seq", "at"],
                    "properties": {
                        "type": {"type": "string"},
                        "run_id": {"type": "string"},
                        "seq": {"type": "integer"},
                        "at": {"type": "string"},
                    },
                },
            },
        },
    },
    "CancelRequested": {
        "type": "object",
        "required": ["run_id", "cancel_requested", "first"],
        "properties": {
            "run_id": {"type": "string"},
            "cancel_requested": {"const": True},
            "first": {"type": "boolean"},
        },
    },
    "Signal": {
        "type": "object",
        "required": ["signal_id", "run_id", "name", "sent_at", "sent_by"],
        "properties": {
            "signal_id": {"type": "integer"},
            "run_id": {"type": "string"},
            "name": {"type": "string"},
            "data": _ANY,
            "sent_at": {"type": "string"},
            "sent_by": {"type": "string"},
        },
    },
    "Callback": {
        "type": "object",
        "required": ["run_id", "step", "attempt", "outcome"],
        "properties": {
            "run_id": {"type": "string"},
            "step": {"type": "string"},
            "attempt": {"type": "integer"},
            "outcome": {"type": "object"},
            "outcome_at": _NULLABLE_TEXT,
            "outcome_by": _NULLABLE_TEXT,
        },
    },
    "Approvals": {
        "type": "object",
        "required": ["approvals"],
        "properties": {
            "approvals": {"type": "array", "items": {"$ref": "#/components/schemas/Approval"}}
        },
    },
    "Decision": {
        "type": "object",
        "required": ["run_id", "step", "approved", "by", "decided_at"],
        "properties": {
            "run_id": {"type": "string"},
            "step": {"type": "string"},
            "approved": {"type": "boolean"},
            "by": {"type": "string"},
            "decided_at": {"type": "string"},
            "comment": _NULLABLE_TEXT,
            "value": _ANY,
            "code": _NULLABLE_TEXT,
        },
    },
    "Sagas": {
        "type": "object",
        "required": ["sagas"],
        "properties": {"sagas": {"type": "array", "items": {"$ref": "#/components/schemas/Saga"}}},
    },
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(status: int, name: str, description: str) -> dict[str, Any]:
    return {str(status): {"description": description, "content": _content(name)}}


def _content(name: str, media: str = "application/json") -> dict[str, Any]:
    return {media: {"schema": _ref(name)}}


def _refusals(*statuses: int) -> dict[str, Any]:
    words = {
        400: "a malformed request",
        401: "no token, an unknown or revoked one (UNAUTHENTICATED)",
        403: "the token lacks the scope (FORBIDDEN), or its user may not decide the gate",
        404: "no such run, saga or callback token",
        409: "the operation conflicts with the run's state, or a key was reused",
        413: "the body is larger than the limit (BODY_TOO_LARGE)",
        422: "the input or data does not match its schema",
        503: "the store's server cannot be reached (STORE_UNAVAILABLE)",
    }
    return {
        str(s): {
            "description": words[s],
            "content": _content("Problem", "application/problem+json"),
        }
        for s in (400, 401, *statuses, 503)
    }


def _op(
    summary: str, scope: str | None, ok: dict[str, Any], *refusals: int, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": summary,
        "responses": {**ok, **_refusals(*((403,) if scope else ()), *refusals)},
        **extra,
    }
    if scope:
        out["security"] = [{"bearer": []}]
        out["x-sagac-scope"] = scope
    return out


def _path_param(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": False, "content": {"application/json": {"schema": schema}}}


@functools.cache
def document() -> dict[str, Any]:
    from sagac import __version__

    query = [
        {"name": n, "in": "query", "schema": {"type": "string"}}
        for n in ("saga", "status", "since", "until", "cursor")
    ] + [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "sagac", "version": __version__},
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/api/v1/sagas": {"get": _op("the sagas served", "read", _ok(200, "Sagas", "sagas"))},
            "/api/v1/sagas/{name}/runs": {
                "post": _op(
                    "submit a run (Idempotency-Key: the run key)",
                    "submit",
                    {
                        **_ok(201, "Submitted", "a new run"),
                        **_ok(200, "Submitted", "the run this key already made"),
                    },
                    404,
                    409,
                    413,
                    422,
                    parameters=[
                        *_path_param("name"),
                        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
                    ],
                    requestBody=_body({"type": "object", "properties": {"input": _ANY}}),
                )
            },
            "/api/v1/runs": {
                "get": _op(
                    "runs, newest first (cursor: the next_cursor of the previous page)",
                    "read",
                    _ok(200, "RunPage", "a page of runs"),
                    parameters=query,
                )
            },
            "/api/v1/runs/{run_id}": {
                "get": _op(
                    "a run and its report",
                    "read",
                    _ok(200, "Run", "the run"),
                    404,
                    parameters=_path_param("run_id"),
                )
            },
            "/api/v1/runs/{run_id}/events": {
                "get": _op(
                    "a run's events (Accept: text/event-stream follows the run until it ends)",
                    "read",
                    {
                        "200": {
                            "description": "the events",
                            "content": {
                                **_content("Events"),
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        }
                    },
                    404,
                    parameters=[
                        *_path_param("run_id"),
                        {"name": "after", "in": "query", "schema": {"type": "integer"}},
                    ],
                )
            },
            "/api/v1/runs/{run_id}/cancel": {
                "post": _op(
                    "ask a run to stop and compensate",
                    "cancel",
                    _ok(202, "CancelRequested", "recorded"),
                    404,
                    413,
                    parameters=_path_param("run_id"),
                    requestBody=_body({"type": "object", "properties": {"reason": _NULLABLE_TEXT}}),
                )
            },
            "/api/v1/runs/{run_id}/signals/{name}": {
                "post": _op(
                    "send a signal to a run's wait",
                    "signal",
                    _ok(202, "Signal", "kept"),
                    404,
                    409,
                    413,
                    422,
                    parameters=_path_param("run_id", "name"),
                    requestBody=_body({"type": "object", "properties": {"data": _ANY}}),
                )
            },
            "/api/v1/callbacks/{token}": {
                "post": _op(
                    "report a callback step's outcome",
                    "callback",
                    _ok(200, "Callback", "recorded"),
                    404,
                    409,
                    413,
                    parameters=_path_param("token"),
                    requestBody=_body(
                        {
                            "type": "object",
                            "properties": {
                                "result": _ANY,
                                "error": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    ),
                )
            },
            "/api/v1/approvals": {
                "get": _op(
                    "the pending gates the caller may decide",
                    "approve",
                    _ok(200, "Approvals", "pending approvals"),
                    parameters=[{"name": "status", "in": "query", "schema": {"const": "pending"}}],
                )
            },
            "/api/v1/runs/{run_id}/gates/{gate}/decision": {
                "post": _op(
                    "decide a gate as the token's user",
                    "approve",
                    _ok(200, "Decision", "the decision"),
                    404,
                    409,
                    413,
                    parameters=_path_param("run_id", "gate"),
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["decision"],
                                    "properties": {
                                        "decision": {"enum": ["approve", "reject"]},
                                        "comment": _NULLABLE_TEXT,
                                        "value": _ANY,
                                    },
                                }
                            }
                        },
                    },
                )
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "this document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
    }
