"""The JSON API against a real `sagac serve` and real workers, on SQLite and PostgreSQL: each
route, each refusal with its status, code and audit entry, every response checked against the
server's OpenAPI document."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from .conftest import Server

RUNS = "/api/v1/runs"
RUN = "/api/v1/runs/{run_id}"
SUBMIT = "/api/v1/sagas/{name}/runs"
DECIDE = "/api/v1/runs/{run_id}/gates/{gate}/decision"
REFUND = {"refund_id": "R-1", "amount": 1500}


def _submit(server: Server, c: httpx.Client, saga: str, input: Any, **headers: str) -> Any:
    r = c.post(f"/api/v1/sagas/{saga}/runs", json={"input": input}, headers=headers)
    assert r.status_code in (200, 201), r.text
    return server.check(r, SUBMIT, "post")


def _status(server: Server, c: httpx.Client, run_id: str) -> str:
    r = c.get(f"{RUNS}/{run_id}")
    status: str = server.check(r, RUN)["status"]
    return status


def _problem(server: Server, r: httpx.Response, path: str, method: str, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = server.check(r, path, method)
    assert "Traceback" not in r.text
    code: str = body["code"]
    return code


def _refused(server: Server, action: str, code: str) -> list[dict[str, Any]]:
    return [
        a
        for a in server.audit()
        if a["action"] == action and a["outcome"] == "refused" and a["code"] == code
    ]


def test_submit_follow_and_decide_as_the_tokens_user(server: Server) -> None:
    alice = server.client(server.token("alice", "submit,read,approve"))
    bob = server.client(server.token("bob", "read,approve"))
    carol = server.client(server.token("carol", "read,approve", groups=("finance",)))

    sagas = server.check(alice.get("/api/v1/sagas"), "/api/v1/sagas")["sagas"]
    assert [s["name"] for s in sagas] == ["hook", "refund", "waiter"]

    run_id = _submit(server, alice, "refund", REFUND)["run_id"]
    assert _status(server, alice, run_id) == "queued"
    page = server.check(alice.get(RUNS, params={"saga": "refund"}), RUNS)
    assert [r["run_id"] for r in page["runs"]] == [run_id] and page["next_cursor"] is None

    server.work()
    assert _status(server, alice, run_id) == "waiting_approval"
    # the inbox shows only gates its caller may decide: alice by name, carol by her token's group
    for who, expected in ((alice, [run_id]), (carol, [run_id]), (bob, [])):
        rows = server.check(who.get("/api/v1/approvals"), "/api/v1/approvals")["approvals"]
        assert [r["run_id"] for r in rows] == expected
    report = server.check(alice.get(f"{RUNS}/{run_id}"), RUN)
    assert [g["gate"] for g in report["pending_approvals"]] == ["manager"]

    url = f"{RUNS}/{run_id}/gates/manager/decision"
    # the approver is the token's user: a `by` in the body changes nothing
    r = bob.post(url, json={"decision": "approve", "by": "alice"})
    assert _problem(server, r, DECIDE, "post", 403) == "NOT_AN_APPROVER"
    refused = _refused(server, "approve", "NOT_AN_APPROVER")
    assert [(a["actor"], a["run_id"], a["detail"]) for a in refused] == [
        ("bob", run_id, {"via": "api"})
    ]

    # follow the run's events live while a worker takes it from the decision to the end
    streamed: list[str] = []
    follower = threading.Thread(target=_follow, args=(alice, run_id, streamed))
    follower.start()
    decided = alice.post(url, json={"decision": "approve", "comment": "ok", "value": {"n": 1}})
    assert decided.status_code == 200, decided.text
    body = server.check(decided, DECIDE, "post")
    assert (body["by"], body["approved"], body["value"]) == ("alice", True, {"n": 1})
    accepted = [
        a for a in server.audit() if a["action"] == "approve" and a["outcome"] == "accepted"
    ]
    assert [(a["actor"], a["detail"]["via"]) for a in accepted] == [("alice", "api")]

    again = carol.post(url, json={"decision": "reject", "comment": "too late"})
    assert _problem(server, again, DECIDE, "post", 409) == "GATE_NOT_PENDING"
    assert _refused(server, "reject", "GATE_NOT_PENDING")[0]["actor"] == "carol"

    server.work()
    follower.join(timeout=60)
    assert not follower.is_alive()
    assert "event: saga_completed" in streamed and streamed[-1] == 'end {"status": "succeeded"}'
    assert _status(server, alice, run_id) == "succeeded"
    events = server.check(alice.get(f"{RUNS}/{run_id}/events"), "/api/v1/runs/{run_id}/events")
    types = [e["type"] for e in events["events"]]
    assert types[-1] == "saga_completed" and "approval_decided" in types
    later = alice.get(f"{RUNS}/{run_id}/events", params={"after": events["events"][-2]["seq"]})
    assert [e["type"] for e in later.json()["events"]] == ["saga_completed"]
    assert server.check(alice.get(f"{RUNS}/{run_id}"), RUN)["report"]["output"] == {
        "refund": "rf_1"
    }


def _follow(client: httpx.Client, run_id: str, lines: list[str]) -> None:
    """Read the run's server-sent events until the stream ends: `event: TYPE` lines, and the
    last `end` event as `end DATA`."""
    headers = {"Accept": "text/event-stream"}
    with client.stream("GET", f"{RUNS}/{run_id}/events", headers=headers) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
                lines.append(line)
            elif line.startswith("data: ") and event == "end":
                lines.append(f"end {line[len('data: ') :]}")


def test_idempotent_submit_and_input_errors(server: Server) -> None:
    c = server.client(server.token("svc", "submit,read"))
    first = _submit(server, c, "refund", REFUND, **{"Idempotency-Key": "order-7"})
    assert first["existing"] is False
    r = c.post(
        "/api/v1/sagas/refund/runs", json={"input": REFUND}, headers={"Idempotency-Key": "order-7"}
    )
    assert r.status_code == 200
    assert server.check(r, SUBMIT, "post") == {**first, "existing": True}
    other = {**REFUND, "amount": 2}
    r = c.post(
        "/api/v1/sagas/refund/runs", json={"input": other}, headers={"Idempotency-Key": "order-7"}
    )
    assert _problem(server, r, SUBMIT, "post", 409) == "IDEMPOTENCY_CONFLICT"

    r = c.post("/api/v1/sagas/refund/runs", json={"input": {"refund_id": ""}})
    assert _problem(server, r, SUBMIT, "post", 422) == "INVALID_INPUT"
    assert r.json()["errors"]
    r = c.post("/api/v1/sagas/nope/runs", json={"input": {}})
    assert _problem(server, r, SUBMIT, "post", 404) == "NOT_FOUND"
    r = c.post("/api/v1/sagas/refund/runs", content=b"{not json")
    assert _problem(server, r, SUBMIT, "post", 400) == "INVALID_REQUEST"
    r = c.post("/api/v1/sagas/refund/runs", json=[1, 2])
    assert _problem(server, r, SUBMIT, "post", 400) == "INVALID_REQUEST"
    page = server.check(c.get(RUNS), RUNS)
    assert [x["run_id"] for x in page["runs"]] == [first["run_id"]]


def test_refusals_are_401_or_403_and_audited(server: Server) -> None:
    reader_token = server.token("rita", "read")
    anonymous = server.client()
    r = anonymous.get(RUNS)
    assert _problem(server, r, RUNS, "get", 401) == "UNAUTHENTICATED"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = server.client("sagac_000000000000_forged").post("/api/v1/sagas/refund/runs", json={})
    assert _problem(server, r, SUBMIT, "post", 401) == "UNAUTHENTICATED"
    r = server.client(reader_token).post("/api/v1/sagas/refund/runs", json={"input": REFUND})
    assert _problem(server, r, SUBMIT, "post", 403) == "FORBIDDEN"
    forbidden = _refused(server, "submit", "FORBIDDEN")
    assert [(a["actor"], a["detail"]["via"]) for a in forbidden] == [("rita", "api")]
    unauthenticated = [a for a in server.audit() if a["code"] == "UNAUTHENTICATED"]
    assert [a["action"] for a in unauthenticated] == ["runs", "submit"]

    # a revoked token is refused from then on
    token_id = reader_token.split("_")[1]

    async def revoke(store: Any) -> None:
        await store.revoke_api_token(token_id, "admin")

    from .conftest import in_store

    in_store(server.store, revoke)
    r = server.client(reader_token).get(RUNS)
    assert _problem(server, r, RUNS, "get", 401) == "UNAUTHENTICATED"
    assert "revoked" in r.json()["detail"]
    # nothing the server answered holds a token or its hash
    assert all("sha256" not in str(a["detail"]) for a in server.audit() if a["action"] == "runs")


def test_signal_and_cancel(server: Server) -> None:
    c = server.client(server.token("ops", "submit,read,signal,cancel"))
    reader = server.client(server.token("rita", "read"))
    waiting = _submit(server, c, "waiter", {})["run_id"]
    doomed = _submit(server, c, "waiter", {})["run_id"]
    server.work()
    assert _status(server, c, waiting) == _status(server, c, doomed) == "waiting"
    path = "/api/v1/runs/{run_id}/signals/{name}"

    r = c.post(f"{RUNS}/{waiting}/signals/paid", json={"data": {"amount": "ten"}})
    assert _problem(server, r, path, "post", 422) == "INVALID_SIGNAL_DATA"
    r = c.post(f"{RUNS}/{waiting}/signals/shipped", json={"data": {}})
    assert _problem(server, r, path, "post", 422) == "UNKNOWN_SIGNAL"
    assert len(_refused(server, "signal", "INVALID_SIGNAL_DATA")) == 1
    r = reader.post(f"{RUNS}/{waiting}/signals/paid", json={"data": {"amount": 10}})
    assert _problem(server, r, path, "post", 403) == "FORBIDDEN"
    r = c.post(f"{RUNS}/{waiting}/signals/paid", json={"data": {"amount": 10}})
    assert r.status_code == 202, r.text
    assert server.check(r, path, "post")["sent_by"] == "ops"
    r = c.post(f"{RUNS}/nope/signals/paid", json={"data": {"amount": 10}})
    assert _problem(server, r, path, "post", 404) == "RUN_NOT_FOUND"

    cancel = "/api/v1/runs/{run_id}/cancel"
    r = c.post(f"{RUNS}/{doomed}/cancel", json={"reason": "customer left"})
    assert r.status_code == 202
    assert server.check(r, cancel, "post")["first"] is True
    assert server.check(c.get(f"{RUNS}/{doomed}"), RUN)["cancel"]["by"] == "ops"
    server.work()
    assert _status(server, c, waiting) == "succeeded"
    assert _status(server, c, doomed) == "compensated"
    r = c.post(f"{RUNS}/{waiting}/signals/paid", json={"data": {"amount": 10}})
    assert _problem(server, r, path, "post", 409) in ("RUN_FINISHED", "SIGNAL_ALREADY_SENT")


def test_callback(server: Server, tmp_path: Path) -> None:
    c = server.client(server.token("psp", "submit,read,callback"))
    run_id = _submit(server, c, "hook", {})["run_id"]
    server.work()
    assert _status(server, c, run_id) == "waiting"
    token = (tmp_path / "tokens.txt").read_text().split()[0]
    path = "/api/v1/callbacks/{token}"

    r = c.post(f"/api/v1/callbacks/{token}", json={"result": {"payment_id": "pay_9"}})
    assert r.status_code == 200, r.text
    row = server.check(r, path, "post")
    assert (row["run_id"], row["step"], row["outcome_by"]) == (run_id, "charge", "psp")
    r = c.post(f"/api/v1/callbacks/{token}", json={"result": {"payment_id": "pay_9"}})
    assert _problem(server, r, path, "post", 409) == "CALLBACK_TOKEN_USED"
    r = c.post("/api/v1/callbacks/forged", json={"result": {}})
    assert _problem(server, r, path, "post", 404) == "UNKNOWN_CALLBACK_TOKEN"
    r = c.post(f"/api/v1/callbacks/{token}", json={})
    assert _problem(server, r, path, "post", 400) == "INVALID_REQUEST"
    assert len(_refused(server, "callback", "CALLBACK_TOKEN_USED")) == 1
    server.work()
    assert server.check(c.get(f"{RUNS}/{run_id}"), RUN)["report"]["output"] == {"payment": "pay_9"}
    # the callback's token is in no answer and in no line the server wrote
    assert token not in server.log.read_text()
