"""sagac's HTTP API (`sagac serve`): a Starlette application over the store and public API.

`create_app(store, plans)` builds the ASGI app: the JSON API under `/api/v1` (`routes.py`),
authenticated by bearer tokens (`sagac.runtime.auth`), its errors as `application/problem+json`
(`problems.py`), its OpenAPI document (`openapi.py`). `load_sagas(folder)` compiles the sagas
it accepts submits for (`sagas.py`). The server never executes a run (workers do), never logs
or stores a clear token, and nothing but the `serve` command imports it.
"""

from __future__ import annotations

from .app import create_app
from .sagas import load_sagas

__all__ = ["create_app", "load_sagas"]
