"""Bearer tokens of the HTTP API: making one, knowing who presents one, and what it permits.

A token is `sagac_<id>_<secret>`: the id (12 hex digits) is public, shown by `sagac tokens
list` and named by `sagac tokens revoke`; the whole token is shown once, when it is created,
and a store keeps only its sha256 (`approvals.token_hash`) with its user, groups and scopes
(`ApiToken`). `authenticate` turns a presented token into an `Identity` or raises
`Unauthenticated` (HTTP 401); `require` raises `Forbidden` (HTTP 403) when the identity lacks a
scope. Both refusals are audited (`authenticate` itself, `audit_refusal` for the caller of
`require`), never with the token or its hash. A token's groups count as approver groups of its
user, as well as the store's (`can_decide`). This module never stores or logs a clear token,
and only calls the `Store` contract.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sagac.errors import Forbidden, Unauthenticated, UsageError

from .approvals import approver_members, check_group_name, check_user_names, may_decide, token_hash
from .store.base import ApiToken, Approval, AuditEntry, Store, os_user

# What a token may be used for; a request needs one of them (`require`).
SCOPES = ("submit", "read", "approve", "cancel", "signal", "callback")
DEFAULT_SCOPES = ("read",)
TOKEN_PREFIX = "sagac_"
_ID_HEX = 12  # hex digits of a token's public id
_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made an authenticated request: the token's user, groups and scopes, and its id."""

    user: str
    groups: tuple[str, ...]
    scopes: tuple[str, ...]
    token_id: str

    def may(self, scope: str) -> bool:
        return scope in self.scopes


def new_api_token() -> tuple[str, str, str]:
    """(token, its public id, its sha256): the token goes to a person once, the rest to the
    store."""
    token_id = secrets.token_hex(_ID_HEX // 2)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return token, token_id, token_hash(token)


def parse_scopes(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Scopes as `--scopes submit,approve` gives them (or a list), in `SCOPES` order; the
    default (`read`) for None; a usage error for an unknown or empty one."""
    if text is None:
        return DEFAULT_SCOPES
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip() for n in names]
    unknown = [n for n in names if n not in SCOPES]
    if unknown or not names:
        raise UsageError(
            f"{', '.join(map(repr, unknown)) or 'no scope'} is not a scope",
            hint=f"scopes are {', '.join(SCOPES)} (comma-separated)",
        )
    return tuple(s for s in SCOPES if s in names)


async def create_token(
    store: Store,
    user: str,
    *,
    groups: Iterable[str] = (),
    scopes: str | Sequence[str] | None = None,
    created_by: str | None = None,
) -> tuple[str, ApiToken]:
    """Make a token for `user` and keep it (hashed, audited as `token_create`); returns the
    clear token, to be shown once, and what the store kept. `created_by`: the OS user by
    default. Usage errors for a bad user, group or scope name."""
    (user,) = check_user_names([user])
    kept_groups = tuple(dict.fromkeys(check_group_name(g) for g in groups))
    token, token_id, sha256 = new_api_token()
    record = ApiToken(
        token_id=token_id,
        sha256=sha256,
        user=user,
        groups=kept_groups,
        scopes=parse_scopes(scopes),
        created_by=created_by or os_user(),
    )
    return token, await store.create_api_token(record)


def _bare(bearer: str | None) -> str:
    """The token in `bearer`: an `Authorization` header's value (`Bearer T`) or the token."""
    text = (bearer or "").strip()
    scheme, _, rest = text.partition(" ")
    if rest and scheme.lower() == "bearer":
        text = rest.strip()
    return text


async def authenticate(
    store: Store,
    bearer: str | None,
    *,
    action: str = "authenticate",
    run_id: str | None = None,
) -> Identity:
    """The identity of the token in `bearer` (the token, or an `Authorization` header's value
    `Bearer T`). Raises Unauthenticated, audited (`action`, refused, with `run_id`), when there
    is none, or the store does not know it or has revoked it."""
    token = _bare(bearer)
    kept = await store.api_token(token_hash(token)) if token else None
    if kept is None or kept.revoked_at is not None:
        if not token:
            refusal = Unauthenticated(
                "no bearer token", hint="send `Authorization: Bearer TOKEN` (sagac tokens create)"
            )
        elif kept is None:
            refusal = Unauthenticated("unknown token")
        else:
            refusal = Unauthenticated(f"token {kept.token_id} was revoked at {kept.revoked_at}")
        await store.audit(
            AuditEntry(
                run_id=run_id,
                actor=kept.user if kept is not None else None,
                action=action,
                outcome="refused",
                code=refusal.code,
                message=refusal.message,
                detail={"via": "api", "token_id": kept.token_id if kept else None},
            )
        )
        raise refusal
    return Identity(kept.user, tuple(kept.groups), tuple(kept.scopes), kept.token_id)


def require(identity: Identity, scope: str) -> None:
    """Raise Forbidden when `identity`'s token lacks `scope` (one of `SCOPES`). Not audited
    here: the caller knows the action (`audit_refusal`)."""
    if scope not in SCOPES:
        raise ValueError(f"no scope {scope!r}")
    if scope not in identity.scopes:
        raise Forbidden(
            f"token {identity.token_id} of {identity.user} lacks the {scope!r} scope",
            hint=f"sagac tokens create --user {identity.user} --scopes ...,{scope}",
        )


async def audit_refusal(
    store: Store,
    refusal: Forbidden | Unauthenticated,
    identity: Identity | None,
    action: str,
    *,
    run_id: str | None = None,
    gate: str | None = None,
) -> None:
    """Audit a refused request (`action`: what it asked, e.g. `submit`), as the CLI's refusals
    are: the token's user as actor, `via: api` and the token's id in the detail."""
    await store.audit(
        AuditEntry(
            run_id=run_id,
            gate=gate,
            actor=identity.user if identity else None,
            action=action,
            outcome="refused",
            code=refusal.code,
            message=refusal.message,
            detail={"via": "api", "token_id": identity.token_id if identity else None},
        )
    )


async def can_decide(store: Store, identity: Identity, approval: Approval) -> bool:
    """Whether `identity`'s user is an approver of the gate `approval` (a row of
    `Store.approvals`): by name, or by a `group:NAME` among the store's groups or the
    token's."""
    approvers = list(approval["approvers"])
    return may_decide(
        identity.user, approvers, await approver_members(store, approvers), identity.groups
    )
