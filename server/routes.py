"""The JSON API under `/api/v1`: one handler per route, each a thin driver over the public
API (`sagac.__all__`), as a CLI command is.

A handler authenticates the caller (`Authorization: Bearer T`, `sagac.runtime.auth`) and checks
the scope it needs before it reads anything else; refusals of either are audited here (`api`,
`refused`, with the route's pattern, never its path: a callback's path holds a token). The
refusals of the operations themselves (decisions, signals, callbacks) are audited by the
runtime, as they are for the CLI. The approver of a decision is the token's user, never a
field of the body. Bodies are read up to `Service.max_body` bytes, and must be JSON objects.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sagac.runtime.store.base import FINISHED_STATUSES, RUN_STATUSES
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import problems
from .problems import HttpProblem

if TYPE_CHECKING:
    from sagac.runtime.auth import Identity

    from sagac import Plan, Store

PREFIX = "/api/v1"
DEFAULT_PAGE = 50
MAX_PAGE = 500
# How often a followed run's journal is read again when nothing new came, and how many quiet
# polls pass between two keep-alive comments.
FOLLOW_POLL = 0.2
KEEPALIVE_POLLS = 75
EVENT_STREAM = "text/event-stream"


@dataclass
class Service:
    """What every handler shares: the store, the sagas it accepts, the body limit."""

    store: Store
    plans: dict[str, Plan]
    max_body: int
    # Set when the server begins to stop: followed event streams end (clients reconnect with
    # Last-Event-ID) instead of holding the shutdown up.
    stopping: bool = False

    async def caller(self, request: Request, scope: str, action: str) -> Identity:
        """The authenticated caller, allowed `scope`; raises Unauthenticated (401) or
        Forbidden (403), each audited as a refused `action` (with the run the path names)."""
        from sagac.runtime.auth import audit_refusal, authenticate, require

        from sagac.errors import Forbidden

        run_id = request.path_params.get("run_id")
        header = request.headers.get("authorization")
        identity = await authenticate(self.store, header, action=action, run_id=run_id)
        try:
            require(identity, scope)
        except Forbidden as refusal:
            gate = request.path_params.get("gate")
            await audit_refusal(self.store, refusal, identity, action, run_id=run_id, gate=gate)
            raise
        return identity


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, default=str), status_code=status, media_type="application/json"
    )


async def _body(request: Request, service: Service) -> dict[str, Any]:
    """The request's JSON object (`{}` when empty); 413 past the limit, 400 when not JSON."""
    limit = service.max_body
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpProblem(413, problems.BODY_TOO_LARGE, f"the body is larger than {limit} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise HttpProblem(
                413, problems.BODY_TOO_LARGE, f"the body is larger than {limit} bytes"
            )
    if not chunks.strip():
        return {}
    try:
        data = orjson.loads(bytes(chunks))
    except orjson.JSONDecodeError:
        raise HttpProblem(400, problems.INVALID_REQUEST, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise HttpProblem(400, problems.INVALID_REQUEST, "the body must be a JSON object")
    return data


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise HttpProblem(400, problems.INVALID_REQUEST, f"`{name}` must be a string")
    return value


# -- sagas and submits -------------------------------------------------------------------------


async def list_sagas(request: Request) -> Response:
    service = _service(request)
    await service.caller(request, "read", "sagas")
    return _json(
        {
            "sagas": [
                {
                    "name": plan.saga,
                    "version": plan.version,
                    "definition_hash": plan.hash,
                    "description": plan.definition.description,
                    "input_schema": plan.definition.input_schema,
                }
                for plan in sorted(service.plans.values(), key=lambda p: p.saga)
            ]
        }
    )


async def submit_run(request: Request) -> Response:
    from sagac import asubmit

    service = _service(request)
    await service.caller(request, "submit", "submit")
    name = request.path_params["name"]
    plan = service.plans.get(name)
    if plan is None:
        raise HttpProblem(404, problems.NOT_FOUND, f"no saga {name!r} is served here")
    body = await _body(request, service)
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= 200):
        raise HttpProblem(400, problems.INVALID_REQUEST, "Idempotency-Key: 1 to 200 characters")
    submitted = await asubmit(plan, body.get("input", {}), store=service.store, idempotency_key=key)
    status = 200 if submitted.existing else 201
    return _json(
        {"run_id": submitted.run_id, "saga": plan.saga, "existing": submitted.existing},
        status,
    )


# -- runs --------------------------------------------------------------------------------------


def _time(request: Request, name: str) -> str | None:
    """A time filter as the store compares it (RFC 3339, UTC, milliseconds)."""
    text = request.query_params.get(name)
    if text is None:
        return None
    from sagac.runtime.clock import parse_rfc3339, rfc3339

    try:
        return rfc3339(parse_rfc3339(text))
    except ValueError:
        raise HttpProblem(
            400, problems.INVALID_REQUEST, f"`{name}` is not an RFC 3339 time: {text!r}"
        ) from None


async def list_runs(request: Request) -> Response:
    service = _service(request)
    await service.caller(request, "read", "runs")
    q = request.query_params
    status = q.get("status")
    if status is not None and status not in RUN_STATUSES:
        raise HttpProblem(
            400, problems.INVALID_REQUEST, f"`status` must be one of {', '.join(RUN_STATUSES)}"
        )
    limit_text = q.get("limit", str(DEFAULT_PAGE))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
        raise HttpProblem(400, problems.INVALID_REQUEST, f"`limit` must be 1 to {MAX_PAGE}")
    limit = int(limit_text)
    cursor = q.get("cursor") or None
    records = await service.store.list_runs(
        saga=q.get("saga"),
        status=status,
        since=_time(request, "since"),
        until=_time(request, "until"),
        before=cursor,
        limit=limit + 1,
    )
    page = records[:limit]
    more = len(records) > limit
    return _json(
        {"runs": [r.summary() for r in page], "next_cursor": page[-1].run_id if more else None}
    )


async def get_run(request: Request) -> Response:
    from sagac import apending_approvals

    service = _service(request)
    await service.caller(request, "read", "show")
    store = service.store
    record = await store.get_run(request.path_params["run_id"])  # RunNotFound: 404
    pending = await apending_approvals(store, record.run_id)
    children = await store.children(record.run_id)
    return _json(
        {
            **record.summary(),
            "input": record.input,
            "report": record.report,
            "steps": await store.steps(record.run_id),
            "pending_approvals": [_approval(row) for row in pending],
            "cancel": _cancel(record),
            "parent": {"run_id": record.parent_run_id, "step": record.parent_step}
            if record.parent_run_id
            else None,
            "children": [
                {"run_id": c.run_id, "saga": c.saga, "status": c.status, "step": c.parent_step}
                for c in children
            ],
        }
    )


def _cancel(record: Any) -> dict[str, Any] | None:
    if not record.meta.get("cancel_requested_at"):
        return None
    return {
        "at": record.meta["cancel_requested_at"],
        "by": record.meta.get("cancel_by"),
        "reason": record.meta.get("cancel_reason"),
    }


def _approval(row: dict[str, Any]) -> dict[str, Any]:
    """An approval row as the API shows it: never a token's hash."""
    keep = (
        "run_id",
        "gate",
        "key",
        "message",
        "approvers",
        "context",
        "deadline",
        "on_timeout",
        "definition_hash",
        "status",
        "requested_at",
        "decided_by",
        "decided_at",
        "comment",
        "value",
    )
    return {k: row.get(k) for k in keep}


async def run_events(request: Request) -> Response:
    service = _service(request)
    await service.caller(request, "read", "events")
    run_id = request.path_params["run_id"]
    record = await service.store.get_run(run_id)  # RunNotFound: 404 before any stream
    after_text = request.query_params.get("after") or request.headers.get("last-event-id") or "0"
    if not after_text.isdigit():
        raise HttpProblem(400, problems.INVALID_REQUEST, "`after` must be an event's seq")
    after = int(after_text)
    if EVENT_STREAM in request.headers.get("accept", ""):
        return StreamingResponse(
            _follow(service, record.run_id, after),
            media_type=EVENT_STREAM,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    events = await service.store.load_events(run_id, after_seq=after)
    return _json({"run_id": run_id, "status": record.status, "events": events})


async def _follow(service: Service, run_id: str, after: int) -> AsyncIterator[str]:
    """Server-sent events: every event after `after`, then the new ones as they are journaled,
    until the run has finished (a last `end` event gives its status) or the server stops."""
    store = service.store
    quiet = 0
    while not service.stopping:
        record = await store.get_run(run_id)  # read first: a final status has all its events
        events = await store.load_events(run_id, after_seq=after)
        for event in events:
            after = event["seq"]
            data = json.dumps(event, default=str)
            yield f"id: {after}\nevent: {event['type']}\ndata: {data}\n\n"
        if record.status in FINISHED_STATUSES:
            yield f"event: end\ndata: {json.dumps({'status': record.status})}\n\n"
            return
        if events:
            quiet = 0
            continue
        quiet += 1
        if quiet % KEEPALIVE_POLLS == 0:
            yield ": keep-alive\n\n"
        await asyncio.sleep(FOLLOW_POLL)


async def cancel_run(request: Request) -> Response:
    from sagac import acancel

    service = _service(request)
    who = await service.caller(request, "cancel", "cancel")
    body = await _body(request, service)
    run_id = request.path_params["run_id"]
    first = await acancel(service.store, run_id, by=who.user, reason=_text(body, "reason"))
    return _json({"run_id": run_id, "cancel_requested": True, "first": first}, 202)


async def send_signal(request: Request) -> Response:
    from sagac import asignal

    service = _service(request)
    who = await service.caller(request, "signal", "signal")
    body = await _body(request, service)
    run_id, name = request.path_params["run_id"], request.path_params["name"]
    signal = await asignal(service.store, run_id, name, body.get("data"), by=who.user)
    return _json(
        {k: signal.get(k) for k in ("signal_id", "run_id", "name", "data", "sent_at", "sent_by")},
        202,
    )


async def complete_callback(request: Request) -> Response:
    from sagac import acallback

    service = _service(request)
    who = await service.caller(request, "callback", "callback")
    body = await _body(request, service)
    token = request.path_params["token"]
    error = _text(body, "error")
    kwargs: dict[str, Any] = {"error": error, "message": _text(body, "message")}
    if "result" in body:
        kwargs["result"] = body["result"]
    elif error is None:
        raise HttpProblem(400, problems.INVALID_REQUEST, "give `result` or `error`")
    row = await acallback(service.store, token, by=who.user, **kwargs)
    keep = ("run_id", "step", "attempt", "outcome", "outcome_at", "outcome_by")
    return _json({k: row.get(k) for k in keep})


# -- approvals ---------------------------------------------------------------------------------


async def list_approvals(request: Request) -> Response:
    from sagac.runtime.approvals import pending_for

    service = _service(request)
    who = await service.caller(request, "approve", "approvals")
    status = request.query_params.get("status", "pending")
    if status != "pending":
        raise HttpProblem(400, problems.INVALID_REQUEST, "only `status=pending` is listed")
    rows = await pending_for(service.store, who.user, who.groups)
    return _json({"approvals": [_approval(row) for row in rows]})


async def decide(request: Request) -> Response:
    from sagac import adecide

    service = _service(request)
    who = await service.caller(request, "approve", "decide")
    body = await _body(request, service)
    decision = body.get("decision")
    if decision not in ("approve", "reject"):
        raise HttpProblem(400, problems.INVALID_REQUEST, '`decision` must be "approve" or "reject"')
    event = await adecide(
        service.store,
        request.path_params["run_id"],
        request.path_params["gate"],
        approved=decision == "approve",
        by=who.user,
        token=None,
        comment=_text(body, "comment"),
        value=body.get("value"),
        groups=who.groups,
        via="api",
    )
    keep = ("run_id", "step", "approved", "by", "decided_at", "comment", "value", "code")
    return _json({k: event.get(k) for k in keep})


async def openapi(request: Request) -> Response:
    from .openapi import document

    return JSONResponse(document())


ROUTES = [
    Route(f"{PREFIX}/openapi.json", openapi, methods=["GET"]),
    Route(f"{PREFIX}/sagas", list_sagas, methods=["GET"]),
    Route(f"{PREFIX}/sagas/{{name}}/runs", submit_run, methods=["POST"]),
    Route(f"{PREFIX}/runs", list_runs, methods=["GET"]),
    Route(f"{PREFIX}/runs/{{run_id}}", get_run, methods=["GET"]),
    Route(f"{PREFIX}/runs/{{run_id}}/events", run_events, methods=["GET"]),
    Route(f"{PREFIX}/runs/{{run_id}}/cancel", cancel_run, methods=["POST"]),
    Route(f"{PREFIX}/runs/{{run_id}}/signals/{{name}}", send_signal, methods=["POST"]),
    Route(f"{PREFIX}/runs/{{run_id}}/gates/{{gate}}/decision", decide, methods=["POST"]),
    Route(f"{PREFIX}/callbacks/{{token}}", complete_callback, methods=["POST"]),
    Route(f"{PREFIX}/approvals", list_approvals, methods=["GET"]),
]
