"""`TokenVerifier` and `JwksCache` on a `Clock`: times, keys by kind, and how often the key set is fetched."""

from __future__ import annotations

import json
import tempfile
from typing import Any

from twisted.internet import defer, task
from twisted.trial import unittest

from tests.support.deferreds import inline
from tests.support.identity import ISSUER, SigningKey, hs256_with
from umoc.config import JwtAuthConfig
from umoc.domain.tokens import TokenError, TokenVerifier
from umoc.outbound.http import HttpResult

NOW = 1_800_000_000


class FakeJwksHttp:
    """Answers GETs with the current ``keys``; ``hold`` keeps the answers until `release`."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = keys
        self.gets = 0
        self.fail = False
        self.held: list[defer.Deferred[HttpResult]] | None = None

    def get(self, url: str, headers: dict[str, str], timeout: float) -> defer.Deferred[HttpResult]:
        self.gets += 1
        if self.fail:
            return defer.fail(ConnectionRefusedError())
        body = json.dumps({"keys": [k.public_jwk() for k in self.keys]}).encode()
        answer = HttpResult(200, body, {})
        if self.held is not None:
            d: defer.Deferred[HttpResult] = defer.Deferred()
            d.addCallback(lambda _: answer)
            self.held.append(d)
            return d
        return defer.succeed(answer)

    def release(self) -> None:
        held, self.held = self.held or [], None
        for d in held:
            d.callback(None)


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": ISSUER, "aud": "umoc", "sub": "s-1", "iat": NOW, "exp": NOW + 300, **extra}


class TokenVerifierTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.key = SigningKey.rsa("k1")
        self.http = FakeJwksHttp([self.key])

    def verifier(self, **config: Any) -> TokenVerifier:
        settings: dict[str, Any] = {"enabled": True, "issuer": ISSUER, "jwks_url": "https://idp.test/jwks", **config}
        return TokenVerifier(JwtAuthConfig(**settings), self.clock, self.http)

    async def refusal(self, verifier: TokenVerifier, token: str) -> str:
        with self.assertRaises(TokenError) as caught:
            await verifier.verify(token)
        return caught.exception.message

    @inline
    async def test_expiry_and_not_before_use_the_nodes_clock_with_leeway(self) -> None:
        verifier = self.verifier()
        token = self.key.sign(claims(nbf=NOW + 20))
        self.assertEqual((await verifier.verify(token)).subject, "s-1")  # within the 30s leeway
        self.clock.advance(300 + 29)
        await verifier.verify(token)
        self.clock.advance(2)
        self.assertEqual(await self.refusal(verifier, token), "Token expired")
        self.assertEqual(
            await self.refusal(verifier, self.key.sign(claims(nbf=NOW + 3600, exp=NOW + 7200))), "Invalid token"
        )

    @inline
    async def test_key_set_is_kept_refreshed_and_an_unknown_kid_refetches_once_per_period(self) -> None:
        verifier = self.verifier(jwks_refresh=600.0)
        await verifier.verify(self.key.sign(claims()))
        await verifier.verify(self.key.sign(claims()))
        self.assertEqual(self.http.gets, 1)
        stranger = SigningKey.rsa("k9")
        for _ in range(5):
            self.assertEqual(await self.refusal(verifier, stranger.sign(claims())), "Unknown key id")
        self.assertEqual(self.http.gets, 2)  # one refetch for the new kid, not five
        self.clock.advance(600)
        self.http.keys = [self.key, stranger]
        await verifier.verify(stranger.sign(claims(exp=NOW + 3600)))
        self.assertEqual(self.http.gets, 3)  # stale: fetched again on use

    @inline
    async def test_concurrent_verifications_share_one_fetch(self) -> None:
        verifier = self.verifier()
        self.http.held = []
        pending = [defer.ensureDeferred(verifier.verify(self.key.sign(claims()))) for _ in range(5)]
        self.assertEqual(self.http.gets, 1)
        self.http.release()
        results = await defer.gatherResults(pending)
        self.assertEqual({r.subject for r in results}, {"s-1"})

    @inline
    async def test_a_failed_refetch_keeps_the_old_keys(self) -> None:
        verifier = self.verifier()
        await verifier.verify(self.key.sign(claims()))
        self.clock.advance(600)
        self.http.fail = True
        self.assertEqual((await verifier.verify(self.key.sign(claims(exp=NOW + 3600)))).subject, "s-1")
        self.assertEqual(self.http.gets, 2)

    @inline
    async def test_hmac_token_is_refused_without_a_secret_and_never_checked_with_a_public_key(self) -> None:
        pem_file = tempfile.NamedTemporaryFile(suffix=".pem", delete=False)  # noqa: SIM115 - kept for the verifier
        pem_file.write(self.key.public_pem())
        pem_file.close()
        verifier = self.verifier(jwks_url="", public_key_file=pem_file.name)
        self.assertEqual((await verifier.verify(self.key.sign(claims()))).subject, "s-1")
        confused = hs256_with(self.key.public_pem(), claims())
        self.assertEqual(await self.refusal(verifier, confused), "Invalid token")

    @inline
    async def test_a_key_of_another_kind_than_the_algorithm_is_refused(self) -> None:
        ec = SigningKey.ec("k1")  # publishes kid k1 as an EC key
        self.http.keys = [ec]
        verifier = self.verifier()
        forged = self.key.sign(claims())  # RS256 naming kid k1
        self.assertEqual(await self.refusal(verifier, forged), "Invalid token")
        self.assertEqual((await verifier.verify(ec.sign(claims()))).subject, "s-1")

    @inline
    async def test_algorithms_outside_the_list_are_refused(self) -> None:
        verifier = self.verifier(algorithms=("RS256",), hmac_secret="s" * 32)
        self.assertEqual(await self.refusal(verifier, hs256_with(b"s" * 32, claims())), "Invalid token")
        self.assertEqual(await self.refusal(verifier, SigningKey.ec("k1").sign(claims())), "Invalid token")
