"""The contract's approvals: requests as the journal makes them, decisions (every refusal,
each audited; the compare-and-set that makes a token single-use), expiry, forced rebinding,
approver groups and the audit log."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sagac.runtime import approvals
from sagac.runtime.clock import rfc3339
from sagac.runtime.store import Store
from sagac.runtime.store.base import AuditEntry, Definition, os_user

from sagac.errors import ApprovalRefused, DecisionConflict, LeaseHeld, RunNotFound

from .conftest import Stores, ev, new_run

TOKEN, OTHER_TOKEN = approvals.new_token()[0], approvals.new_token()[0]
DEFINITION = "sha256:d"


async def gated(store: Store, run_id: str = "r1", gate: str = "sign_off", **request: Any) -> None:
    """A run waiting at `gate`, as the executor journals it (seq 1 and 2)."""
    await new_run(store, run_id, definition_hash=DEFINITION)
    fields = {
        "step": gate,
        "key": f"key-{gate}",
        "message": "refund R-1?",
        "context": {"input.refund_id": "R-1"},
        "approvers": ["alice", "group:finance"],
        "deadline": None,
        "on_timeout": None,
        "definition_hash": DEFINITION,
        "token_sha256": approvals.token_hash(TOKEN if run_id == "r1" else OTHER_TOKEN),
        **request,
    }
    await store.append(
        run_id, [ev(run_id, 1, "saga_started"), ev(run_id, 2, "approval_requested", **fields)]
    )


async def decide(store: Store, by: str, token: str, **kw: Any) -> dict[str, Any]:
    run_id, gate = kw.pop("run_id", "r1"), kw.pop("gate", "sign_off")
    return await approvals.decide(store, run_id, gate, approved=True, by=by, token=token, **kw)


def test_a_request_is_an_approval_row(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await gated(store, deadline=rfc3339(4_102_444_800), on_timeout="reject")
        await gated(store, "r2", gate="other")
        row = await store.approval("r1", "sign_off")
        assert row is not None
        assert {k: row[k] for k in ("run_id", "gate", "key", "message", "status")} == {
            "run_id": "r1",
            "gate": "sign_off",
            "key": "key-sign_off",
            "message": "refund R-1?",
            "status": "pending",
        }
        assert row["approvers"] == ["alice", "group:finance"]
        assert row["context"] == {"input.refund_id": "R-1"}
        assert (row["deadline_epoch"], row["on_timeout"]) == (4_102_444_800, "reject")
        assert (row["definition_hash"], row["requested_seq"]) == (DEFINITION, 2)
        assert row["token_sha256"] == approvals.token_hash(TOKEN)
        assert row["decided_by"] is None and row["value"] is None
        assert await store.approval("r1", "nope") is None
        assert await store.approval("nope", "sign_off") is None
        assert [r["gate"] for r in await store.approvals()] == ["sign_off", "other"]
        assert [r["gate"] for r in await store.approvals("r2")] == ["other"]
        assert await store.approvals(status="approved") == []
        assert await approvals.pending(store, "r1") == [row]

    stores.run(body)


def test_every_refusal_is_raised_and_audited_and_one_decision_accepted(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await gated(store)
        await gated(store, "r2")
        await store.add_group_members("finance", ["bob"])
        await store.add_group_members("ops", ["dave"])
        refusals: list[tuple[dict[str, Any], str]] = [
            ({"by": "mallory", "token": TOKEN}, "NOT_AN_APPROVER"),
            ({"by": "dave", "token": TOKEN}, "NOT_AN_APPROVER"),  # in another group
            ({"by": "bob", "token": "not-the-token"}, "BAD_TOKEN"),
            ({"by": "bob", "token": OTHER_TOKEN}, "BAD_TOKEN"),  # another run's token
            ({"by": "bob", "token": TOKEN, "gate": "nope"}, "GATE_NOT_PENDING"),
            ({"by": "bob", "token": TOKEN, "definition_hash": "sha256:new"}, "DEFINITION_CHANGED"),
        ]
        for kw, code in refusals:
            with pytest.raises(ApprovalRefused) as refused:
                await decide(store, **kw)
            assert (refused.value.code, refused.value.exit_code) == (code, 77), kw
        with pytest.raises(RunNotFound):  # an unknown run: nothing to audit it under
            await decide(store, "bob", TOKEN, run_id="nope")
        event = await decide(store, "bob", TOKEN, comment="ok", value={"limit": 5})
        assert (event["type"], event["seq"], event["step"], event["by"]) == (
            "approval_decided",
            3,
            "sign_off",
            "bob",
        )
        assert (event["approved"], event["value"], event["key"]) == (
            True,
            {"limit": 5},
            "key-sign_off",
        )
        assert (await store.load_events("r1"))[-1] == event
        row = await store.approval("r1", "sign_off")
        assert row is not None
        assert (row["status"], row["decided_by"], row["comment"], row["value"]) == (
            "approved",
            "bob",
            "ok",
            {"limit": 5},
        )
        for by, token, code in (("alice", TOKEN, "TOKEN_USED"), ("alice", "x", "GATE_NOT_PENDING")):
            with pytest.raises(ApprovalRefused) as late:
                await decide(store, by, token)
            assert late.value.code == code
        log = await store.audit_log("r1")
        assert [(a["actor"], a["action"], a["outcome"], a["code"]) for a in log] == [
            ("mallory", "approve", "refused", "NOT_AN_APPROVER"),
            ("dave", "approve", "refused", "NOT_AN_APPROVER"),
            ("bob", "approve", "refused", "BAD_TOKEN"),
            ("bob", "approve", "refused", "BAD_TOKEN"),
            ("bob", "approve", "refused", "GATE_NOT_PENDING"),
            ("bob", "approve", "refused", "DEFINITION_CHANGED"),
            ("bob", "approve", "accepted", None),
            ("alice", "approve", "refused", "TOKEN_USED"),
            ("alice", "approve", "refused", "GATE_NOT_PENDING"),
        ]
        accepted = log[6]
        assert accepted["detail"] == {"seq": 3, "definition_hash": DEFINITION}
        assert accepted["message"] == "ok" and accepted["gate"] == "sign_off"
        assert all(a["os_user"] == os_user() and a["at"] for a in log)
        assert (await store.approval("r2", "sign_off"))["status"] == "pending"  # type: ignore[index]

    stores.run(body)


def test_a_passed_deadline_refuses_and_expiry_resolves_by_on_timeout(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        past = rfc3339(1_000_000_000)
        await gated(store, deadline=past, on_timeout="reject")
        await gated(store, "r2", deadline=past, on_timeout="fail")
        await gated(store, "r3", deadline=rfc3339(4_102_444_800))
        with pytest.raises(ApprovalRefused) as expired:
            await decide(store, "alice", TOKEN)
        assert expired.value.code == "APPROVAL_EXPIRED"
        codes = []
        for run_id in ("r1", "r2", "r3"):
            events = await approvals.expire_overdue(store, run_id)
            codes.append([(e["seq"], e["code"], e["timed_out"]) for e in events])
        assert codes == [[(3, "APPROVAL_REJECTED", True)], [(3, "APPROVAL_TIMEOUT", True)], []]
        assert await approvals.expire_overdue(store, "r1") == []  # already resolved
        assert (await store.approval("r1", "sign_off"))["status"] == "timed_out"  # type: ignore[index]
        log = await store.audit_log()
        assert [(a["run_id"], a["actor"], a["action"], a["code"]) for a in log] == [
            ("r1", "alice", "approve", "APPROVAL_EXPIRED"),
            ("r1", "sagac", "timeout", "APPROVAL_REJECTED"),
            ("r2", "sagac", "timeout", "APPROVAL_TIMEOUT"),
        ]

    stores.run(body)


def test_a_token_decides_once_however_many_try_at_the_same_time(stores: Stores) -> None:
    """Eight decisions with the right token at once, through two handles: exactly one is
    accepted, the others are refused as TOKEN_USED, and the journal has one decision."""

    async def body(s: Stores) -> None:
        first, second = s.open(), s.open()
        await gated(first)
        outcomes = await asyncio.gather(
            *(decide(first if i % 2 else second, "alice", TOKEN) for i in range(8)),
            return_exceptions=True,
        )
        accepted = [o for o in outcomes if isinstance(o, dict)]
        refused = [o.code for o in outcomes if isinstance(o, ApprovalRefused)]
        assert len(accepted) == 1 and refused == ["TOKEN_USED"] * 7, outcomes
        decided = [e for e in await first.load_events("r1") if e["type"] == "approval_decided"]
        assert decided == accepted

    stores.run(body)


def test_append_decision_is_a_compare_and_set(stores: Stores) -> None:
    """The store applies a decision only to a pending gate, under the expected definition,
    and not while another live owner holds the run; nothing is written when it refuses."""
    entry = AuditEntry(
        run_id="r1", gate="sign_off", actor="x", action="approve", outcome="accepted"
    )
    fields = {"step": "sign_off", "approved": True, "by": "x"}

    async def body(s: Stores) -> None:
        store = s.open()
        await gated(store)
        with pytest.raises(DecisionConflict):
            await store.append_decision("r1", "nope", fields, entry)
        with pytest.raises(DecisionConflict):
            await store.append_decision("r1", "sign_off", fields, entry, definition_hash="sha256:x")
        with pytest.raises(RunNotFound):
            await store.append_decision("nope", "sign_off", fields, entry)
        await store.acquire_lease("r1", "a@elsewhere:1/x", 10)
        with pytest.raises(LeaseHeld):
            await store.append_decision("r1", "sign_off", fields, entry)
        assert [e["seq"] for e in await store.load_events("r1")] == [1, 2]
        assert await store.audit_log() == []
        event = await store.append_decision(
            "r1", "sign_off", fields, entry, owner="a@elsewhere:1/x", definition_hash=DEFINITION
        )
        assert event["seq"] == 3 and (await store.audit_log())[0]["detail"] == {"seq": 3}
        with pytest.raises(DecisionConflict):
            await store.append_decision("r1", "sign_off", fields, entry, owner="a@elsewhere:1/x")

    stores.run(body)


def test_a_forced_resume_rebinds_the_run_and_its_pending_requests(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await gated(store)
        await store.append(
            "r1", [ev("r1", 3, "approval_requested", step="later", approvers=["alice"])]
        )
        await approvals.inject_decision(store, "r1", "later", by="ci")
        assert await store.definition("sha256:new") is None
        new = Definition("sha256:new", "refund", '{"saga": "refund", "v": 2}', "refund.yaml")
        await store.rebind_definition("r1", new, "op@host:1/x")
        assert (await store.get_run("r1")).definition_hash == "sha256:new"
        kept = await s.open().definition("sha256:new")  # kept, for a worker to run it
        assert kept is not None and (kept.saga, kept.source) == (new.saga, new.source)
        rows = {r["gate"]: r["definition_hash"] for r in await store.approvals("r1")}
        assert rows == {"sign_off": "sha256:new", "later": DEFINITION}
        with pytest.raises(ApprovalRefused) as stale:  # the decider still looks at the old one
            await decide(store, "alice", TOKEN, definition_hash=DEFINITION)
        assert stale.value.code == "DEFINITION_CHANGED"
        assert (await decide(store, "alice", TOKEN, definition_hash="sha256:new"))["seq"] == 5
        force = [a for a in await store.audit_log("r1") if a["action"] == "force_resume"]
        assert [(a["actor"], a["detail"]) for a in force] == [
            ("op@host:1/x", {"from": DEFINITION, "to": "sha256:new"})
        ]

    stores.run(body)


def test_the_test_helper_injects_only_into_a_pending_gate(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await gated(store)
        event = await approvals.inject_decision(store, "r1", "sign_off", by="ci", value=7)
        assert (event["seq"], event["by"], event["value"]) == (3, "ci", 7)
        for gate in ("sign_off", "nope"):
            with pytest.raises(approvals.GateNotPending):
                await approvals.inject_decision(store, "r1", gate)
        log = await store.audit_log("r1")
        assert [(a["actor"], a["action"], a["outcome"]) for a in log] == [
            ("ci", "inject", "accepted")
        ]

    stores.run(body)


def test_approver_groups_are_kept_sorted_and_every_change_audited(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        assert await store.add_group_members("finance", ["carol", "bob", "carol"]) == [
            "carol",
            "bob",
        ]
        assert await store.add_group_members("finance", ["bob"]) == []
        assert await store.add_group_members("ops", ["dave"]) == ["dave"]
        assert await store.group_members() == {"finance": ["bob", "carol"], "ops": ["dave"]}
        assert await store.group_members("ops") == {"ops": ["dave"]}
        assert await store.group_members("nope") == {}
        assert await store.remove_group_members("ops", ["dave", "eve"]) == ["dave"]
        assert await store.remove_group_members("ops", ["dave"]) == []
        assert await store.group_members() == {"finance": ["bob", "carol"]}
        log = await store.audit_log()
        assert [(a["action"], a["outcome"], a["message"]) for a in log] == [
            ("group_add", "accepted", "group:finance + carol, bob, carol"),
            ("group_add", "unchanged", "group:finance + bob"),
            ("group_add", "accepted", "group:ops + dave"),
            ("group_remove", "accepted", "group:ops - dave, eve"),
            ("group_remove", "unchanged", "group:ops - dave"),
        ]
        assert log[0]["detail"] == {
            "group": "finance",
            "users": ["carol", "bob", "carol"],
            "changed": ["carol", "bob"],
        }
        assert all(a["actor"] == os_user() and a["run_id"] is None for a in log)

    stores.run(body)


def test_the_audit_log_is_in_order_and_filtered_by_run(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await store.audit(AuditEntry(action="a", outcome="accepted", run_id="r1", detail={"x": 1}))
        await store.audit(AuditEntry(action="b", outcome="refused", run_id="r2", code="C"))
        await store.audit(AuditEntry(action="c", outcome="accepted", message="m"))
        log = await store.audit_log()
        assert [(a["action"], a["run_id"], a["code"], a["message"]) for a in log] == [
            ("a", "r1", None, None),
            ("b", "r2", "C", None),
            ("c", None, None, "m"),
        ]
        assert log[0]["detail"] == {"x": 1} and log[1]["detail"] is None
        assert [a["id"] for a in log] == sorted(a["id"] for a in log)
        assert [a["action"] for a in await store.audit_log("r2")] == ["b"]

    stores.run(body)
