"""``hooks.before_message``: the operator's service sees each message before it is stored.

A signed POST (``X-UMOC-Timestamp``, ``X-UMOC-Signature`` as webhooks are
signed) of ``{"message", "sender", "chat"}``; the answer ``{"action":
"allow" | "reject" | "replace", "reason"?, "content"?}`` decides.  The
request is asynchronous on the reactor (Twisted's HTTP client): the reactor
never waits for it, so a slow hook delays only the message it checks.  At
most `MAX_IN_FLIGHT` requests are outstanding per node; past that, and on
any failure (no answer within ``timeout``, a refused connection, a non-2xx
status, an answer that is not one of the three), ``on_failure`` decides:
``allow`` stores the message unchecked, ``reject`` refuses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.config import BeforeMessageHookConfig
from umoc.outbound import HttpClient, webhook_headers

__all__ = ["MAX_IN_FLIGHT", "BeforeMessageHook", "HookVerdict"]

log = Logger()

#: Requests to the hook outstanding at once on a node; past it a message is treated as a failure.
MAX_IN_FLIGHT = 256
#: The largest answer read: a replacement is a message's content, at most a few tens of KB.
_FAILED = "the message check is unavailable"


@dataclass(frozen=True, slots=True)
class HookVerdict:
    """``allow`` (``content`` None), ``replace`` (the new ``content``) or ``reject`` (with ``reason``)."""

    action: str
    content: str | None = None
    reason: str | None = None


class BeforeMessageHook:
    def __init__(self, config: BeforeMessageHookConfig, http: HttpClient, clock: IReactorTime) -> None:
        self._config = config
        self._http = http
        self._clock = clock
        self.in_flight = 0

    def _failed(self, why: str) -> HookVerdict:
        log.warn("hooks.before_message failed ({why}): on_failure is {action}", why=why, action=self._config.on_failure)
        if self._config.on_failure == "reject":
            return HookVerdict("reject", reason=_FAILED)
        return HookVerdict("allow")

    async def check(self, message: dict[str, Any], sender: dict[str, Any], chat: dict[str, Any]) -> HookVerdict:
        """The hook's verdict on one message about to be stored (`_failed`'s when it gives none)."""
        if self.in_flight >= MAX_IN_FLIGHT:
            return self._failed(f"{MAX_IN_FLIGHT} requests outstanding")
        body = json.dumps({"message": message, "sender": sender, "chat": chat}, separators=(",", ":")).encode()
        headers = webhook_headers(self._config.secret, int(self._clock.seconds()), body)
        self.in_flight += 1
        try:
            answer = await self._http.post(self._config.url, body, headers, self._config.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure to get an answer is on_failure's to decide
            return self._failed(type(exc).__name__)
        finally:
            self.in_flight -= 1
        if not 200 <= answer.code < 300:
            return self._failed(f"status {answer.code}")
        try:
            verdict = json.loads(answer.body)
        except ValueError:
            return self._failed("an answer that is not JSON")
        if not isinstance(verdict, dict):
            return self._failed("an answer that is not a JSON object")
        action, reason, content = verdict.get("action"), verdict.get("reason"), verdict.get("content")
        if action == "allow":
            return HookVerdict("allow")
        if action == "reject":
            return HookVerdict("reject", reason=reason if isinstance(reason, str) and reason else "rejected")
        if action == "replace" and isinstance(content, str) and content:
            return HookVerdict("replace", content=content)
        return self._failed(f"an unknown answer {str(action)[:40]!r}")
