"""``/api/oidc/``: sign-in with an OpenID Connect provider, for the web client (``auth.oidc``).

::

    GET config    -> 200 {"enabled", "provider"}         the web client shows "Sign in with <provider>"
    GET login     -> 302 to the provider, Set-Cookie oidc_state (the signed state: HttpOnly, SameSite=Lax)
    GET callback?code&state[&iss]
                  -> 302 /#oidc=<base64url JSON of the session, as POST /api/login answers it>
                  -> 302 /#oidc_error=<message>           (the web client shows it)

The session travels in the URL's fragment, which browsers never send to a
server (no access log, no Referer holds it); the web client takes it and
clears the address bar.  The rules are `umoc.domain.oidc` and
`umoc.domain.commands.sessions.oidc_session`; this module parses and redirects.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, urlsplit

from twisted.web import resource
from twisted.web.iweb import IRequest

from umoc.domain.commands import sessions
from umoc.domain.oidc import COOKIE, STATE_TTL
from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.records.sessions import OidcCallback
from umoc.transport.gate import Gatekeeper
from umoc.web.jsonapi import JsonFolder, JsonResource, write_json

__all__ = ["oidc_resource"]


def _redirect(request: IRequest, location: str, cookie: str | None = None) -> None:
    request.setResponseCode(302)
    request.setHeader(b"Location", location.encode("ascii"))
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"Referrer-Policy", b"no-referrer")
    if cookie is not None:
        request.setHeader(b"Set-Cookie", cookie.encode("ascii"))
    request.setHeader(b"Content-Length", b"0")
    request.finish()


class OidcApi:
    def __init__(self, services: Services, gate: Gatekeeper) -> None:
        self._services = services
        self._gate = gate
        config = services.config.auth.oidc
        self._secure = "; Secure" if config.redirect_url.startswith("https://") else ""
        self._provider = urlsplit(config.issuer).hostname or "your provider"

    def _client(self, request: IRequest) -> str:
        headers = {k.decode("latin-1"): v[0].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()}
        return self._gate.client_ip(request.getClientAddress().host, headers)

    def _cookie(self, value: str, max_age: int) -> str:
        return f"{COOKIE}={value}; Path=/api/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{self._secure}"

    async def config(self, request: IRequest) -> None:
        enabled = self._services.oidc.enabled
        write_json(request, 200, {"enabled": enabled, "provider": self._provider if enabled else None})

    async def login(self, request: IRequest) -> None:
        actor = sessions.client_actor(self._client(request))
        try:
            started = await sessions.oidc_start(self._services, actor)
        except sessions.RateLimitedError:
            raise
        except UserError as exc:
            _redirect(request, "/#oidc_error=" + quote(exc.message))
            return
        _redirect(request, started.location, self._cookie(started.cookie, STATE_TTL))

    async def callback(self, request: IRequest) -> None:
        def arg(name: bytes) -> str:
            values = request.args.get(name) or [b""]
            return values[0].decode("utf-8", "replace")[:4096]

        forget = self._cookie("", 0)
        error = arg(b"error")
        if error:  # the user declined, or the provider refused the request
            _redirect(request, "/#oidc_error=" + quote(f"The sign-in provider answered: {error[:100]}"), forget)
            return
        cookie = request.getCookie(COOKIE.encode("ascii"))
        iss = arg(b"iss") if b"iss" in request.args else None
        record = OidcCallback(arg(b"code"), arg(b"state"), cookie.decode("ascii", "replace") if cookie else None, iss)
        actor = sessions.client_actor(self._client(request))
        try:
            answer = await sessions.oidc_session(self._services, actor, record)
        except sessions.RateLimitedError:
            raise
        except UserError as exc:
            _redirect(request, "/#oidc_error=" + quote(exc.message), forget)
            return
        blob = base64.urlsafe_b64encode(json.dumps(answer, separators=(",", ":")).encode()).rstrip(b"=")
        _redirect(request, "/#oidc=" + blob.decode("ascii"), forget)


def oidc_resource(services: Services, gate: Gatekeeper) -> resource.Resource:
    api = OidcApi(services, gate)
    return JsonFolder(
        {
            b"config": JsonResource({b"GET": api.config}),
            b"login": JsonResource({b"GET": api.login}),
            b"callback": JsonResource({b"GET": api.callback}),
        }
    )
