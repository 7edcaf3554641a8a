"""Search input and output that both databases share: terms, cursors, snippets.

A query is words, never query syntax: its terms are the runs of letters and
digits in it (``"don't-panic*"`` is ``don``, ``t``, ``panic``), the way both
indexes split the text they hold, and a message matches when it holds every
term as a whole word (any case).

The cursor is opaque to clients; it carries the ``seq`` below which the
next page starts, and anything that does not decode to one is refused.

The snippet is HTML: the text around the first match, escaped, with every
matching word in ``<mark>...</mark>``.  It is built here from the message's
current text rather than by the database, so it is the same on SQLite and
PostgreSQL and no character a user typed can open or close a mark.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from typing import Any, Sequence

from umoc.errors import UserError

__all__ = ["MAX_QUERY", "MAX_TERMS", "decode_cursor", "encode_cursor", "query_terms", "snippet"]

#: Characters in a query.
MAX_QUERY = 200
#: Different words in a query.
MAX_TERMS = 16
#: Characters of text a snippet shows (more only to finish the first match).
SNIPPET_CHARS = 120
#: Characters shown before the first match.
_LEAD = 40
#: Characters a snippet's ends move to fall between words.
_SNAP = 15
_WORD = re.compile(r"[^\W_]+")
_CURSOR = re.compile(r"v1:([1-9][0-9]{0,18})")
_MAX_SEQ = 2**63 - 1


def query_terms(query: str) -> list[str]:
    """The words to look for, each once, in the order given; refused when there are none or too many."""
    seen: dict[str, str] = {}
    for word in _WORD.findall(query):
        seen.setdefault(word.casefold(), word)
    if not seen:
        raise UserError("Invalid 'query': no words to search for (letters or digits)", code="invalid_argument")
    if len(seen) > MAX_TERMS:
        raise UserError(f"Invalid 'query': at most {MAX_TERMS} different words", code="invalid_argument")
    return list(seen.values())


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(name: str, value: Any) -> int:
    """The seq a cursor from `encode_cursor` carries; `UserError` for anything else."""
    error = UserError(f"Invalid '{name}': not a cursor from search_results", code="invalid_argument")
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise error
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise error from exc
    found = _CURSOR.fullmatch(text)
    if found is None or int(found.group(1)) > _MAX_SEQ or encode_cursor(int(found.group(1))) != value:
        raise error
    return int(found.group(1))


def snippet(text: str, terms: Sequence[str]) -> str:
    """About `SNIPPET_CHARS` of ``text`` around its first match, HTML-escaped, matches in ``<mark>``."""
    wanted = {t.casefold() for t in terms}
    matches = [m.span() for m in _WORD.finditer(text) if m.group().casefold() in wanted]
    start = 0
    if matches and matches[0][0] > _LEAD:
        start = matches[0][0] - _LEAD
        # Begin at a word: skip the rest of one cut in half (unless it is very long).
        skip = start
        while skip < matches[0][0] and skip - start < _SNAP and text[skip - 1].isalnum():
            skip += 1
        if not text[skip - 1].isalnum():
            start = skip
    end = min(len(text), start + SNIPPET_CHARS)
    if matches:
        end = max(end, next((e for s, e in matches if s < end), end))
    cut = end
    while cut < len(text) and end - cut < _SNAP and text[cut].isalnum() and text[cut - 1].isalnum():
        cut -= 1  # end between words too (unless the word is very long)
    if cut == len(text) or not (text[cut].isalnum() and text[cut - 1].isalnum()):
        end = max(cut, matches[0][1] if matches else cut)
    parts = ["…"] if start > 0 else []
    at = start
    for s, e in matches:
        if s < start or e > end:
            continue
        parts += [html.escape(text[at:s]), "<mark>", html.escape(text[s:e]), "</mark>"]
        at = e
    parts.append(html.escape(text[at:end]))
    if end < len(text):
        parts.append("…")
    return "".join(parts)
