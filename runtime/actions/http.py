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

The body is streamed and read up to `READ_LIMIT` (8 MiB, after gzip/deflate decoding, with or
without a Content-Length): a longer one fails the attempt with RESULT_TOO_LARGE as soon as the
limit is passed, and the connection is closed. Of an error response only the first 16 KiB are
read, to quote them.

Clients: one client per event loop, created on first use, so connections are reused across
steps. Close it with `await aclose_clients()` before the loop ends, or run inside
`async with sagac.runtime.actions.http_clients():`.
"""

from __future__ import annotations

import asyncio
import json
import weakref
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
from sagac.compiler.ir import HttpAction
from sagac.runtime.actions.context import StepContext
from sagac.runtime.actions.limits import READ_LIMIT, too_large

from sagac.errors import StepError

__all__ = ["aclose_clients", "run_http"]

BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
TEXT_LIMIT = 4096  # characters of a non-JSON body kept in the result
EXCERPT_LIMIT = 300  # characters of an error body quoted in a message
ERROR_READ = 16 * 1024  # bytes of an error body read (the rest is never downloaded)

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
        async with (
            asyncio.timeout(spec.timeout),
            client().stream(method, spec.url, headers=headers, timeout=timeout, **body) as response,
        ):
            status = response.status_code
            ok = status in spec.ok_status if spec.ok_status else 200 <= status < 300
            # An error's body is only quoted: its first KB are enough.
            content = await read_body(response, READ_LIMIT if ok else ERROR_READ, strict=ok)
    except (TimeoutError, httpx.TimeoutException):
        limit = f" within {spec.timeout:g}s" if spec.timeout is not None else ""
        raise StepError("TIMEOUT", f"{where}: no answer{limit}") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise StepError("UNEXPECTED", f"{where}: invalid url: {exc}") from None
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise StepError("UNAVAILABLE", f"{where}: {type(exc).__name__}: {reason}") from None

    except httpx.DecodingError as exc:
        raise StepError("UNAVAILABLE", f"{where}: cannot decode the response: {exc}") from None
    if content is None:
        raise too_large(
            f"{where}: the response body",
            "ask the service for less (a page, a filter), then `keep:` what later steps need",
        )
    if ok:
        return _result(response, content)
    excerpt = _excerpt(_text(response, content))
    detail = {"status": status, "body": excerpt}
    message = f"{where} -> {status} {response.reason_phrase}" + (f": {excerpt}" if excerpt else "")
    if status >= 500:
        raise StepError("UNAVAILABLE", message, detail)
    raise StepError(f"HTTP_{status}", message, detail)


async def read_body(response: httpx.Response, limit: int, *, strict: bool = True) -> bytes | None:
    """The (decoded) body, read as it arrives and never past `limit` bytes: None when it is
    longer (`strict`), else its first `limit` bytes. A declared Content-Length over the limit
    fails before anything is read; gzip and deflate are inflated 64 KiB at a time (a small
    compressed chunk may stand for gigabytes)."""
    declared = response.headers.get("content-length", "")
    if strict and declared.isdigit() and int(declared) > limit:
        return None
    encoding = response.headers.get("content-encoding", "").strip().lower()
    inflater = _inflater(encoding)
    chunks = response.aiter_raw() if inflater is not None else response.aiter_bytes()
    out = bytearray()
    async for chunk in chunks:
        for piece in [chunk] if inflater is None else _inflate(inflater, chunk):
            out += piece
            if len(out) > limit:
                return None if strict else bytes(out[:limit])
    return bytes(out)


INFLATE_PIECE = 64 * 1024


def _inflater(encoding: str) -> Any:
    """A decompressor for gzip and deflate; None for identity and the encodings httpx decodes
    itself (br, zstd: only asked for when their packages are installed)."""
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)
    if encoding == "deflate":
        return _Deflate()
    return None


def _inflate(d: Any, chunk: bytes) -> Iterator[bytes]:
    """`chunk` inflated in pieces of at most INFLATE_PIECE bytes, each made when asked for."""
    while chunk:
        try:
            yield d.decompress(chunk, INFLATE_PIECE)
        except zlib.error as exc:
            raise httpx.DecodingError(str(exc)) from None
        chunk = d.unconsumed_tail


class _Deflate:
    """`deflate` as servers send it: zlib-wrapped, or (wrongly, but often) raw."""

    def __init__(self) -> None:
        self.d: Any = zlib.decompressobj()
        self.first = True

    @property
    def unconsumed_tail(self) -> bytes:
        tail: bytes = self.d.unconsumed_tail
        return tail

    def decompress(self, chunk: bytes, most: int) -> bytes:
        if self.first:
            self.first = False
            try:
                return bytes(self.d.decompress(chunk, most))
            except zlib.error:
                self.d = zlib.decompressobj(-zlib.MAX_WBITS)
        return bytes(self.d.decompress(chunk, most))


def _text(response: httpx.Response, content: bytes) -> str:
    return content.decode(response.charset_encoding or "utf-8", errors="replace")


def _result(response: httpx.Response, content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:  # not JSON, or not decodable text
        return {"status": response.status_code, "text": _text(response, content)[:TEXT_LIMIT]}


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
