"""The synchronous front doors (`sagac.run`, `resume`, `cancel`, `approve`, `reject`) are made
from the async ones by one helper: same signature and docstring for `help()`, an event loop of
their own per call, refused inside a running loop without leaving a coroutine un-awaited."""

from __future__ import annotations

import asyncio
import inspect
import warnings
from pathlib import Path

import pytest
from sagac.runtime import api, resume

import sagac

SAGA = """\
saga: sync_twin
version: 1
steps:
  - id: only
    action: {mock: {result: {ok: true}}}
"""


def test_sync_twins_keep_the_async_signature_and_a_docstring() -> None:
    assert inspect.signature(sagac.run) == inspect.signature(sagac.arun)
    assert inspect.signature(api.resume) == inspect.signature(api.aresume)
    assert sagac.run.__name__ == "run" and "synchronous" in (sagac.run.__doc__ or "")
    params = inspect.signature(sagac.cancel).parameters
    assert list(params) == ["run_id", "store", "by", "reason"]
    assert inspect.signature(sagac.resume).return_annotation == "RunReport"
    for twin in (sagac.run, sagac.resume, sagac.cancel, resume.decide_sync):
        assert not inspect.iscoroutinefunction(twin)
        assert twin.__doc__


def test_each_call_runs_in_its_own_loop(tmp_path: Path) -> None:
    saga = tmp_path / "s.yaml"
    saga.write_text(SAGA, encoding="utf-8")
    first, second = sagac.run(saga, {}), sagac.run(saga, {})
    assert first.status == second.status == "succeeded"
    assert first.run_id != second.run_id


def test_a_sync_twin_is_refused_inside_a_running_loop(tmp_path: Path) -> None:
    saga = tmp_path / "s.yaml"
    saga.write_text(SAGA, encoding="utf-8")

    async def inside() -> None:
        with pytest.raises(RuntimeError, match=r"await arun\(\) instead"):
            sagac.run(saga, {})
        with pytest.raises(RuntimeError, match=r"cancel_sync\(\) runs its own event loop"):
            sagac.cancel("r1", store="memory", by="me")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine ... was never awaited"
        asyncio.run(inside())
