"""The contract's API tokens: kept as hashes only, looked up by hash, listed, revoked by id or
prefix (once: a second revocation changes nothing), each creation and revocation audited; and
`runtime/auth.py` over them (authenticate, require, a token's groups as approver groups)."""

from __future__ import annotations

import asyncio

import pytest
from sagac.runtime import approvals, auth
from sagac.runtime.store.base import ApiToken

from sagac.errors import Forbidden, StoreError, Unauthenticated, UnknownApiToken, UsageError

from .conftest import Stores


def test_a_token_is_kept_as_its_hash_and_found_by_it(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        token, kept = await auth.create_token(
            store, "alice", groups=["finance", "group:ops"], scopes="approve,submit,read"
        )
        assert token.startswith(f"sagac_{kept.token_id}_") and len(token) > 50
        assert kept.sha256 == approvals.token_hash(token)
        assert (kept.user, kept.groups, kept.scopes) == (
            "alice",
            ("finance", "ops"),
            ("submit", "read", "approve"),
        )
        assert kept.created_at and kept.created_by and kept.revoked_at is None
        again = s.open()  # another process
        assert await again.api_token(kept.sha256) == kept
        assert await again.api_token(approvals.token_hash(token + "x")) is None
        assert await again.api_tokens() == [kept]
        if s.shared:
            tables = repr(await _everything(s))
            assert token not in tables and token.split("_", 2)[2] not in tables

    stores.run(body)


async def _everything(s: Stores) -> list[object]:
    """Every value of the tokens table and the audit log, as stored."""
    store = s.open()
    rows: list[object] = list(await store.audit_log())
    rows += [t for t in await store.api_tokens()]
    return rows


def test_creating_a_token_twice_with_one_id_or_hash_is_refused(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        first = ApiToken("abc123abc123", "sha256:aa", "alice", created_by="root")
        await store.create_api_token(first)
        for clash in (
            ApiToken("abc123abc123", "sha256:bb", "bob"),
            ApiToken("ffffffffffff", "sha256:aa", "bob"),
        ):
            with pytest.raises(StoreError):
                await store.create_api_token(clash)
        assert [t.user for t in await store.api_tokens()] == ["alice"]

    stores.run(body)


def test_revoking_by_id_or_prefix_once_each_audited(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        for token_id, user in (("aaaa11112222", "alice"), ("aaab33334444", "bob")):
            await store.create_api_token(ApiToken(token_id, f"sha256:{user}", user))
        with pytest.raises(UnknownApiToken, match="begins the ids of 2 tokens"):
            await store.revoke_api_token("aaa", "root")
        with pytest.raises(UnknownApiToken, match="no API token"):
            await store.revoke_api_token("bbbb", "root")
        revoked = await store.revoke_api_token("aaab", "carol")
        assert (revoked.token_id, revoked.revoked_by) == ("aaab33334444", "carol")
        assert revoked.revoked_at is not None
        again = await s.open().revoke_api_token("aaab33334444", "dave")
        assert (again.revoked_at, again.revoked_by) == (revoked.revoked_at, "carol")
        listed = {t.token_id: t.revoked_at for t in await store.api_tokens()}
        assert listed == {"aaaa11112222": None, "aaab33334444": revoked.revoked_at}
        log = [
            (a["action"], a["outcome"], a["actor"], a["detail"]["token_id"])
            for a in await store.audit_log()
        ]
        assert log == [
            ("token_create", "accepted", "", "aaaa11112222"),
            ("token_create", "accepted", "", "aaab33334444"),
            ("token_revoke", "accepted", "carol", "aaab33334444"),
            ("token_revoke", "unchanged", "dave", "aaab33334444"),
        ]

    stores.run(body)


def test_two_revocations_at_once_one_is_accepted(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await store.create_api_token(ApiToken("cccc00000000", "sha256:c", "carol"))
        one, two = s.open(), s.open()
        await asyncio.gather(
            one.revoke_api_token("cccc", "x"), two.revoke_api_token("cccc00000000", "y")
        )
        outcomes = sorted(a["outcome"] for a in await store.audit_log() if "revoke" in a["action"])
        assert outcomes == ["accepted", "unchanged"]

    stores.run(body)


def test_authenticate_and_require_refuse_with_stable_codes_and_audit(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        token, kept = await auth.create_token(store, "alice", groups=["finance"])
        assert kept.scopes == auth.DEFAULT_SCOPES == ("read",)
        who = await auth.authenticate(store, f"Bearer {token}")
        assert who == auth.Identity("alice", ("finance",), ("read",), kept.token_id)
        assert await auth.authenticate(store, token) == who
        auth.require(who, "read")
        with pytest.raises(Forbidden) as forbidden:
            auth.require(who, "approve")
        assert forbidden.value.code == "FORBIDDEN" and "'approve'" in forbidden.value.message
        await auth.audit_refusal(store, forbidden.value, who, "approve", run_id="r1", gate="g")
        for bearer in (None, "", "Bearer ", "Bearer sagac_nope", token[:-1]):
            with pytest.raises(Unauthenticated) as refused:
                await auth.authenticate(store, bearer, action="submit")
            assert refused.value.code == "UNAUTHENTICATED"
        await store.revoke_api_token(kept.token_id, "root")
        with pytest.raises(Unauthenticated, match="revoked"):
            await auth.authenticate(store, token, action="read", run_id="r1")
        refusals = [
            (a["action"], a["actor"], a["code"], a["run_id"], a["detail"])
            for a in await store.audit_log()
            if a["outcome"] == "refused"
        ]
        api = {"via": "api", "token_id": None}
        assert refusals == [
            ("approve", "alice", "FORBIDDEN", "r1", {"via": "api", "token_id": kept.token_id}),
            *[("submit", None, "UNAUTHENTICATED", None, api)] * 5,
            ("read", "alice", "UNAUTHENTICATED", "r1", {"via": "api", "token_id": kept.token_id}),
        ]
        assert all(token not in repr(a) for a in await store.audit_log())

    stores.run(body)


def test_bad_names_and_scopes_are_usage_errors(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        for kwargs in (
            {"scopes": "read,root"},
            {"scopes": ""},
            {"groups": ["fin ance"]},
        ):
            with pytest.raises(UsageError):
                await auth.create_token(store, "alice", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(UsageError):
            await auth.create_token(store, "al ice")
        assert await store.api_tokens() == []
        with pytest.raises(ValueError):
            auth.require(auth.Identity("a", (), auth.SCOPES, "x"), "admin")

    stores.run(body)


def test_a_tokens_groups_make_its_user_an_approver(stores: Stores) -> None:
    async def body(s: Stores) -> None:
        store = s.open()
        await store.add_group_members("ops", ["olga"])
        gate = {"approvers": ["alice", "group:finance", "group:ops"]}
        finance = auth.Identity("fred", ("finance",), ("approve",), "t1")
        stranger = auth.Identity("mallory", ("sales",), ("approve",), "t2")
        olga = auth.Identity("olga", (), ("approve",), "t3")
        alice = auth.Identity("alice", (), ("read",), "t4")
        assert await auth.can_decide(store, finance, gate)
        assert await auth.can_decide(store, olga, gate)  # the store's groups count too
        assert await auth.can_decide(store, alice, gate)
        assert not await auth.can_decide(store, stranger, gate)

    stores.run(body)
