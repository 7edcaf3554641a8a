"""``delete_account``: a user deletes their own account.

::

    client: delete_account {password, erase?: false}
    server: account_deleted {}  (to every socket of the user, on every node; the ack is {})
    server: session_status {valid: false, ...} and a disconnect, to each of those sockets

The password is checked as a login checks it, and attempts are limited
like logins (``ratelimits.login_name``, per user), so a stolen session
cannot guess its way to deleting the account.  What deletion removes and
who is told is `umoc.domain.accounts.Accounts`'s, through the command
`umoc.domain.commands.account.delete_own`.
"""

from __future__ import annotations

from typing import Any

from umoc.domain.commands import account
from umoc.events.router import EventContext, Route
from umoc.records.account import OwnDeletion
from umoc.records.schema import SESSION_ID, Bool, Schema, Str

__all__ = ["ROUTES"]


async def delete_account(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Sessions end one reactor turn later: after the router has sent this socket its ack."""
    return await account.delete_own(ctx.services, ctx.actor, OwnDeletion(payload["password"], payload["erase"]))


ROUTES = [
    Route(
        "delete_account",
        Schema(SESSION_ID, Str("password", max_length=1024), Bool("erase", required=False, default=False)),
        delete_account,
        rate_class="login_name",
    ),
]
