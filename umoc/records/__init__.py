"""What a state change is, as frozen records: who asks (`Actor`) and what they ask for.

Every edge (socket handlers, the bot and admin HTTP edges, ``umoc-admin``,
the server API) parses its input into one record and calls one domain
command with it (``umoc.domain.commands``).  A record validates itself once,
in its constructor or its ``checked(limits)`` method, so the rules on what
a message, an edit or a group change may hold live here and not in each
edge.  Storage takes the same records, so a message travels as one object
from the edge to the SQL instead of a dozen positional parameters.

Records import nothing above the configuration: storage and the domain
both use them.  One module per area (``records.messages``,
``records.groups``, ...); `Actor` is shared by all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Actor", "Via"]

#: The edge a command came through: it decides nothing about permissions, which follow the user,
#: but it is what logs, webhooks and the audit trail say.
Via = Literal["socket", "bot", "admin_api", "cli", "server_api", "system"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change: a user (through a socket, a bot token, the server API) or an operator.

    ``user_id`` is None for an operator acting through ``umoc-admin`` or the
    admin API on behalf of nobody; ``name`` is then the operator's label
    (``"admin:<username>"`` or ``"umoc-admin"``) as logs and webhooks give it.
    """

    user_id: int | None
    name: str
    via: Via = "socket"
    session_id: str | None = None
    is_admin: bool = False
    #: Where the request came from, for the audit log: the client address (HTTP, sockets), ``"cli"`` for
    #: ``umoc-admin``; None when nobody said.
    address: str | None = None

    @classmethod
    def user(
        cls,
        user_id: int,
        username: str,
        via: Via = "socket",
        session_id: str | None = None,
        address: str | None = None,
    ) -> Actor:
        return cls(user_id, username, via, session_id, False, address)

    @classmethod
    def operator(cls, name: str, via: Via, user_id: int | None = None, address: str | None = None) -> Actor:
        return cls(user_id, name, via, None, True, address)

    @property
    def uid(self) -> int:
        """The acting user's id; a command that needs a user refuses an operator without one."""
        if self.user_id is None:
            raise ValueError(f"{self.name} acts for no user")
        return self.user_id
