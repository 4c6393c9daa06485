"""The runtime's front door: `run`, `arun` and `resume` a saga, returning its `RunReport`.

`arun(plan_or_path, input)` validates the input against the saga's `input` schema (InputError,
listing every problem, before anything runs), applies the test switches (`fail`: make steps
fail with a code instead of calling their action; `simulate`: every non-mock action becomes a
mock that succeeds with `{}`), and runs the plan with an `Executor`. `run` is the same for
synchronous programs. `aresume` continues a run from its journal in a store.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sagac.compiler import ir
from sagac.compiler.pipeline import load
from sagac.compiler.plan import Plan

from sagac.errors import DefinitionChanged, InputError, SecretMissing, UsageError

from .clock import Clock
from .context import DEFAULT_SLEEP_LIMIT
from .events import EventCallback
from .executor import Executor
from .journal import RunState, replay
from .leases import held
from .redaction import check_secrets
from .report import RunReport
from .store.base import RunRecord, Store
from .store.memory import MemoryStore

P = ParamSpec("P")
R = TypeVar("R")

FailSpec = Mapping[str, str | None] | list[str] | tuple[str, ...] | None


def as_plan(plan_or_path: Plan | str | Path) -> Plan:
    return plan_or_path if isinstance(plan_or_path, Plan) else load(plan_or_path)


def validate_input(plan: Plan, input: Any) -> None:
    """Raise InputError naming every way `input` breaks the saga's `input` schema."""
    schema = plan.definition.input_schema
    if schema is None:
        return
    from jsonschema import Draft202012Validator, FormatChecker

    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    problems = []
    for err in sorted(validator.iter_errors(input), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        problems.append(f"input/{where}: {err.message}" if where != "(root)" else err.message)
    if problems:
        raise InputError(
            f"the input does not match the saga's input schema ({len(problems)} problem(s)): "
            + "; ".join(problems),
            problems=problems,
        )


def action_ids(plan: Plan) -> list[str]:
    """Nodes that call an action (what `fail=` may name)."""
    return [n.id for n in plan.definition.walk() if ir.effectful(n) is not None]


def fail_overrides(plan: Plan, fail: FailSpec) -> dict[str, ir.MockAction]:
    """`{"step": "CODE"}` or `["step=CODE", "step"]` -> mocks that fail (default UNEXPECTED)."""
    if not fail:
        return {}
    pairs: list[tuple[str, str | None]] = []
    if isinstance(fail, Mapping):
        pairs = list(fail.items())
    else:
        for item in fail:
            name, _, given = item.partition("=")
            pairs.append((name.strip(), given.strip() or None))
    valid = action_ids(plan)
    out: dict[str, ir.MockAction] = {}
    for step, code in pairs:
        if step not in valid:
            raise UsageError(
                f"--fail names {step!r}, which is not a step of {plan.saga!r} that calls an action",
                hint=f"valid step ids: {', '.join(valid)}",
            )
        out[step] = ir.MockAction(fail=code or "UNEXPECTED")
    return out


def environment(
    plan: Plan, secrets: Mapping[str, str] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """(env, secrets): the listed `env:` names from the process, and the secrets given (or,
    for names listed under `secrets:` and not given, from the process environment). A secret
    too short to be masked safely is refused (InputError) before anything runs."""
    saga = plan.definition
    env = {k: os.environ[k] for k in saga.env if k in os.environ}
    found = {k: os.environ[k] for k in saga.secrets if k in os.environ}
    found.update(secrets or {})
    check_secrets(found)
    return env, found


def _secret_names(node: Any) -> set[str]:
    """Names of `secrets.NAME` / `secrets['NAME']` reads under a Jinja AST node."""
    from jinja2 import nodes

    out: set[str] = set()
    for n in [node, *node.find_all((nodes.Getattr, nodes.Getitem))]:  # find_all skips `node`
        if (
            isinstance(n, nodes.Getattr | nodes.Getitem)
            and isinstance(n.node, nodes.Name)
            and n.node.name == "secrets"
        ):
            arg = n.attr if isinstance(n, nodes.Getattr) else getattr(n.arg, "value", None)
            if isinstance(arg, str):
                out.add(arg)
    return out


def _required_secrets(text: str) -> set[str]:
    """The secrets a template cannot render without: every one it reads, except those it also
    guards somewhere (`secrets.X | default(...)`, `secrets.X is defined`)."""
    from jinja2 import nodes
    from sagac.compiler.templates import parse

    try:
        tree = parse(text)
    except Exception:  # a syntax error: the compiler reported it, the run will say it too
        return set()
    guarded: set[str] = set()
    for n in tree.find_all((nodes.Filter, nodes.Test)):
        if n.name in ("default", "d", "defined", "undefined") and n.node is not None:
            guarded |= _secret_names(n.node)
    return _secret_names(tree) - guarded


def secrets_read(plan: Plan) -> dict[str, list[str]]:
    """Secret name -> where a template of the saga needs it (`with.key` of charge, `output`)."""
    from sagac.compiler.checks import template_sites

    out: dict[str, list[str]] = {}
    for site in template_sites(plan.definition):
        if "secrets" not in site.text:
            continue
        for name in sorted(_required_secrets(site.text)):
            where = f"{site.field} of {site.node.id}" if site.node is not None else site.field
            out.setdefault(name, []).append(where)
    return out


def require_secrets(plan: Plan, found: Mapping[str, str]) -> None:
    """Refuse to start (or resume) a run when a secret its templates read is not set: else the
    run would fail half-way with a TEMPLATE_ERROR, after effects it may have to undo."""
    unset = [name for name in plan.definition.secrets if name not in found]
    if not unset:
        return
    read = secrets_read(plan)
    missing = [name for name in unset if name in read]
    if not missing:
        return
    plural = "s" if len(missing) > 1 else ""
    where = "; ".join(f"{n} read in {', '.join(read[n][:3])}" for n in missing)
    exports = " ".join(f"{n}=..." for n in missing)
    raise SecretMissing(
        f"secret{plural} {', '.join(missing)} {'are' if plural else 'is'} not set ({where})",
        hint=f"set the environment variable{plural} of the same name before the run, e.g. "
        f"`export {exports}` (from Python: `secrets={{...}}`); nothing has run",
    )


async def arun(
    plan_or_path: Plan | str | Path,
    input: Any,
    *,
    store: Store | None = None,
    on_event: EventCallback | None = None,
    fail: FailSpec = None,
    simulate: bool = False,
    clock: Clock | None = None,
    secrets: Mapping[str, str] | None = None,
    run_id: str | None = None,
    sleep_limit: float = DEFAULT_SLEEP_LIMIT,
) -> RunReport:
    """Run a saga to its end (or until it parks: an approval gate, a sleep longer than
    `sleep_limit` seconds, a wait for a signal) and return its report."""
    plan = as_plan(plan_or_path)
    validate_input(plan, input)
    overrides = fail_overrides(plan, fail)
    env, found = environment(plan, secrets)
    require_secrets(plan, found)
    executor = Executor(
        plan,
        input,
        store=store if store is not None else MemoryStore(),
        run_id=run_id,
        clock=clock,
        on_event=on_event,
        secrets=found,
        env=env,
        overrides=overrides,
        simulate=simulate,
        sleep_limit=sleep_limit,
    )
    async with held(executor.store, executor.run_id):  # one driver per run (durable stores)
        return await executor.run()


async def aresume(
    plan_or_path: Plan | str | Path,
    run_id: str,
    store: Store,
    *,
    on_event: EventCallback | None = None,
    clock: Clock | None = None,
    secrets: Mapping[str, str] | None = None,
    force: bool = False,
    sleep_limit: float = DEFAULT_SLEEP_LIMIT,
) -> RunReport:
    """Continue run `run_id` from its journal in `store` (a finished run returns its report).
    Refused when the definition changed since the run started, unless `force`."""
    plan = as_plan(plan_or_path)
    record = await store.get_run(run_id)
    if record.definition_hash != plan.hash and not force:
        raise DefinitionChanged(
            f"run {run_id} started under definition {record.definition_hash}, "
            f"this one is {plan.hash}",
            hint="resume with the definition the run started with, or force it",
        )
    state = replay(await store.load_events(run_id))
    if state.finished and record.report is not None:
        return RunReport.model_validate(record.report)
    return await drive(
        plan,
        record,
        state,
        store,
        on_event=on_event,
        clock=clock,
        secrets=secrets,
        sleep_limit=sleep_limit,
    )


async def drive(
    plan: Plan,
    record: RunRecord,
    state: RunState,
    store: Store,
    *,
    on_event: EventCallback | None = None,
    clock: Clock | None = None,
    secrets: Mapping[str, str] | None = None,
    sleep_limit: float = DEFAULT_SLEEP_LIMIT,
) -> RunReport:
    """Continue the run of `record` under `plan` from `state` (its journal replayed), both
    read just now by the caller (`aresume`, `resume.resume`): nothing is read again."""
    env, found = environment(plan, secrets)
    require_secrets(plan, found)
    executor = Executor(
        plan,
        record.input,
        store=store,
        run_id=record.run_id,
        clock=clock,
        on_event=on_event,
        secrets=found,
        env=env,
        overrides=fail_overrides(plan, state.fail),  # the run's own test switches, journaled
        simulate=state.simulate,
        state=state,
        record=record,
        sleep_limit=sleep_limit,
    )
    async with held(executor.store, executor.run_id):  # one driver per run (durable stores)
        return await executor.run()


async def _owning_loop(coro: Coroutine[Any, Any, R]) -> R:
    from sagac.runtime.actions import aclose_clients

    try:
        return await coro
    finally:
        await aclose_clients()  # the pooled http clients belong to this (our own) loop


def synchronous(
    afn: Callable[P, Coroutine[Any, Any, R]], name: str | None = None, doc: str | None = None
) -> Callable[P, R]:
    """The synchronous twin of the coroutine function `afn`, with its signature (and its
    docstring, or `doc`), named `name`. Each call runs `afn` in an event loop of its own and
    closes the loop's pooled http clients; called inside a running loop it is refused, as
    `asyncio.run` refuses (await `afn` there instead)."""

    @functools.wraps(afn)
    def sync(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(_owning_loop(afn(*args, **kwargs)))
        instead = f": await {afn.__name__}() instead" if afn.__name__ != sync.__name__ else ""
        raise RuntimeError(
            f"{sync.__name__}() runs its own event loop and cannot be called from a running"
            f" one{instead}"
        )

    if name is not None:
        sync.__name__ = name
        sync.__qualname__ = name
    if doc is not None:
        sync.__doc__ = doc
    return sync


run = synchronous(arun, "run", "`arun` for synchronous programs (runs its own event loop).")
resume = synchronous(aresume, "resume", "`aresume` for synchronous programs.")
