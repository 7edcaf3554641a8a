"""A TCP proxy on 127.0.0.1 that can go silent: connections stay open and nothing is forwarded.

What a network partition looks like from the client: the peer's kernel
accepts and acknowledges every byte (so neither keepalives nor
``tcp_user_timeout`` fire on loopback), and no answer ever comes.  Bytes
sent while silent are dropped, not held back, so a request made then is
never answered, even once the proxy forwards again.

It runs in a thread of its own, with plain sockets, so it keeps accepting
and reading whatever the reactor's threads are blocked on.
"""

from __future__ import annotations

import selectors
import socket
import threading

__all__ = ["SilentProxy"]


class SilentProxy:
    """Forwards ``127.0.0.1:<port>`` to ``(host, port)``; set ``silent`` to drop everything instead."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        #: While True, bytes read from either side are dropped and new connections are accepted, not forwarded.
        self.silent = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._peers: dict[socket.socket, socket.socket | None] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="silent-proxy", daemon=True)
        self._thread.start()

    def dsn(self, dsn: str) -> str:
        """``dsn`` (``postgresql://user@host:port/db``) pointed at this proxy instead."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(dsn)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def stop(self) -> None:
        """End the loop and close every socket.

        The waking socket is the caller's to close, after the join: the loop
        can see ``_stopping`` on its own one-second timeout and finish before
        the wake byte is sent, and a socket it had closed would make that send
        fail with EBADF (and a send after the loop closed its end, with EPIPE).
        """
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # the loop has already finished: nothing to wake
        self._thread.join(5)
        self._wake_w.close()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        upstream: socket.socket | None = None
        if not self.silent:
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                return
            upstream.setblocking(True)
            self._peers[upstream] = client
            self._selector.register(upstream, selectors.EVENT_READ, None)
        client.setblocking(True)
        self._peers[client] = upstream
        self._selector.register(client, selectors.EVENT_READ, None)

    def _close(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._peers.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _loop(self) -> None:
        try:
            while not self._stopping:
                for key, _ in self._selector.select(1.0):
                    sock = key.fileobj
                    if key.data == "wake":
                        continue
                    if sock is self._listener:
                        self._accept()
                        continue
                    if sock not in self._peers:
                        continue
                    try:
                        data = sock.recv(65536)  # type: ignore[union-attr]
                    except OSError:
                        data = b""
                    if not data:
                        self._close(sock)  # type: ignore[arg-type]
                        continue
                    peer = self._peers.get(sock)  # type: ignore[arg-type]
                    if self.silent or peer is None:
                        continue  # dropped: the partition
                    try:
                        peer.sendall(data)
                    except OSError:
                        self._close(sock)  # type: ignore[arg-type]
        finally:
            for sock in list(self._peers):
                self._close(sock)
            self._selector.close()
            self._listener.close()
            self._wake_r.close()
