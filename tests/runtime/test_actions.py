"""Actions against the real thing: python modules, a loopback HTTP server, subprocesses."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sagac.compiler.ir import CommandAction, HttpAction, MockAction, PythonAction
from sagac.runtime.actions import (
    StepContext,
    aclose_clients,
    calls_in_thread,
    http_clients,
    immediate_action,
    invoke,
    render_spec,
    runs_in_thread,
    spec_templates,
)
from sagac.runtime.actions import command as command_module
from sagac.runtime.actions import http as http_module
from sagac.runtime.templates import TemplateEngine

from sagac.errors import StepError

pytestmark = pytest.mark.anyio

if TYPE_CHECKING:
    from .conftest import LoopbackServer

HELPERS = Path(__file__).parent / "helpers"


def ctx(**changes: Any) -> StepContext:
    fields: dict[str, Any] = {
        "run_id": "run_1",
        "saga": "checkout",
        "step_id": "charge",
        "attempt": 1,
        "idempotency_key": "order-7-charge",
        "deadline": None,
        "base_dir": HELPERS,
    }
    return StepContext(**{**fields, **changes})


async def fails(spec: Any, args: Any = None, context: StepContext | None = None) -> StepError:
    with pytest.raises(StepError) as info:
        await invoke(spec, args, context or ctx())
    return info.value


@pytest.fixture
async def server(http_server: LoopbackServer) -> AsyncIterator[LoopbackServer]:
    """The loopback server, with this test's pooled http connections closed afterwards."""
    async with http_clients():
        yield http_server


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (killed, waiting for a reaper) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def gone_soon(pid: int, within: float = 2.0) -> bool:
    """A signalled grandchild dies asynchronously (nobody waits for it): poll briefly."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# -- python ----------------------------------------------------------------------------------


async def test_python_sync_action_gets_args_as_keywords() -> None:
    assert await invoke(PythonAction(target="pyactions:add"), {"a": 2, "b": 3}, ctx()) == {"sum": 5}


async def test_python_sync_action_runs_in_a_thread_and_the_loop_keeps_going() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        result = await invoke(PythonAction(target="pyactions:sleepy"), {"seconds": 0.3}, ctx())
    finally:
        task.cancel()
    assert result["thread"] != threading.get_ident()
    assert ticks >= 10, f"the loop was blocked: only {ticks} ticks in 0.3 s"


async def test_python_async_action_is_awaited_on_the_loop() -> None:
    result = await invoke(PythonAction(target="pyactions:async_add"), {"a": 1, "b": 2}, ctx())
    assert result == {"sum": 3, "thread": threading.get_ident()}


async def test_python_object_with_async_call_is_awaited() -> None:
    spec = PythonAction(target="pyactions:greet")
    assert await invoke(spec, {"name": "ada"}, ctx()) == "hello ada"
    assert runs_in_thread(spec, HELPERS) is False


async def test_runs_in_thread_is_known_after_the_first_call(tmp_path: Path) -> None:
    (tmp_path / "thread_probe.py").write_text("def f():\n    return 1\n")
    spec = PythonAction(target="thread_probe:f")
    assert runs_in_thread(spec, tmp_path) is None
    await invoke(spec, {}, ctx(base_dir=tmp_path))
    assert runs_in_thread(spec, tmp_path) is True


async def test_calls_in_thread_is_read_from_the_callable_before_its_first_call(
    tmp_path: Path,
) -> None:
    # Not imported by anyone yet: deciding imports the module (never a guess).
    (tmp_path / "kinds_probe.py").write_text(
        "import functools\n"
        "async def a(x): return x\n"
        "def s(x): return x\n"
        "pa = functools.partial(a, x=1)\n"
        "ps = functools.partial(s, x=1)\n"
        "class AsyncCall:\n"
        "    async def __call__(self): return 1\n"
        "class SyncCall:\n"
        "    def __call__(self): return 1\n"
        "ac = AsyncCall()\n"
        "sc = SyncCall()\n"
        "pac = functools.partial(ac)\n"
    )
    assert "kinds_probe" not in sys.modules
    kinds = {
        name: await calls_in_thread(PythonAction(target=f"kinds_probe:{name}"), tmp_path)
        for name in ("a", "s", "pa", "ps", "ac", "sc", "pac", "AsyncCall")
    }
    assert kinds == {
        "a": False,
        "s": True,
        "pa": False,
        "ps": True,
        "ac": False,
        "sc": True,
        "pac": False,
        "AsyncCall": True,  # calling the class makes an instance: a sync call
    }
    with pytest.raises(StepError, match="no module named"):
        await calls_in_thread(PythonAction(target="kinds_probe_missing:f"), tmp_path)


async def test_python_context_parameter_receives_the_step_context() -> None:
    result = await invoke(
        PythonAction(target="pyactions:with_context"),
        {"order_id": "o7"},
        ctx(attempt=2, step_id="pay"),
    )
    assert result == {
        "order_id": "o7",
        "run_id": "run_1",
        "step_id": "pay",
        "attempt": 2,
        "key": "order-7-charge",
    }


async def test_python_context_is_reserved_as_an_argument_name() -> None:
    error = await fails(
        PythonAction(target="pyactions:with_context"), {"order_id": 1, "context": 2}
    )
    assert error.code == "UNEXPECTED" and "reserved" in error.message


async def test_python_raised_step_error_keeps_code_message_and_detail() -> None:
    error = await fails(PythonAction(target="pyactions:declined"), {"amount": 12})
    assert (error.code, error.message, error.detail) == (
        "PAYMENT_DECLINED",
        "card declined for 12",
        {"amount": 12},
    )


async def test_python_returned_step_error_is_an_error_result() -> None:
    error = await fails(PythonAction(target="pyactions:declined_result"), {"amount": 1})
    assert (error.code, error.message) == ("PAYMENT_DECLINED", "declined as a result")


async def test_python_step_error_detail_that_is_not_json_becomes_its_repr() -> None:
    error = await fails(PythonAction(target="pyactions:odd_detail"), {})
    assert error.code == "ODD" and isinstance(error.detail, str) and "object" in error.detail


async def test_python_other_exception_is_unexpected_with_type_and_place() -> None:
    error = await fails(PythonAction(target="pyactions:broken"), {})
    assert error.code == "UNEXPECTED"
    assert error.message == "ZeroDivisionError: division by zero"
    assert error.detail["exception"] == "ZeroDivisionError"
    assert "pyactions.py" in error.detail["at"]


async def test_python_sys_exit_does_not_stop_the_runtime() -> None:
    error = await fails(PythonAction(target="pyactions:exits"), {})
    assert error.code == "UNEXPECTED" and error.message.startswith("SystemExit")


async def test_python_stop_iteration_is_unexpected_not_a_hang() -> None:
    error = await fails(PythonAction(target="pyactions:stops"), {})
    assert error.code == "UNEXPECTED" and "out of items" in error.message


def test_python_abandoned_sync_call_does_not_hold_up_the_end_of_the_loop() -> None:
    async def run() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await invoke(PythonAction(target="pyactions:sleepy"), {"seconds": 3}, ctx())

    started = time.monotonic()
    asyncio.run(run())
    assert time.monotonic() - started < 1.5


async def test_python_arguments_that_do_not_fit_the_signature() -> None:
    error = await fails(PythonAction(target="pyactions:add"), {"a": 1, "bogus": 2})
    assert error.code == "UNEXPECTED"
    assert "pyactions:add" in error.message
    assert "got an unexpected keyword argument 'bogus'" in error.message
    missing = await fails(PythonAction(target="pyactions:add"), {"b": 1})
    assert "missing a required argument: 'a'" in missing.message


async def test_python_with_must_be_a_mapping() -> None:
    error = await fails(PythonAction(target="pyactions:add"), [1, 2])
    assert error.code == "UNEXPECTED" and "mapping" in error.message


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("no_such_module_here:run", "no module named 'no_such_module_here'"),
        ("pyactions:missing", "has no attribute 'missing'"),
        ("pyactions:not_callable", "int is not callable"),
        ("pyactions", "expected 'package.module:function'"),
    ],
)
async def test_python_unresolvable_target_names_it(target: str, expected: str) -> None:
    error = await fails(PythonAction(target=target), {})
    assert error.code == "UNEXPECTED"
    assert target in error.message and expected in error.message


async def test_python_module_failing_at_import_is_unexpected(tmp_path: Path) -> None:
    (tmp_path / "explodes_on_import.py").write_text("import json\nraise RuntimeError('boom')\n")
    error = await fails(PythonAction(target="explodes_on_import:run"), {}, ctx(base_dir=tmp_path))
    assert error.code == "UNEXPECTED"
    assert "explodes_on_import" in error.message and "RuntimeError: boom" in error.message


async def test_python_module_imports_from_base_dir_which_is_added_once(tmp_path: Path) -> None:
    package = tmp_path / "shop_for_base_dir_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "orders.py").write_text("def make(n):\n    return {'id': f'ord_{n}'}\n")
    spec = PythonAction(target="shop_for_base_dir_test.orders:make")
    for n in range(3):
        assert await invoke(spec, {"n": n}, ctx(base_dir=tmp_path)) == {"id": f"ord_{n}"}
    assert sys.path.count(str(tmp_path.resolve())) == 1


@pytest.mark.parametrize("target", ["pyactions:not_json", "pyactions:nan"])
async def test_python_result_that_is_not_json_is_unexpected(target: str) -> None:
    error = await fails(PythonAction(target=target), {})
    assert error.code == "UNEXPECTED" and "not JSON data" in error.message


async def test_python_result_is_normalised_to_what_a_journal_holds() -> None:
    result = await invoke(PythonAction(target="pyactions:tuples"), {}, ctx())
    assert result == {"pair": [1, 2], "3": "int key"}


async def test_python_async_action_is_cancelled_at_once_and_cleans_up() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await invoke(PythonAction(target="pyactions:forever"), {}, ctx())
    assert time.monotonic() - started < 1
    from pyactions import calls  # type: ignore[import-not-found]  # invoke put helpers/ on the path

    assert {"forever": "cleaned up"} in calls


# -- http ------------------------------------------------------------------------------------


async def test_http_post_sends_with_as_json_and_returns_the_response_json(
    server: LoopbackServer,
) -> None:
    server.route("POST", "/reservations", server.Reply(201, {"lease_id": "L1"}))
    spec = HttpAction(url=server.url("/reservations"))
    result = await invoke(spec, {"sku": "A", "qty": 2}, ctx())
    assert result == {"lease_id": "L1"}
    (request,) = server.requests
    assert request.json == {"sku": "A", "qty": 2}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "order-7-charge"


async def test_http_no_idempotency_key_header_without_a_key(server: LoopbackServer) -> None:
    server.route("POST", "/x", server.Reply(200, {}))
    await invoke(HttpAction(url=server.url("/x")), {}, ctx(idempotency_key=None))
    assert "idempotency-key" not in server.requests[0].headers


async def test_http_idempotency_key_from_spec_headers_wins(server: LoopbackServer) -> None:
    server.route("POST", "/x", server.Reply(200, {}))
    spec = HttpAction(url=server.url("/x"), headers={"idempotency-key": "mine"})
    await invoke(spec, {}, ctx())
    assert server.requests[0].headers["idempotency-key"] == "mine"


async def test_http_bodyless_method_with_templated_url(server: LoopbackServer) -> None:
    server.route("DELETE", "/reservations/L9", server.Reply(204))
    spec = HttpAction(
        method="DELETE",
        url=server.base_url + "/reservations/{{ args.lease_id }}",
        headers={"Authorization": "Bearer {{ secrets.API_TOKEN }}", "X-Run": "{{ run.id }}"},
    )
    engine = TemplateEngine({"API_TOKEN": "tok_secret"})
    args = {"lease_id": "L9"}
    overrides = render_spec(spec, args, {"run": {"id": "run_1"}}, engine)
    result = await invoke(spec, args, ctx(), rendered_spec=overrides)
    assert result is None  # 204, empty body
    (request,) = server.requests
    assert request.path == "/reservations/L9" and request.body == b"" and request.query == {}
    assert request.headers["authorization"] == "Bearer tok_secret"
    assert request.headers["x-run"] == "run_1"


async def test_http_json_in_the_spec_is_the_body_instead_of_with(server: LoopbackServer) -> None:
    server.route("PUT", "/leases", lambda req: server.Reply(200, {"got": req.json}))
    spec = HttpAction.model_validate(
        {
            "method": "PUT",
            "url": server.url("/leases"),
            "json": {"lease": "{{ args.lease_id }}", "qty": "{{ args.qty }}", "fixed": 1},
            "has_json": True,
        }
    )
    args = {"lease_id": "L2", "qty": 3, "ignored": True}
    overrides = render_spec(spec, args, {}, TemplateEngine())
    assert await invoke(spec, args, ctx(), rendered_spec=overrides) == {
        "got": {"lease": "L2", "qty": 3, "fixed": 1}
    }


async def test_http_json_null_sends_no_body(server: LoopbackServer) -> None:
    server.route("POST", "/ping", server.Reply(200, {"pong": True}))
    spec = HttpAction.model_validate({"url": server.url("/ping"), "json": None, "has_json": True})
    assert await invoke(spec, {"not": "sent"}, ctx()) == {"pong": True}
    assert server.requests[0].body == b""


async def test_http_non_json_body_is_wrapped(server: LoopbackServer) -> None:
    server.route("GET", "/text", server.Reply(200, body="plain words"))
    result = await invoke(HttpAction(method="GET", url=server.url("/text")), {}, ctx())
    assert result == {"status": 200, "text": "plain words"}


async def test_http_4xx_is_http_status_with_a_body_excerpt(server: LoopbackServer) -> None:
    server.route("POST", "/orders", server.Reply(404, {"error": "no such order"}))
    error = await fails(HttpAction(url=server.url("/orders") + "?token=hidden"), {})
    assert error.code == "HTTP_404"
    assert "no such order" in error.message and "/orders" in error.message
    assert "hidden" not in error.message  # the query may carry credentials
    assert error.detail["status"] == 404


async def test_http_5xx_is_unavailable(server: LoopbackServer) -> None:
    server.route("POST", "/orders", server.Reply(500, body="database on fire"))
    error = await fails(HttpAction(url=server.url("/orders")), {})
    assert error.code == "UNAVAILABLE"
    assert "500" in error.message and "database on fire" in error.message


async def test_http_connection_refused_is_unavailable() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await fails(HttpAction(url=f"http://127.0.0.1:{port}/x"), {})
    assert error.code == "UNAVAILABLE" and "ConnectError" in error.message


async def test_http_slow_server_is_a_timeout_within_the_spec_timeout(
    server: LoopbackServer,
) -> None:
    server.route("POST", "/slow", server.Reply(200, {}, delay=1.5))
    started = time.monotonic()
    error = await fails(HttpAction(url=server.url("/slow"), timeout=0.2), {})
    assert error.code == "TIMEOUT"
    assert time.monotonic() - started < 1.0


async def test_http_ok_status_decides_success(server: LoopbackServer) -> None:
    server.route("GET", "/gone", server.Reply(404, {"state": "already deleted"}))
    server.route("GET", "/plain-ok", server.Reply(200, {}))
    gone = HttpAction(method="GET", url=server.url("/gone"), ok_status=(200, 404))
    assert await invoke(gone, {}, ctx()) == {"state": "already deleted"}
    only_201 = HttpAction(method="GET", url=server.url("/plain-ok"), ok_status=(201,))
    assert (await fails(only_201, {})).code == "HTTP_200"


async def test_http_connections_are_pooled_and_closed(server: LoopbackServer) -> None:
    server.route("POST", "/x", server.Reply(200, {}))
    async with http_clients():
        for _ in range(3):
            await invoke(HttpAction(url=server.url("/x")), {}, ctx())
        shared = http_module.client()
    assert len({r.client_port for r in server.requests}) == 1
    assert shared.is_closed
    await aclose_clients()  # closing twice is harmless


async def test_http_cancellation_propagates_promptly(server: LoopbackServer) -> None:
    server.route("POST", "/slow", server.Reply(200, {}, delay=2.0))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await invoke(HttpAction(url=server.url("/slow")), {}, ctx())
    assert time.monotonic() - started < 1.0
    await aclose_clients()


async def test_http_invalid_url_is_unexpected() -> None:
    error = await fails(HttpAction(url="ftp://127.0.0.1/file"), {})
    assert error.code == "UNEXPECTED"


# -- command ---------------------------------------------------------------------------------


def python_command(script: str, *extra: str) -> CommandAction:
    return CommandAction(argv=(sys.executable, str(HELPERS / script), *extra))


async def test_command_json_stdout_stdin_env_and_cwd(tmp_path: Path) -> None:
    spec = python_command("echo_json.py", "--order", "$(rm -rf /); echo")
    result = await invoke(spec, {"order_id": "o7", "n": [1, 2]}, ctx(base_dir=tmp_path, attempt=3))
    assert result["stdin"] == {"order_id": "o7", "n": [1, 2]}
    assert result["argv"] == ["--order", "$(rm -rf /); echo"]  # never a shell
    assert Path(result["cwd"]) == tmp_path
    assert result["env"] == {
        "SAGAC_IDEMPOTENCY_KEY": "order-7-charge",
        "SAGAC_RUN_ID": "run_1",
        "SAGAC_SAGA": "checkout",
        "SAGAC_STEP_ID": "charge",
        "SAGAC_ATTEMPT": "3",
        "SAGAC_COMPENSATION": "0",
    }


async def test_command_plain_stdout_is_wrapped() -> None:
    assert await invoke(python_command("plain_text.py"), {}, ctx()) == {
        "stdout": "shipped 3 parcels\n"
    }


async def test_command_empty_stdout_is_null() -> None:
    spec = CommandAction(argv=(sys.executable, "-c", "pass"))
    assert await invoke(spec, {}, ctx()) is None


async def test_command_non_zero_exit_reports_code_and_stderr_tail() -> None:
    error = await fails(python_command("fail.py", "7"), {})
    assert error.code == "COMMAND_FAILED"
    assert "exit 7" in error.message and "the warehouse is closed" in error.message
    assert error.detail["exit_code"] == 7
    tail = error.detail["stderr_tail"]
    assert tail.rstrip().endswith("fatal: the warehouse is closed")
    assert "noise line 0\n" not in tail and len(tail) <= command_module.STDERR_TAIL + 1


async def test_command_executable_not_found() -> None:
    error = await fails(CommandAction(argv=("./bin/does-not-exist",)), {})
    assert error.code == "COMMAND_FAILED"
    assert "executable not found: ./bin/does-not-exist" in error.message


async def test_command_relative_argv0_resolves_against_base_dir(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "notify"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    script.chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    spec = CommandAction(argv=("./bin/notify", "--order", "{{ args.order_id }}"))
    overrides = render_spec(spec, {"order_id": 42}, {}, TemplateEngine())
    assert overrides == {"argv": ("./bin/notify", "--order", "42")}
    result = await invoke(spec, {}, ctx(base_dir=tmp_path), rendered_spec=overrides)
    assert result == ["--order", "42"]


async def test_command_cancellation_kills_the_process_and_its_children(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids.json"
    spec = python_command("sleeper.py", str(pids_file))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            task = asyncio.ensure_future(invoke(spec, {}, ctx()))
            while not pids_file.exists() or not pids_file.read_text():
                await asyncio.sleep(0.02)
            await task
    pids = json.loads(pids_file.read_text())
    assert not alive(pids["pid"])  # the command itself is reaped before invoke returns
    assert await gone_soon(pids["child"])


async def test_command_ignoring_sigterm_is_killed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command_module, "KILL_GRACE", 0.3)
    pids_file = tmp_path / "pids.json"
    spec = python_command("sleeper.py", str(pids_file), "stubborn")
    task = asyncio.ensure_future(invoke(spec, {}, ctx()))
    while not pids_file.exists() or not pids_file.read_text():
        await asyncio.sleep(0.02)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0.25 <= time.monotonic() - started < 2
    pids = json.loads(pids_file.read_text())
    assert not alive(pids["pid"])  # the command itself is reaped before invoke returns
    assert await gone_soon(pids["child"])


async def test_command_argv_template_must_render_to_text() -> None:
    spec = CommandAction(argv=("echo", "{{ args.items }}"))
    with pytest.raises(StepError) as info:
        render_spec(spec, {"items": [1, 2]}, {}, TemplateEngine())
    assert info.value.code == "TEMPLATE_ERROR"


# -- mock ------------------------------------------------------------------------------------


async def test_mock_returns_a_copy_of_its_result() -> None:
    spec = MockAction(result={"id": "ord_1", "lines": [1]})
    first = await invoke(spec, {}, ctx())
    first["lines"].append(2)
    assert await invoke(spec, {}, ctx()) == {"id": "ord_1", "lines": [1]}
    assert await invoke(MockAction(), {}, ctx()) is None


@pytest.mark.parametrize(
    ("fail_times", "failing_attempts"), [(2, {1, 2}), (None, {1, 2, 3, 4}), (0, set())]
)
async def test_mock_fails_for_the_first_fail_times_attempts(
    fail_times: int | None, failing_attempts: set[int]
) -> None:
    spec = MockAction(result={"ok": True}, fail="OUT_OF_STOCK", fail_times=fail_times)
    failed = set()
    for attempt in range(1, 5):
        try:
            assert await invoke(spec, {}, ctx(attempt=attempt)) == {"ok": True}
        except StepError as error:
            assert (error.code, error.message) == ("OUT_OF_STOCK", "mock failure")
            failed.add(attempt)
    assert failed == failing_attempts


async def test_mock_delay_is_cancellable() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await invoke(MockAction(delay=30), {}, ctx())
    assert time.monotonic() - started < 0.5


async def test_mock_delay_then_result() -> None:
    started = time.monotonic()
    assert await invoke(MockAction(result=1, delay=0.1), {}, ctx()) == 1
    assert time.monotonic() - started >= 0.1


@pytest.mark.parametrize(
    "spec",
    [
        MockAction(),
        MockAction(result=7),
        MockAction(result={}),
        MockAction(result={"ok": True, 1: "int key", "n": None}),
        MockAction(result=["a", 1.5]),
        MockAction(result={"order": {"lines": [1, 2]}, "tags": ("x", "y")}),
        MockAction(result={"ok": True}, fail="OUT_OF_STOCK", fail_times=2),
        MockAction(fail="DOWN"),
    ],
)
async def test_an_immediate_mock_returns_and_raises_what_invoke_does(spec: MockAction) -> None:
    instant = immediate_action(spec)
    assert instant is not None
    for attempt in (1, 2, 3):
        try:
            expected: Any = await invoke(spec, {}, ctx(attempt=attempt))
        except StepError as e:
            with pytest.raises(StepError) as info:
                instant(attempt)
            assert (info.value.code, info.value.message, info.value.detail) == (
                e.code,
                e.message,
                e.detail,
            )
            continue
        got = instant(attempt)
        assert json.dumps(got) == json.dumps(expected)  # types too: keys are JSON text
        if isinstance(got, dict | list):  # a fresh copy, nested values included
            assert got is not instant(attempt)
            if isinstance(got, dict) and "order" in got:
                got["order"]["lines"].append(3)
                assert instant(attempt)["order"]["lines"] == [1, 2]


@pytest.mark.parametrize(
    "result",
    [
        None,
        "text",
        3,
        2.5,
        True,
        {},
        {"ok": True, "n": 1, "x": 0.5, "s": "é", "none": None},
        {1: "int key"},
        ["a", 1, None, 1.5],
        ("a", "b"),
        {"nested": {"a": [1]}},
    ],
)
async def test_results_are_what_a_json_round_trip_gives(result: Any) -> None:
    spec = MockAction(result=result, delay=0.001)  # a delay: invoke's full path
    got = await invoke(spec, {}, ctx())
    assert json.dumps(got) == json.dumps(result)
    assert got == json.loads(json.dumps(result))
    assert type(got) is type(json.loads(json.dumps(result)))


@pytest.mark.parametrize("result", [float("nan"), {"x": float("inf")}, [float("-inf")], {"o": {1}}])
async def test_results_that_are_not_json_data_fail(result: Any) -> None:
    error = await fails(MockAction(result=result, delay=0.001))
    assert error.code == "UNEXPECTED" and "not JSON data" in error.message


def test_only_mocks_that_take_no_time_and_return_json_are_immediate() -> None:
    assert immediate_action(MockAction(result=1, delay=0.1)) is None
    assert immediate_action(MockAction(result=float("nan"))) is None  # invoke reports it
    assert immediate_action(MockAction(result={"at": object()})) is None
    assert immediate_action(PythonAction(target="a:b")) is None
    assert immediate_action(HttpAction(url="http://h/x")) is None


# -- spec templates --------------------------------------------------------------------------


def test_spec_templates_lists_only_templated_fields() -> None:
    assert spec_templates(HttpAction(url="http://h/x")) == {}
    assert spec_templates(PythonAction(target="a:b")) == {}
    spec = HttpAction(url="http://h/{{ args.id }}", headers={"A": "1", "B": "{{ args.b }}"})
    assert set(spec_templates(spec)) == {"url", "headers"}
    assert render_spec(MockAction(result="{{ x }}"), {}, {}, TemplateEngine()) is None


def test_render_spec_errors_are_template_errors_with_secrets_masked() -> None:
    spec = HttpAction(url="http://h/{{ args[secrets.KEY] }}")
    with pytest.raises(StepError) as info:
        render_spec(spec, {}, {}, TemplateEngine({"KEY": "hunter2"}))
    assert info.value.code == "TEMPLATE_ERROR"
    assert "hunter2" not in info.value.message and "***" in info.value.message
