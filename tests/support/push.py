"""Real HTTP servers for the push and webhook tests, started inside the test on 127.0.0.1 port 0.

`PushService` is a Web Push endpoint as a browser vendor runs one: it
checks the VAPID JWT's ES256 signature against the key in the
``Authorization`` header (and that key against the server's published
one), checks the claims, and decrypts the aes128gcm body with the
subscription's private key, as the browser would.  `Gateway` is a Matrix
push gateway; `WebhookReceiver` checks the HMAC signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from twisted.internet import defer, endpoints, protocol, reactor
from twisted.trial import unittest
from twisted.web import resource, server

from tests.support.deferreds import sleep


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_vapid(header: str, origin: str) -> tuple[str, dict[str, Any]]:
    """``(public key, claims)`` of a valid ``vapid t=<jwt>, k=<key>`` header; AssertionError otherwise."""
    scheme, _, params = header.partition(" ")
    assert scheme.lower() == "vapid", header
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    key_text, token = parts["k"], parts["t"]
    signing_input, _, signature = token.rpartition(".")
    header_b64, claims_b64 = signing_input.split(".")
    assert json.loads(unb64url(header_b64)) == {"typ": "JWT", "alg": "ES256"}
    raw = unb64url(signature)
    assert len(raw) == 64
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key_text))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public.verify(der, signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AssertionError("VAPID JWT signature does not verify") from None
    claims = json.loads(unb64url(claims_b64))
    assert claims["aud"] == origin, (claims, origin)
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600, claims
    assert claims["sub"].startswith("mailto:"), claims
    return key_text, claims


@dataclass
class Subscription:
    """A browser's push subscription: its own key pair and auth secret."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def as_json(self) -> dict[str, Any]:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)}}


class PushService(resource.Resource):
    """Web Push endpoints ``/push/<name>``; each name answers 201, 410 (``gone``), 303 to ``redirect_to``
    (``redirect``), or never (``hang``)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.url = ""
        self.subscriptions: dict[bytes, Subscription] = {}
        self.behaviour: dict[bytes, str] = {}
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.vapid_keys: list[str] = []
        self.problems: list[str] = []
        self.hanging: list[Any] = []
        #: Where ``redirect`` subscriptions send the push (a 303).
        self.redirect_to = ""

    def subscribe(self, name: str, behaviour: str = "ok") -> Subscription:
        path = f"/push/{name}".encode()
        sub = Subscription(self.url + path.decode())
        self.subscriptions[path] = sub
        self.behaviour[path] = behaviour
        return sub

    def render_POST(self, request: Any) -> Any:
        path = request.path
        sub = self.subscriptions.get(path)
        try:
            assert sub is not None, path
            key, _claims = verify_vapid(request.getHeader(b"authorization").decode(), self.url)
            self.vapid_keys.append(key)
            assert request.getHeader(b"content-encoding") == b"aes128gcm"
            assert int(request.getHeader(b"ttl")) > 0
            body = request.content.read()
            assert len(body) <= 4096
            plain = http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm")
            self.received.append((path.decode().rsplit("/", 1)[1], json.loads(plain)))
        except Exception as exc:  # noqa: BLE001 - recorded, and the test fails on it
            self.problems.append(repr(exc))
            request.setResponseCode(400)
            return b""
        behaviour = self.behaviour[path]
        if behaviour == "hang":
            self.hanging.append(request)
            return server.NOT_DONE_YET
        if behaviour == "redirect":
            request.setResponseCode(303)
            request.setHeader(b"location", self.redirect_to.encode())
            return b""
        request.setResponseCode(410 if behaviour == "gone" else 201)
        return b""

    def for_(self, name: str) -> list[dict[str, Any]]:
        return [payload for who, payload in self.received if who == name]


class Gateway(resource.Resource):
    """A Matrix push gateway: ``POST /_matrix/push/v1/notify``; pushkeys in ``reject`` are answered rejected."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.url = ""
        self.received: list[dict[str, Any]] = []
        self.reject: set[str] = set()

    def render_POST(self, request: Any) -> bytes:
        assert request.path == b"/_matrix/push/v1/notify", request.path
        body = json.loads(request.content.read())
        self.received.append(body)
        devices = body["notification"]["devices"]
        rejected = [d["pushkey"] for d in devices if d["pushkey"] in self.reject]
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"rejected": rejected}).encode()


class WebhookReceiver(resource.Resource):
    """Checks ``X-UMOC-Signature`` over ``timestamp.body``; the first ``fail_first`` deliveries get 500.

    ``answer_after`` seconds delays every answer (a slow receiver; ``in_flight``
    and ``max_in_flight`` count the deliveries it holds at once); ``hang``
    never answers (a dead one: the requests are held until the test ends).
    """

    isLeaf = True

    def __init__(self, secret: str, answer_after: float = 0, hang: bool = False) -> None:
        super().__init__()
        self.url = ""
        self.secret = secret
        self.fail_first = 0
        self.attempts = 0
        self.received: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.answer_after = answer_after
        self.hang = hang
        self.hanging: list[Any] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._answers: set[Any] = set()

    def render_POST(self, request: Any) -> Any:
        if self.hang:
            self.attempts += 1
            self.hanging.append(request)
            return server.NOT_DONE_YET
        if not self.answer_after:
            return self.answer(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def later() -> None:
            self._answers.discard(call)
            self.in_flight -= 1
            if not gone:
                request.write(self.answer(request))
                request.finish()

        call = reactor.callLater(self.answer_after, later)
        self._answers.add(call)
        return server.NOT_DONE_YET

    def stop(self) -> None:
        """Answers not given yet are never given (the test is over)."""
        for call in self._answers:
            call.cancel()
        self._answers.clear()

    def answer(self, request: Any) -> bytes:
        self.attempts += 1
        body = request.content.read()
        stamp = request.getHeader(b"x-umoc-timestamp").decode()
        expected = "sha256=" + hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.getHeader(b"x-umoc-signature").decode()):
            self.problems.append("bad signature")
            request.setResponseCode(401)
            return b""
        if abs(int(stamp) - time.time()) > 300:
            self.problems.append("old timestamp")
        if self.attempts <= self.fail_first:
            request.setResponseCode(500)
            return b""
        self.received.append(json.loads(body))
        return b"ok"


class Flood(protocol.Protocol):
    """On the first bytes of a request: writes ``head``, then ``chunk`` again and again until the connection
    goes (a pull producer, so the kernel's buffers bound what is in flight)."""

    def __init__(self, owner: FloodServer) -> None:
        self.owner = owner
        self.started = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.started:
            return
        self.started = True
        self.owner.connections += 1
        self.transport.write(self.owner.head)
        if self.owner.chunk:
            self.transport.registerProducer(self, False)

    def resumeProducing(self) -> None:  # noqa: N802
        self.transport.write(self.owner.chunk)
        self.owner.sent += len(self.owner.chunk)

    def stopProducing(self) -> None:  # noqa: N802
        pass

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.owner.lost += 1


class FloodServer(protocol.Factory):
    def __init__(self, head: bytes, chunk: bytes) -> None:
        self.head = head
        self.chunk = chunk
        self.sent = 0
        self.connections = 0
        self.lost = 0

    def buildProtocol(self, addr: Any) -> Flood:  # noqa: N802
        return Flood(self)


async def serve_flood(test: unittest.TestCase, flood: FloodServer) -> str:
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(flood)
    test.addCleanup(port.stopListening)
    return f"http://127.0.0.1:{port.getHost().port}"


async def serve(test: unittest.TestCase, root: Any, interface: str = "127.0.0.1") -> str:
    """Listen on ``interface`` (a loopback address) port 0; the base URL.  Closed, hanging requests too,
    when the test ends."""
    site = server.Site(root)
    site.noisy = False
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface=interface).listen(site)

    async def close() -> None:
        abort(root)
        if hasattr(root, "stop"):
            root.stop()
        await port.stopListening()

    test.addCleanup(lambda: defer.ensureDeferred(close()))
    url = f"http://{interface}:{port.getHost().port}"
    root.url = url
    return url


def abort(root: Any) -> None:
    """Drop the connections of the requests ``root`` holds unanswered: their senders see the connection lost."""
    for request in getattr(root, "hanging", []):
        if not request.finished and request.channel is not None:
            request.channel.transport.abortConnection()


async def until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    """Wait for ``predicate()``; a test that means a bound (not merely a wait) passes its own ``timeout``.

    The default is generous: CI runs the suite two at a time on a loaded
    machine, where a delivery taking a few seconds is slowness, not a bug, and
    a condition that holds ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await sleep(0.02)
