"""``twistd -n umoc`` in a subprocess, as a sysadmin runs it."""

from __future__ import annotations

import re

from twisted.internet import defer, protocol

__all__ = ["TWISTD", "Daemon"]

TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


class Daemon(protocol.ProcessProtocol):
    """Collects output; fires ``listening`` with the port and ``ended`` with the exit status."""

    def __init__(self) -> None:
        self.output = b""
        self.listening: defer.Deferred[int] = defer.Deferred()
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        match = re.search(rb"UMOC listening on IPv4Address\(type='TCP', host='127.0.0.1', port=(\d+)\)", self.output)
        if match and not self.listening.called:
            self.listening.callback(int(match.group(1)))

    errReceived = outReceived

    def processEnded(self, reason: object) -> None:
        code = getattr(getattr(reason, "value", None), "exitCode", None)
        if not self.listening.called:
            self.listening.errback(RuntimeError(self.output.decode(errors="replace")))
        self.ended.callback(code)
