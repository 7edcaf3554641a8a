"""``GET /api/push/vapid_public_key``: the key browsers subscribe with (``applicationServerKey``)."""

from __future__ import annotations

from twisted.web import resource
from twisted.web.iweb import IRequest

from umoc.domain.push import PushNotifier
from umoc.web.jsonapi import HttpError, JsonFolder, JsonResource, write_json

__all__ = ["push_resource"]


def push_resource(push: PushNotifier) -> resource.Resource:
    async def vapid_public_key(request: IRequest) -> None:
        if push.vapid is None:
            raise HttpError(404, "Web Push is not available on this server", code="not_found")
        write_json(request, 200, {"public_key": push.vapid.public_key})

    return JsonFolder({b"vapid_public_key": JsonResource({b"GET": vapid_public_key})})
