"""`sagac tokens` through the real CLI on a real SQLite journal: a token printed once, alone on
create's last line, kept only as its hash; listed by id, never shown again; revoked by a prefix
of its id; each change audited with the OS user; mistakes are usage errors, not tracebacks."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import sqlite3
from pathlib import Path

import pytest
from sagac.runtime import auth
from sagac.runtime.approvals import token_hash
from sagac.runtime.store.sqlite import SqliteStore

from sagac.errors import Unauthenticated

from .durable_support import sagac

OS_USER = pwd.getpwuid(os.geteuid()).pw_name


def test_create_list_revoke_and_authenticate(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    store = f"sqlite:///{db}"
    made = sagac(
        "tokens", "create", "--user", "alice", "--groups", "finance", "--groups", "ops,audit",
        "--scopes", "submit,approve,read,cancel", "--store", store,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    *said, token = made.stdout.splitlines()
    assert token.startswith("sagac_") and " " not in token
    assert "alice" in said[0] and token not in said[0]
    token_id = token.split("_")[1]

    listed = sagac("tokens", "list", "--json", "--store", store)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["id"] == token_id and row["user"] == "alice"
    assert row["groups"] == ["finance", "ops", "audit"]
    assert row["scopes"] == ["submit", "read", "approve", "cancel"]
    assert (row["created_by"], row["revoked_at"]) == (OS_USER, None)
    text = sagac("tokens", "list", "--store", store)
    for out in (listed.stdout, text.stdout):
        assert token not in out and token_hash(token) not in out
    assert token_id in text.stdout and "active" in text.stdout

    everything = sqlite3.connect(db).iterdump()
    dump = "\n".join(everything)
    assert token not in dump and token.split("_", 2)[2] not in dump
    assert token_hash(token) in dump  # the hash is what is kept

    async def who() -> auth.Identity:
        s = SqliteStore(db)
        try:
            return await auth.authenticate(s, f"Bearer {token}")
        finally:
            await s.close()

    identity = asyncio.run(who())
    assert (identity.user, identity.groups, identity.token_id) == (
        "alice",
        ("finance", "ops", "audit"),
        token_id,
    )

    revoked = sagac("tokens", "revoke", token_id[:5], "--store", store)
    assert revoked.returncode == 0, revoked.stderr
    assert f"token {token_id} of alice is revoked" in revoked.stdout
    again = sagac("tokens", "revoke", token_id, "--store", store)
    assert again.returncode == 0, again.stderr
    with pytest.raises(Unauthenticated, match="revoked"):
        asyncio.run(who())
    (row,) = json.loads(sagac("tokens", "list", "--json", "--store", store).stdout)
    assert row["revoked_at"] and row["revoked_by"]

    audit = json.loads(sagac("audit", "--json", "--store", store).stdout)
    assert {a["os_user"] for a in audit} == {OS_USER}
    actions = [(a["action"], a["outcome"]) for a in audit]
    assert actions == [
        ("token_create", "accepted"),
        ("token_revoke", "accepted"),
        ("token_revoke", "unchanged"),
        ("authenticate", "refused"),
    ]
    assert all(token not in json.dumps(a) for a in audit)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["create", "--user", "bob", "--scopes", "read,root"], "'root' is not a scope"),
        (["create", "--user", "bob", "--groups", "fin ance"], "is not a group name"),
        (["create", "--user", "bo b"], "is not a user name"),
        (["create", "--user", "bob", "--groups", "a,,b"], "empty name"),
        (["create"], "--user"),
        (["revoke", "0123"], "no API token '0123'"),
        (["revoke", " "], "the token id is empty"),
    ],
)
def test_mistakes_are_usage_errors(tmp_path: Path, args: list[str], says: str) -> None:
    store = f"sqlite:///{tmp_path / 'j.db'}"
    sagac("groups", "add", "finance", "x", "--store", store)  # the journal exists
    done = sagac("tokens", *args, "--store", store)
    assert done.returncode == 64, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr


def test_tokens_need_a_durable_store_and_list_reads_only(tmp_path: Path) -> None:
    done = sagac("tokens", "create", "--user", "bob", "--store", "memory")
    assert done.returncode == 64 and "durable store" in done.stderr
    missing = sagac("tokens", "list", "--store", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 64 and "no journal" in missing.stderr
    assert not (tmp_path / "none.db").exists()
    store = f"sqlite:///{tmp_path / 'j.db'}"
    sagac("groups", "add", "finance", "x", "--store", store)
    empty = sagac("tokens", "list", "--store", store)
    assert empty.returncode == 0 and "no tokens" in empty.stdout
