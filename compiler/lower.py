"""Lower schema-valid YAML data to the IR: resolve names, apply defaults, parse durations.

Runs only after the schema layer passed, so shapes are trusted here; what is left to find
(unknown action names, cycles, template problems) is the job of `checks`, which reads the IR.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import ir
from .durations import parse_duration

Path = ir.Path


def _dur(value: Any) -> float | None:
    return None if value is None else parse_duration(value)


def _action(
    raw: dict[str, Any],
) -> ir.PythonAction | ir.HttpAction | ir.CommandAction | ir.MockAction:
    if "python" in raw:
        return ir.PythonAction(target=raw["python"])
    if "http" in raw:
        h = raw["http"]
        return ir.HttpAction(
            method=h.get("method", "POST"),
            url=h["url"],
            headers=h.get("headers", {}),
            json_body=h.get("json"),
            has_json="json" in h,
            timeout=_dur(h.get("timeout")),
            ok_status=tuple(h.get("ok_status", ())),
        )
    if "command" in raw:
        return ir.CommandAction(argv=tuple(raw["command"]))
    m = raw["mock"] or {}
    return ir.MockAction(
        result=m.get("result"),
        fail=m.get("fail"),
        fail_times=m.get("fail_times"),
        delay=_dur(m.get("delay")) or 0.0,
    )


class _Lowerer:
    """Builds each node's fields as plain data and validates the node in one call: pydantic
    then builds the nested models (action refs, retry policies, compensation) inside that one
    validation, several times faster than one `Model(...)` call per object."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.actions = {name: _action(spec) for name, spec in (data.get("actions") or {}).items()}
        d = data.get("defaults") or {}
        self.default_timeout = _dur(d.get("timeout"))
        # Built once and shared by every node that inherits them.
        self.default_retry = tuple(
            ir.RetryPolicy.model_validate(p)
            for p in self.retry(d.get("retry"), ("defaults", "retry"))
        )
        # A compensation's own setting wins, then `defaults.compensate`, then (timeout and
        # retry only) the step defaults above, so that sagas without it behave as before.
        dc = d.get("compensate") or {}
        comp_retry = tuple(
            ir.RetryPolicy.model_validate(p)
            for p in self.retry(dc.get("retry"), ("defaults", "compensate", "retry"))
        )
        self.compensate_defaults = ir.CompensateDefaults(
            timeout=_dur(dc.get("timeout")),
            retry=comp_retry,
            errors=tuple(dc.get("errors", ())),
            on=dc.get("on", "completed"),
        )
        self.comp_retry = comp_retry or self.default_retry
        self.comp_timeout = self.compensate_defaults.timeout or self.default_timeout

    def retry(self, raw: Any, path: Path) -> tuple[dict[str, Any], ...]:
        if raw is None:
            return ()
        items = raw if isinstance(raw, list) else [raw]
        out = []
        for i, p in enumerate(items):
            policy = dict(p)
            policy["path"] = (*path, i) if isinstance(raw, list) else path
            for key in ("initial_delay", "max_delay"):
                if key in policy:
                    policy[key] = parse_duration(policy[key])
            if "on" in policy:
                policy["on"] = tuple(policy["on"])
            out.append(policy)
        return tuple(out)

    def action_ref(self, raw: Any, path: Path) -> dict[str, Any]:
        if isinstance(raw, str):
            return {"name": raw, "spec": self.actions.get(raw), "path": path}
        return {"spec": _action(raw), "path": path}

    def compensation(self, raw: dict[str, Any] | None, path: Path) -> dict[str, Any] | None:
        if raw is None:
            return None
        own = self.retry(raw.get("retry"), (*path, "retry"))
        dc = self.compensate_defaults
        return {
            "action": self.action_ref(raw["action"], (*path, "action")),
            "with_": raw.get("with") or {},
            "idempotency_key": raw.get("idempotency_key"),
            "errors": tuple(raw["errors"]) if "errors" in raw else dc.errors,
            "retry": own or self.comp_retry,
            "retry_declared": bool(own or self.comp_retry),
            "timeout": _dur(raw.get("timeout")) or self.comp_timeout,
            "on": raw.get("on", dc.on),
            "path": path,
        }

    def common(self, raw: dict[str, Any], path: Path) -> dict[str, Any]:
        after = raw.get("after")
        return {
            "id": raw["id"],
            "name": raw.get("name"),
            "after": tuple(after) if after is not None else None,
            "when": raw.get("when"),
            "path": path,
        }

    def effect(self, raw: dict[str, Any], path: Path) -> dict[str, Any]:
        """Fields shared by task steps and foreach nodes."""
        keep = raw.get("keep")
        return {
            "action": self.action_ref(raw["action"], (*path, "action")),
            "with_": raw.get("with") or {},
            "idempotency_key": raw.get("idempotency_key"),
            "errors": tuple(raw.get("errors", ())),
            "retry": self.retry(raw.get("retry"), (*path, "retry")) or self.default_retry,
            "timeout": _dur(raw.get("timeout")) or self.default_timeout,
            "deadline": _dur(raw.get("deadline")),
            "keep": tuple(keep) if keep is not None else None,
            "compensate": self.compensation(raw.get("compensate"), (*path, "compensate")),
        }

    def node(self, raw: dict[str, Any], path: Path) -> ir.AnyNode:
        # A wrapper node has exactly one key (its wrapper); a task step's keys are never one.
        kind = _WRAPPED.get(next(iter(raw)), "task") if len(raw) == 1 else "task"
        key = ir.WRAPPER_KEYS[kind]
        if key is None:
            return _LOWER[kind](self, raw, path)
        return _LOWER[kind](self, raw[key], (*path, key))

    def task(self, raw: dict[str, Any], path: Path) -> ir.AnyNode:
        fields = self.common(raw, path) | self.effect(raw, path)
        fields["irreversible"] = bool(raw.get("irreversible", False))
        if "simulate" in raw:
            fields["simulate"], fields["has_simulate"] = raw["simulate"], True
        if "callback" in raw:
            cb = raw["callback"] or {}
            fields["callback"] = {"timeout": _dur(cb.get("timeout")), "path": (*path, "callback")}
        return ir.TaskStep.model_validate(fields)

    def parallel(self, p: dict[str, Any], path: Path) -> ir.AnyNode:
        return ir.ParallelGroup(
            **self.common(p, path),
            mode=p.get("mode", "all"),
            max_concurrency=p.get("max_concurrency"),
            branches=tuple(
                self.nodes(b, (*path, "branches", i)) for i, b in enumerate(p["branches"])
            ),
        )

    def approval(self, a: dict[str, Any], path: Path) -> ir.AnyNode:
        return ir.ApprovalGate(
            **self.common(a, path),
            key=a.get("key"),
            approvers=tuple(a["approvers"]),
            message=a.get("message"),
            timeout=_dur(a.get("timeout")),
            on_timeout=a.get("on_timeout", "fail"),
        )

    def foreach(self, f: dict[str, Any], path: Path) -> ir.AnyNode:
        batch = f.get("batch") or {"preset": "balanced"}
        spec = (
            ir.BATCH_PRESETS[batch["preset"]]
            if "preset" in batch
            else ir.BatchSpec(
                size=batch["size"],
                concurrency=batch.get("concurrency", 1),
                delay=_dur(batch.get("delay")) or 0.0,
            )
        )
        fields = self.common(f, path) | self.effect(f, path)
        return ir.ForeachNode.model_validate(
            fields
            | {
                "items": f["items"],
                "as_": f["as"],
                "batch": spec,
                "checkpoint": f.get("checkpoint"),
                "on_error": f.get("on_error", "stop"),
            }
        )

    def fail(self, x: dict[str, Any], path: Path) -> ir.AnyNode:
        return ir.FailNode(**self.common(x, path), code=x["code"], message=x.get("message"))

    def sleep(self, x: dict[str, Any], path: Path) -> ir.AnyNode:
        return ir.SleepNode(**self.common(x, path), for_=_dur(x.get("for")), until=x.get("until"))

    def wait(self, x: dict[str, Any], path: Path) -> ir.AnyNode:
        return ir.WaitNode(
            **self.common(x, path),
            signal=x.get("signal", x["id"]),
            payload_schema=x.get("schema"),
            timeout=_dur(x.get("timeout")),
            on_timeout=x.get("on_timeout", "fail"),
        )

    def call(self, x: dict[str, Any], path: Path) -> ir.AnyNode:
        return ir.CallNode(**self.common(x, path), saga=x["saga"], with_=x.get("with") or {})

    def switch(self, x: dict[str, Any], path: Path) -> ir.AnyNode:
        default = x.get("default")
        return ir.SwitchNode(
            **self.common(x, path),
            cases=tuple(
                ir.SwitchCase(
                    when=c["when"],
                    steps=self.nodes(c["steps"], (*path, "cases", i, "steps")),
                    path=(*path, "cases", i),
                )
                for i, c in enumerate(x["cases"])
            ),
            default=None if default is None else self.nodes(default, (*path, "default")),
        )

    def nodes(self, raw: list[dict[str, Any]], path: Path) -> tuple[ir.AnyNode, ...]:
        return tuple(self.node(n, (*path, i)) for i, n in enumerate(raw))


# How each kind is lowered, from the mapping inside its wrapper key (a task step: the node).
_LOWER: dict[ir.NodeKind, Callable[[_Lowerer, dict[str, Any], Path], ir.AnyNode]] = {
    "task": _Lowerer.task,
    "parallel": _Lowerer.parallel,
    "approval": _Lowerer.approval,
    "foreach": _Lowerer.foreach,
    "fail": _Lowerer.fail,
    "sleep": _Lowerer.sleep,
    "wait": _Lowerer.wait,
    "call": _Lowerer.call,
    "switch": _Lowerer.switch,
}
ir.require_kinds(_LOWER, "lower._LOWER")
_WRAPPED: dict[str, ir.NodeKind] = {k: kind for kind, k in ir.WRAPPER_KEYS.items() if k}


def lower(data: dict[str, Any]) -> ir.Saga:
    """The IR of a schema-valid saga document."""
    lw = _Lowerer(data)
    return ir.Saga(
        saga=data["saga"],
        version=data.get("version", 1),
        description=data.get("description"),
        input_schema=data.get("input"),
        env=tuple(data.get("env", ())),
        secrets=tuple(data.get("secrets", ())),
        actions=lw.actions,
        defaults=ir.Defaults(
            timeout=lw.default_timeout, retry=lw.default_retry, compensate=lw.compensate_defaults
        ),
        compensation=data.get("compensation", "sequential"),
        on_compensation_failure=data.get("on_compensation_failure", "continue"),
        timeout=_dur(data.get("timeout")),
        steps=lw.nodes(data["steps"], ("steps",)),
        on_failure=lw.nodes(data.get("on_failure") or [], ("on_failure",)),
        output=data.get("output"),
    )
