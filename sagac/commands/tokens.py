"""`sagac tokens create|list|revoke`: the bearer tokens of the HTTP API (`sagac serve`).

`create` prints the new token alone on its last line, once: the store keeps only its sha256,
with its user, groups and scopes. `list` shows tokens by their public id, never a token nor a
hash; `revoke` takes an id or a prefix of one. Creating and revoking are audited with the
operating-system user who ran the command (`sagac audit`). Exit codes: 0 done, 64 usage (a bad
user, group or scope, an unknown or ambiguous id, no journal), 70 store error.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sagac.errors import ExitCode, UsageError

from ._store import add_store_option, current_user, open_durable, using


def register(sub: Any) -> None:
    p = sub.add_parser("tokens", help="bearer tokens of the HTTP API: create, list or revoke")
    actions = p.add_subparsers(dest="tokens_action", metavar="ACTION", required=True)
    a = actions.add_parser(
        "create", help="make a token for USER and print it once (creates the journal if needed)"
    )
    a.add_argument("--user", required=True, help="the user the token acts as (an approver)")
    a.add_argument(
        "--groups",
        action="append",
        default=[],
        metavar="G[,G...]",
        help="approver groups of the token's user (`group:G` in a gate's approvers)",
    )
    a.add_argument(
        "--scopes",
        metavar="S[,S...]",
        help="what the token may do: submit, read, approve, cancel, signal, callback"
        " (default: read)",
    )
    add_store_option(a)
    a.add_argument("--json", action="store_true", help="the token's record as JSON, then the token")
    a.set_defaults(func=create)
    a = actions.add_parser("list", help="tokens by id (never a token): user, groups, scopes")
    add_store_option(a)
    a.add_argument("--json", action="store_true", help="JSON: a list of tokens' records")
    a.set_defaults(func=list_tokens)
    a = actions.add_parser("revoke", help="revoke a token (audited): its requests are refused")
    a.add_argument("token_id", metavar="ID", help="the token's id, or a prefix of it")
    add_store_option(a)
    a.set_defaults(func=revoke)


def _shown(token: Any) -> dict[str, Any]:
    """A token's record as the commands show it: never its hash."""
    return {
        "id": token.token_id,
        "user": token.user,
        "groups": list(token.groups),
        "scopes": list(token.scopes),
        "created_at": token.created_at,
        "created_by": token.created_by,
        "revoked_at": token.revoked_at,
        "revoked_by": token.revoked_by,
    }


def create(args: argparse.Namespace) -> int:
    from sagac import acreate_api_token

    groups = [g.strip() for text in args.groups for g in text.split(",")]
    if any(not g for g in groups):
        raise UsageError("--groups has an empty name", hint="--groups finance,ops")
    store = open_durable(args.store, create=True, what="tokens")
    token, kept = using(
        store, lambda s: acreate_api_token(s, args.user, groups=groups, scopes=args.scopes)
    )
    if args.json:
        print(json.dumps(_shown(kept)))
    else:
        extra = f"; groups {', '.join(kept.groups)}" if kept.groups else ""
        print(
            f"token {kept.token_id} for {kept.user} (scopes {', '.join(kept.scopes)}{extra})."
            " Shown once: the store keeps only its hash."
        )
    print(token)
    return ExitCode.OK


def list_tokens(args: argparse.Namespace) -> int:
    store = open_durable(args.store, create=False, readonly=True, what="tokens")
    tokens = [_shown(t) for t in using(store, lambda s: s.api_tokens())]
    if args.json:
        print(json.dumps(tokens, indent=2))
        return ExitCode.OK
    if not tokens:
        print("no tokens (make one with `sagac tokens create --user USER`)")
    for t in tokens:
        state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
        groups = f"  groups {','.join(t['groups'])}" if t["groups"] else ""
        print(
            f"{t['id']}  {t['user']}  scopes {','.join(t['scopes'])}{groups}"
            f"  created {t['created_at']} by {t['created_by']}  {state}"
        )
    return ExitCode.OK


def revoke(args: argparse.Namespace) -> int:
    if not args.token_id.strip():
        raise UsageError("the token id is empty", hint="sagac tokens list")
    by, wanted = current_user(), args.token_id.strip()
    store = open_durable(args.store, create=False, what="tokens")
    token = using(store, lambda s: s.revoke_api_token(wanted, by))
    print(f"token {token.token_id} of {token.user} is revoked (since {token.revoked_at})")
    return ExitCode.OK
