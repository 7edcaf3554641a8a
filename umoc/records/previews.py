"""Link previews: what a message's first http(s) URL showed when UMOC fetched it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LinkPreview"]


@dataclass(frozen=True, slots=True)
class LinkPreview:
    """A page's OpenGraph (or plain HTML) title, description and site name, and UMOC's copy of its image.

    ``url`` is the URL as the message gave it; ``image_id`` names the
    thumbnail UMOC made of the page's image (served at
    ``/api/previews/<image_id>``), never the site's own image URL, so
    clients never contact the site.
    """

    url: str
    title: str | None
    description: str | None
    site_name: str | None
    image_id: str | None
