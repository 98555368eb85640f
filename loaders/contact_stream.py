"""Every contact a condition selects, in sort order, a batch at a time (exports)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from loaders.mongo import Database, Doc

EXPORT_BATCH = 500


async def contact_batches(
    database: Database,
    match: Doc,
    sort_field: str,
    *,
    ascending: bool = True,
    projection: dict[str, Any] | None = None,
    batch_size: int = EXPORT_BATCH,
) -> AsyncIterator[list[Doc]]:
    """Lists of at most `batch_size` contacts from one server-side cursor.

    The cursor fetches `batch_size` documents per round trip and nothing is
    kept once yielded, so memory does not grow with the number of contacts.
    The order is (sort field, _id), served by the list indexes.
    """
    order = 1 if ascending else -1
    cursor = database.contacts.find(
        match, projection, sort=[(sort_field, order), ("_id", order)], batch_size=batch_size
    )
    try:
        batch: list[Doc] = []
        async for doc in cursor:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        await cursor.close()
