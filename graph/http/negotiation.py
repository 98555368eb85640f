"""Which media type a GraphQL response is sent as, from the request's Accept header.

GraphQL over HTTP defines two: `application/graphql-response+json` (status
codes tell request errors apart) and the legacy `application/json` (200 for
every GraphQL result). A client gets the new one only when it asks for it by
name; a missing Accept header, `*/*` or `application/*` mean the legacy one.
"""

from __future__ import annotations

from functools import lru_cache

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"

_CANDIDATES = (GRAPHQL_RESPONSE_JSON, JSON)


def _ranges(accept: str) -> list[tuple[str, float]]:
    """(media range, q) pairs; a range with an unreadable q is left out."""
    ranges = []
    for part in accept.split(","):
        media_range, *params = part.split(";")
        media_range = media_range.strip().lower()
        if not media_range:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:
            ranges.append((media_range, q))
    return ranges


def _specificity(media_range: str, media_type: str) -> int:
    """2 for an exact match, 1 for `type/*`, 0 for `*/*`, -1 when the range does not cover it."""
    if media_range == media_type:
        return 2
    if media_range == "*/*":
        return 0
    kind, _, subtype = media_range.partition("/")
    if subtype == "*" and media_type.startswith(kind + "/"):
        return 1
    return -1


@lru_cache(maxsize=256)  # clients send few distinct Accept values
def response_media_type(accept: str | None) -> str | None:
    """The media type to answer with, or None when the client accepts neither (406)."""
    if accept is None or not accept.strip():
        return JSON
    ranges = _ranges(accept)
    best: tuple[float, int, int] | None = None
    chosen = None
    for preference, media_type in enumerate(reversed(_CANDIDATES)):
        # The most specific range that covers a type decides its q (RFC 9110, 12.5.1).
        matches = [(_specificity(r, media_type), q) for r, q in ranges]
        matches = [m for m in matches if m[0] >= 0]
        if not matches:
            continue
        specificity, q = max(matches)
        if q <= 0:
            continue
        # Equal q: the type named outright wins over one only covered by a
        # wildcard; between two named outright the newer type wins; between
        # two wildcard matches the legacy type wins (`*/*` means application/json).
        tie_break = preference if specificity == 2 else -preference
        rank = (q, specificity, tie_break)
        if best is None or rank > best:
            best, chosen = rank, media_type
    return chosen
