"""Push registrations: a browser's Web Push subscription, or a device's pushkey at a gateway."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from umoc.errors import UserError

__all__ = ["PushRegistration", "PushRemoval", "PushSwitch"]


def _text(value: Any, name: str, max_length: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise UserError(f"Invalid '{name}': expected 1 to {max_length} characters", code="invalid_argument")
    return value


@dataclass(frozen=True, slots=True)
class PushRegistration:
    """What ``register_push`` asks for, in its shape; the server's policy (https only, known gateways,
    a real P-256 key) is checked by the command (`umoc.domain.commands.push.register`).

    ``webpush``: ``endpoint``, ``p256dh`` and ``auth`` from the subscription;
    ``gateway``: ``app_id``, ``pushkey`` and the gateway's name ("default" if none given).
    """

    kind: Literal["webpush", "gateway"]
    endpoint: str | None = None
    p256dh: str | None = None
    auth: str | None = None
    app_id: str | None = None
    pushkey: str | None = None
    gateway: str = "default"

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> PushRegistration:
        """From ``register_push``'s payload (``kind``, ``subscription`` or ``app_id``/``pushkey``/``gateway``)."""
        kind = payload.get("kind")
        if kind == "webpush":
            subscription = payload.get("subscription")
            if subscription is None:
                raise UserError("Missing 'subscription'", code="invalid_argument")
            if not isinstance(subscription, dict):
                raise UserError(
                    "Invalid 'subscription': expected {endpoint, keys: {p256dh, auth}}", code="invalid_argument"
                )
            endpoint = _text(subscription.get("endpoint"), "subscription.endpoint", 2048)
            keys = subscription.get("keys")
            if not isinstance(keys, dict):
                raise UserError("Invalid 'subscription.keys': expected {p256dh, auth}", code="invalid_argument")
            return cls("webpush", endpoint, keys.get("p256dh"), keys.get("auth"))
        if kind == "gateway":
            if payload.get("app_id") is None or payload.get("pushkey") is None:
                raise UserError("Missing 'app_id' or 'pushkey'", code="invalid_argument")
            return cls(
                "gateway",
                app_id=payload["app_id"],
                pushkey=payload["pushkey"],
                gateway=payload.get("gateway") or "default",
            )
        raise UserError("Invalid 'kind': expected webpush or gateway", code="invalid_argument")

    def __post_init__(self) -> None:
        if self.kind == "webpush":
            endpoint = _text(self.endpoint, "subscription.endpoint", 2048)
            if not endpoint.startswith(("https://", "http://")):
                raise UserError("Invalid 'subscription.endpoint': expected an https:// URL", code="invalid_argument")
            _text(self.p256dh, "subscription.keys.p256dh", 128)
            _text(self.auth, "subscription.keys.auth", 64)
        elif self.kind == "gateway":
            _text(self.app_id, "app_id", 256)
            _text(self.pushkey, "pushkey", 1024)
            _text(self.gateway, "gateway", 64)
        else:
            raise UserError("Invalid 'kind': expected webpush or gateway", code="invalid_argument")


@dataclass(frozen=True, slots=True)
class PushRemoval:
    """End one of the user's registrations."""

    registration_id: str

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "registration_id", str(uuid.UUID(str(self.registration_id))))
        except ValueError:
            raise UserError("Invalid 'registration_id': expected a UUID string", code="invalid_argument") from None


@dataclass(frozen=True, slots=True)
class PushSwitch:
    """The user's own switch for every push to them."""

    enabled: bool

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise UserError("Invalid 'enabled': expected true or false", code="invalid_argument")
