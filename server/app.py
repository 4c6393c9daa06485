"""The ASGI application: routes, the store's lifetime, and the error handlers.

The store is opened by the caller (`sagac serve`) and closed when the app shuts down. Every
error becomes a problem document (`problems.py`): a `SagacError` by its class, an HTTP error
(no route, wrong method) by its status, anything else as a bare 500.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from sagac.errors import SagacError

from . import problems
from .routes import ROUTES, Service

if TYPE_CHECKING:
    from sagac import Plan, Store

# A request body larger than this is refused (413) before it is read in full.
MAX_BODY = 1024 * 1024


def create_app(
    store: Store, plans: Mapping[str, Plan], *, max_body: int = MAX_BODY, close_store: bool = True
) -> Starlette:
    """The API over `store` (closed at shutdown when `close_store`), accepting submits of the
    sagas in `plans` (name -> plan)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if close_store:
                await store.close()

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={
            SagacError: _sagac_error,
            HTTPException: _http_error,
            Exception: _internal,
        },
    )
    app.state.service = Service(store, dict(plans), max_body)
    return app


async def _sagac_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SagacError)
    return problems.from_error(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes: dict[int, Any] = {404: problems.NOT_FOUND, 405: problems.METHOD_NOT_ALLOWED}
    code = codes.get(exc.status_code, problems.INVALID_REQUEST)
    message = {404: "no such resource", 405: "method not allowed here"}.get(
        exc.status_code, "invalid request"
    )
    return problems.problem(exc.status_code, code, message)


async def _internal(request: Request, exc: Exception) -> Response:
    return problems.internal(exc)
