"""Link previews (``messages.link_previews``): after a text message is acked, its first URL's card.

`LinkPreviews.after_send` is all ``send_message`` pays: a substring test
for ``http`` (nothing else for a message without one) and, with one, a
background task the sender's ack never waits for.  The task finds the first
http(s) URL, reuses the URL's cached fetch when younger than
``previews.ttl`` (a failed fetch is cached too, so a dead link is not
hammered), otherwise fetches it through the guarded outbound agent
(`umoc.outbound.previews`; one fetch per URL at a time on this node),
attaches the preview to the message with its feed row, and tells the
members who got the message ``message_preview``.  A refused or failed
preview simply has none.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.cluster.hub import Hub
from umoc.config import Config
from umoc.domain import notices
from umoc.domain.notices import replay, shapes
from umoc.outbound.previews import PreviewFetcher, first_url
from umoc.records.previews import LinkPreview
from umoc.storage import Storage
from umoc.storage.messages import Message

__all__ = ["LinkPreviews"]

log = Logger()


class LinkPreviews:
    #: Pages fetched at once on this node; more wait their turn.
    MAX_FETCHES = 8
    #: Previews started and not finished past which a new message gets none (a flood of links
    #: must not grow memory without bound; its messages are delivered all the same).
    MAX_PENDING = 500

    def __init__(
        self, storage: Storage, hub: Hub, clock: IReactorTime, config: Config, fetcher: PreviewFetcher
    ) -> None:
        self._storage = storage
        self._hub = hub
        self._clock = clock
        self._config = config
        self.fetcher = fetcher
        #: Fetches under way by URL: a second message with the same URL waits for the first fetch.
        self._fetching: dict[str, defer.Deferred[LinkPreview | None]] = {}
        #: Background tasks under way (tests wait for them with `idle`).
        self._tasks: set[defer.Deferred[None]] = set()
        self._slots = defer.DeferredSemaphore(self.MAX_FETCHES)
        #: Messages left without a preview because `MAX_PENDING` were under way.
        self.dropped = 0

    def after_send(self, message: Message, audience: list[int]) -> None:
        """Called once the message is stored and told: start its preview if it may have one."""
        if (
            not self._config.messages.link_previews
            or message.type != "text"
            or message.encrypted_content is not None
            or "http" not in message.content
        ):
            return
        if len(self._tasks) >= self.MAX_PENDING:
            self.dropped += 1
            return
        d = defer.ensureDeferred(self._preview(message, audience))
        self._tasks.add(d)
        d.addErrback(lambda failure: log.failure("Link preview failed", failure))
        d.addBoth(lambda _: self._tasks.discard(d))

    async def idle(self) -> None:
        """Wait until every preview started so far has been attached or given up."""
        while self._tasks:
            await defer.DeferredList(list(self._tasks), consumeErrors=True)

    async def _preview(self, message: Message, audience: list[int]) -> None:
        url = first_url(message.content)
        if url is None:
            return
        preview = await self.preview_for(url)
        if preview is None:
            return
        if not await self._storage.previews.attach(message.seq, message.chat_id, preview, self._clock.seconds()):
            return
        shown = replace(message, preview=preview)
        key = replay.preview(message.id)
        if message.is_group:
            self._hub.tell(
                audience, notices.MESSAGE_PREVIEW(shapes.message_preview(shown, message.recipient_id)), key=key
            )
            return
        for viewer, chat_id in ((message.sender_id, message.recipient_id), (message.recipient_id, message.sender_id)):
            if viewer in audience:
                self._hub.tell([viewer], notices.MESSAGE_PREVIEW(shapes.message_preview(shown, chat_id)), key=key)

    async def preview_for(self, url: str) -> LinkPreview | None:
        """The URL's preview: cached when fresh, else fetched (once per URL at a time) and cached."""
        cached = await self._storage.previews.cached(url)
        if cached is not None and cached.fetched_at > self._clock.seconds() - self._config.previews.ttl:
            return None if cached.preview is None else replace(cached.preview, url=url)
        running = self._fetching.get(url)
        if running is not None:
            return await _follow(running)
        d = self._slots.run(lambda: defer.ensureDeferred(self._fetch(url)))
        self._fetching[url] = d
        try:
            return await _follow(d)
        finally:
            self._fetching.pop(url, None)

    async def _fetch(self, url: str) -> LinkPreview | None:
        """Never fails: a fault is logged and is a preview of None (for everyone waiting on it)."""
        try:
            fetched = await self.fetcher.fetch(url)
            preview = (
                None
                if fetched is None
                else LinkPreview(url, fetched.title, fetched.description, fetched.site_name, fetched.image_id)
            )
            await self._storage.previews.remember(url, preview, self._clock.seconds())
        except Exception:  # noqa: BLE001 - a preview is optional; the message was delivered long ago
            log.failure("Link preview fetch failed")
            return None
        return preview

    def close(self) -> defer.Deferred[Any]:
        return self.fetcher.close()


def _follow(d: defer.Deferred[LinkPreview | None]) -> defer.Deferred[LinkPreview | None]:
    """A Deferred firing with ``d``'s result (``d`` never fails), leaving it for ``d``'s other followers."""
    follower: defer.Deferred[LinkPreview | None] = defer.Deferred()

    def relay(result: LinkPreview | None) -> LinkPreview | None:
        follower.callback(result)
        return result

    d.addCallback(relay)
    return follower
