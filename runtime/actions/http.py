"""`http` actions: one HTTP request per attempt, through a pooled `httpx.AsyncClient`.

Request: `method` and `url` from the spec; `headers`; an `Idempotency-Key: <key>` header when the
step has a key (a header of that name in the spec wins). The body is the spec's `json` when it
is given (`json: null` sends no body); otherwise POST, PUT and PATCH (and any other method that
carries a body) send the step's `with` as JSON, while GET, HEAD, DELETE and OPTIONS send no body
and no query string: read `with` through templates instead (`url: ".../{{ args.id }}"`).

Outcome: a status in `ok_status` (or 2xx when it is empty) gives the response's JSON (an empty
body gives null; a body that is not JSON gives `{"status": N, "text": "<first 4 KiB>"}`). A 5xx
or a connection error is `UNAVAILABLE`; any other status is `HTTP_<status>` (redirects are not
followed: a 3xx is an answer, not a hop); running out of the spec's `timeout` (seconds, for the
whole request) is `TIMEOUT`. Without a `timeout` only the executor's per-attempt timeout applies.

Clients: one client per event loop, created on first use, so connections are reused across
steps. Close it with `await aclose_clients()` before the loop ends, or run inside
`async with http_clients():`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sagac.compiler.ir import HttpAction
from sagac.runtime.actions.context import StepContext
from sagac.runtime.errors import StepError

__all__ = ["aclose_clients", "http_clients", "run_http"]

BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
TEXT_LIMIT = 4096  # characters of a non-JSON body kept in the result
EXCERPT_LIMIT = 300  # characters of an error body quoted in a message

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def client() -> httpx.AsyncClient:
    """The running loop's shared client (created on first use)."""
    loop = asyncio.get_running_loop()
    shared = _clients.get(loop)
    if shared is None or shared.is_closed:
        shared = httpx.AsyncClient(
            timeout=None,  # the spec's timeout or the executor's, never httpx's 5 s default
            follow_redirects=False,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        _clients[loop] = shared
    return shared


async def aclose_clients() -> None:
    """Close the running loop's shared client and its connections (safe to call twice)."""
    shared = _clients.pop(asyncio.get_running_loop(), None)
    if shared is not None:
        await shared.aclose()


@asynccontextmanager
async def http_clients() -> AsyncIterator[None]:
    """Scope for a run: http actions inside share connections, closed on the way out."""
    try:
        yield
    finally:
        await aclose_clients()


async def run_http(spec: HttpAction, args: Any, ctx: StepContext) -> Any:
    method = spec.method.upper()
    headers = dict(spec.headers)
    if ctx.idempotency_key is not None and not any(
        name.lower() == "idempotency-key" for name in headers
    ):
        headers["Idempotency-Key"] = ctx.idempotency_key
    body: dict[str, Any] = {}
    if spec.has_json:
        if spec.json_body is not None:
            body["json"] = spec.json_body
    elif method not in BODYLESS:
        body["json"] = {} if args is None else args

    where = _where(method, spec.url)
    timeout = httpx.Timeout(spec.timeout) if spec.timeout is not None else None
    try:
        # asyncio.timeout bounds the whole request; httpx's timeout alone is per phase.
        async with asyncio.timeout(spec.timeout):
            response = await client().request(
                method, spec.url, headers=headers, timeout=timeout, **body
            )
    except (TimeoutError, httpx.TimeoutException):
        limit = f" within {spec.timeout:g}s" if spec.timeout is not None else ""
        raise StepError("TIMEOUT", f"{where}: no answer{limit}") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise StepError("UNEXPECTED", f"{where}: invalid url: {exc}") from None
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise StepError("UNAVAILABLE", f"{where}: {type(exc).__name__}: {reason}") from None

    status = response.status_code
    ok = status in spec.ok_status if spec.ok_status else 200 <= status < 300
    if ok:
        return _result(response)
    excerpt = _excerpt(response.text)
    detail = {"status": status, "body": excerpt}
    message = f"{where} -> {status} {response.reason_phrase}" + (f": {excerpt}" if excerpt else "")
    if status >= 500:
        raise StepError("UNAVAILABLE", message, detail)
    raise StepError(f"HTTP_{status}", message, detail)


def _result(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:  # not JSON, or not decodable text
        return {"status": response.status_code, "text": response.text[:TEXT_LIMIT]}


def _where(method: str, url: str) -> str:
    """`METHOD scheme://host/path`: the query is left out, it may carry credentials."""
    try:
        parsed = httpx.URL(url)
        port = f":{parsed.port}" if parsed.port is not None else ""
        shown = f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"
    except Exception:
        shown = url.split("?", 1)[0]
    return f"{method} {shown}"


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_LIMIT else text[:EXCERPT_LIMIT] + "…"
