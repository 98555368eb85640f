"""Automatic persisted queries, as Apollo's clients send them.

A client first sends only `extensions.persistedQuery = {version: 1, sha256Hash}`.
When the hash is unknown it gets PERSISTED_QUERY_NOT_FOUND and sends the
query again with the hash; the hash is checked against the text and the text
remembered, so the next request can carry the hash alone.

The store is a bounded LRU in this process's memory. A miss (after a restart,
on another worker or after eviction) costs the client one round trip and no
error, so nothing needs to be shared between processes. Entries are kept per
shop: a shop can never learn, by probing hashes, which documents another shop
sends.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

SUPPORTED_VERSION = 1
_HEX = frozenset("0123456789abcdef")


class PersistedQueryProblem(Exception):
    """The persisted-query extension cannot be used; nothing runs."""

    def __init__(self, message: str, code: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class PersistedQueryNotFound(PersistedQueryProblem):
    """The hash is not (or no longer) known: the client resends it with the query."""

    def __init__(self) -> None:
        # Apollo's links recognise this exact message and code.
        super().__init__("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")


def requested_hash(extensions: dict[str, Any] | None) -> str | None:
    """The SHA-256 (lower-case hex) a request names, None when it uses no persisted query."""
    if not extensions or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    if persisted is None:
        return None
    if not isinstance(persisted, dict):
        raise PersistedQueryProblem(
            "extensions.persistedQuery must be an object: {version: 1, sha256Hash: <hex>}.",
            "PERSISTED_QUERY_INVALID",
        )
    version = persisted.get("version")
    if version != SUPPORTED_VERSION or isinstance(version, bool):
        raise PersistedQueryProblem(
            f"Persisted query version {version!r} is not supported; use version 1.",
            "PERSISTED_QUERY_VERSION_UNSUPPORTED",
        )
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or len(digest) != 64 or not _HEX.issuperset(digest.lower()):
        raise PersistedQueryProblem(
            "extensions.persistedQuery.sha256Hash must be 64 hexadecimal digits.",
            "PERSISTED_QUERY_INVALID",
        )
    return digest.lower()


def sha256_hex(query: str) -> str:
    return hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()


class PersistedQueries:
    """The documents recently sent with a hash, per shop, least recently used evicted first."""

    def __init__(self, max_documents: int = 1_000, max_chars: int = 5_000_000) -> None:
        self.max_documents = max_documents
        self.max_chars = max_chars
        self._documents: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._documents)

    def resolve(self, shop_id: str, query: str | None, digest: str) -> str:
        """The query to run: the one sent (checked against its hash) or the one remembered."""
        if query is None:
            known = self._documents.get((shop_id, digest))
            if known is None:
                raise PersistedQueryNotFound
            self._documents.move_to_end((shop_id, digest))
            return known
        if sha256_hex(query) != digest:
            raise PersistedQueryProblem(
                "The query does not match extensions.persistedQuery.sha256Hash "
                "(the SHA-256 of the query text, in hexadecimal); nothing was run.",
                "PERSISTED_QUERY_HASH_MISMATCH",
            )
        return query

    def remember(self, shop_id: str, digest: str, query: str) -> None:
        if len(query) > self.max_chars:
            return
        key = (shop_id, digest)
        if key in self._documents:
            self._documents.move_to_end(key)
            return
        self._documents[key] = query
        self._chars += len(query)
        while len(self._documents) > self.max_documents or self._chars > self.max_chars:
            _, evicted = self._documents.popitem(last=False)
            self._chars -= len(evicted)
