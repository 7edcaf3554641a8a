"""Shared test fixtures, one module per kind.

* `deferreds`: ``async def`` tests, blocking calls off the reactor, waiting.
* `databases`: migrated SQLite and PostgreSQL databases copied from a template
  migrated once per run; ``for_each_backend``.
* `server`: a real server on port 0 (`ServerTestCase`) and raw WebSockets to it.
* `client`: python-socketio's client, recording what it receives.
* `chat`: named users with sockets, friendships and database peeks (`ChatCase`).
* `rawclient`: Engine.IO frames by hand, over WebSocket and long-polling.
* `fakes`: stand-ins for a socket, its transport and an Engine.IO handler.
* `cluster`: several nodes on one PostgreSQL database and one Redis.
* `node`: a node built in-process on a `Clock`, driven through fake sockets.
* `daemon`: ``twistd -n umoc`` in a subprocess.
* `web`: ``DummyRequest``-style requests rendered through the node's `Site`.
"""
