"""The in-process chat tests once more over a real port with python-socketio, where the wire is the point.

`tests.support.inprocess.LocalClient` and `tests.support.client.Client`
answer the same interface, so a mixin written for the in-process node runs
unchanged against the real server: here the direct-message and group flows
run over WebSocket frames on SQLite, proving that what the in-process tests
see is what a stock client receives.  The read state tests (issue 24) run
with two real clients logged in as the same user.
"""

from __future__ import annotations

from tests.events.test_groups import GroupTestsMixin
from tests.events.test_messages import DirectMessageTestsMixin
from tests.events.test_pins import PinTestsMixin
from tests.events.test_polls import PollTestsMixin
from tests.events.test_read_state import ReadStateTestsMixin
from tests.support.chat import ChatCase


class DirectMessagesOverTheWireTests(DirectMessageTestsMixin, ChatCase):
    backend = "sqlite"


class GroupsOverTheWireTests(GroupTestsMixin, ChatCase):
    backend = "sqlite"


class ReadStateOverTheWireTests(ReadStateTestsMixin, ChatCase):
    """Two python-socketio clients logged in as one user: each gets ``chat_read`` and ``chat_muted`` once."""

    backend = "sqlite"


class PinsOverTheWireTests(PinTestsMixin, ChatCase):
    """Issue 30: pins and polls with stock python-socketio clients."""

    backend = "sqlite"


class PollsOverTheWireTests(PollTestsMixin, ChatCase):
    backend = "sqlite"
