"""Free-text search over name, email and company without a `$text` index.

Each contact stores `searchTerms`: the lower-cased words of its name,
company and email (whole address, local part, domain and their pieces).
A query matches when every word of it is the prefix of some term: an
anchored, escaped `$regex` per word, which an index on
(shopId, searchTerms) serves on real MongoDB.
"""

from __future__ import annotations

import re
from typing import Any

MAX_QUERY_WORDS = 8
MAX_QUERY_LENGTH = 200
_PIECES = re.compile(r"[^\w]+", re.UNICODE)


def _words(text: str | None) -> set[str]:
    if not text:
        return set()
    out: set[str] = set()
    for word in text.casefold().split():
        out.add(word)
        out.update(p for p in _PIECES.split(word) if p)
    return out


def search_terms(doc: dict[str, Any]) -> list[str]:
    terms = _words(doc.get("firstName")) | _words(doc.get("lastName")) | _words(doc.get("company"))
    email = (doc.get("email") or "").casefold()
    if email:
        local, _, domain = email.partition("@")
        terms |= {email, local, domain} | _words(local) | _words(domain)
    return sorted(t for t in terms if t)


def name_key(doc: dict[str, Any]) -> str:
    """What the NAME sort orders by: the display name, case-folded."""
    return display_name(doc).casefold()


def display_name(doc: dict[str, Any]) -> str:
    name = " ".join(p for p in (doc.get("firstName"), doc.get("lastName")) if p)
    return name or doc.get("email") or ""


def query_match(text: str) -> dict[str, Any] | None:
    """The condition for a free-text query; None when it has no words."""
    words = text.casefold().split()[:MAX_QUERY_WORDS]
    if not words:
        return None
    conditions = [{"searchTerms": {"$regex": "^" + re.escape(w)}} for w in words]
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}
