"""Link previews: the per-URL cache and the preview each message shows.

``link_previews`` keeps one row per URL fetched (``ok`` = 0: the fetch gave
nothing to show, remembered so it is not retried within ``previews.ttl``);
``message_previews`` keeps a copy for each message that shows one, so a
later fetch of the same URL never changes what an older message showed.
Attaching a preview writes its ``preview`` feed row in the same
transaction: ``sync`` and the catch-up of reconnecting sockets carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from twisted.internet import defer

from umoc.records.previews import LinkPreview
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Txn, in_clause

__all__ = ["CachedPreview", "PreviewStore", "previews_for_txn"]


@dataclass(frozen=True, slots=True)
class CachedPreview:
    """A URL's last fetch: its preview, or None when it gave nothing to show."""

    preview: LinkPreview | None
    fetched_at: float


def previews_for_txn(txn: Txn, seqs: Iterable[int]) -> dict[int, LinkPreview]:
    """Each message's preview by ``seq``: one query."""
    seqs = sorted(set(seqs))
    if not seqs:
        return {}
    rows = txn.execute(
        "SELECT message_seq, url, title, description, site_name, image_id FROM message_previews"
        " WHERE message_seq IN " + in_clause(seqs),
        seqs,
    ).fetchall()
    return {
        int(r["message_seq"]): LinkPreview(r["url"], r["title"], r["description"], r["site_name"], r["image_id"])
        for r in rows
    }


class PreviewStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def cached(self, url: str) -> defer.Deferred[CachedPreview | None]:
        """The URL's last fetch, however old (the caller decides what is fresh); None if never fetched."""

        def txn_fn(txn: Txn) -> CachedPreview | None:
            r = txn.execute(
                "SELECT fetched_at, ok, title, description, site_name, image_id FROM link_previews WHERE url = ?",
                (url,),
            ).fetchone()
            if r is None:
                return None
            preview = LinkPreview(url, r["title"], r["description"], r["site_name"], r["image_id"]) if r["ok"] else None
            return CachedPreview(preview, float(r["fetched_at"]))

        return self._db.read("previews.cached", txn_fn)

    def remember(self, url: str, preview: LinkPreview | None, now: float) -> defer.Deferred[None]:
        """Record a fetch of ``url`` (None: nothing to show), replacing any older one."""
        values = (
            (preview.title, preview.description, preview.site_name, preview.image_id)
            if preview is not None
            else (None, None, None, None)
        )

        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "INSERT INTO link_previews (url, fetched_at, ok, title, description, site_name, image_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (url) DO UPDATE SET fetched_at = excluded.fetched_at,"
                " ok = excluded.ok, title = excluded.title, description = excluded.description,"
                " site_name = excluded.site_name, image_id = excluded.image_id",
                (url, now, 1 if preview is not None else 0, *values),
            )

        return self._db.run("previews.remember", txn_fn)

    def attach(self, message_seq: int, chat_id: int, preview: LinkPreview, now: float) -> defer.Deferred[bool]:
        """Show ``preview`` on the message, once, with its feed row; False if it has one or is gone."""

        def txn_fn(txn: Txn) -> bool:
            live = txn.execute("SELECT 1 FROM messages WHERE seq = ? AND deleted_at IS NULL", (message_seq,)).fetchone()
            if live is None:
                return False
            inserted = txn.execute(
                "INSERT INTO message_previews (message_seq, url, title, description, site_name, image_id)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (message_seq) DO NOTHING",
                (message_seq, preview.url, preview.title, preview.description, preview.site_name, preview.image_id),
            ).rowcount
            if inserted != 1:
                return False
            record_txn(txn, NewChange("preview", now, chat_id=chat_id, message_seq=message_seq))
            return True

        return self._db.run("previews.attach", txn_fn)
