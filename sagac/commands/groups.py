"""`sagac groups add|remove|list`: the approver groups (`group:NAME` in a gate's approvers).

Members live in the journal, not in anyone's environment: `add` and `remove` change them, each
change audited with the operating-system user who ran it (`sagac audit`); `list` shows them.
Exit codes: 0 done, 64 usage (a bad name, no journal, an unknown group to list), 70 store error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sagac.errors import ExitCode, UsageError

from ._store import add_store_option, open_durable, using


def register(sub: Any) -> None:
    p = sub.add_parser("groups", help="approver groups: add, remove or list members (audited)")
    actions = p.add_subparsers(dest="groups_action", metavar="ACTION", required=True)
    for name, helptext in (
        ("add", "make USERs members of GROUP (creates the journal if needed)"),
        ("remove", "take USERs out of GROUP"),
    ):
        a = actions.add_parser(name, help=helptext)
        a.add_argument("group", metavar="GROUP", help="the group (`finance` or `group:finance`)")
        a.add_argument("users", metavar="USER", nargs="+")
        add_store_option(a)
        a.set_defaults(func=change, adding=name == "add")
    a = actions.add_parser("list", help="groups and their members")
    a.add_argument("group", metavar="GROUP", nargs="?", help="only this group")
    add_store_option(a)
    a.add_argument("--json", action="store_true", help="JSON: {group: [members]}")
    a.set_defaults(func=list_groups)


def _open(url: str, create: bool, readonly: bool = False) -> Any:
    """The durable store at `url`. `add` may create the journal (groups are often set up before
    any run); `remove` and `list` never do."""
    return open_durable(url, create=create, readonly=readonly, what="groups")


def change(args: argparse.Namespace) -> int:
    from sagac import check_group_name, check_user_names

    group = check_group_name(args.group)
    users = check_user_names(args.users)
    store = _open(args.store, create=args.adding)
    if args.adding:
        done = using(store, lambda s: s.add_group_members(group, users))
        verb, already = "added to", "already in"
    else:
        done = using(store, lambda s: s.remove_group_members(group, users))
        verb, already = "removed from", "not in"
    if done:
        print(f"{', '.join(done)} {verb} group:{group}")
    rest = [u for u in dict.fromkeys(users) if u not in done]
    if rest:
        print(f"{', '.join(rest)} {'was' if len(rest) == 1 else 'were'} {already} group:{group}")
    return ExitCode.OK


def list_groups(args: argparse.Namespace) -> int:
    from sagac import check_group_name

    group = check_group_name(args.group) if args.group else None
    groups = using(_open(args.store, False, readonly=True), lambda s: s.group_members(group))
    if group is not None and not groups:
        raise UsageError(
            f"no group {group!r} in this journal", hint=f"sagac groups add {group} USER"
        )
    if args.json:
        print(json.dumps(groups, indent=2))
        return ExitCode.OK
    if not groups:
        print("no groups (add members with `sagac groups add GROUP USER`)", file=sys.stderr)
    for name, members in groups.items():
        print(f"group:{name}  {', '.join(members)}")
    return ExitCode.OK
