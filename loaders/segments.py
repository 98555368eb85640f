"""Reads of saved segments, and exact contact counts for many filters at once."""

from __future__ import annotations

from typing import Any

from bson import ObjectId, json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from strawberry.dataloader import DataLoader

from loaders.mongo import Database, Doc


async def stored_segments(database: Database, shop_id: str) -> list[Doc]:
    """The shop's saved segments by name (case-insensitive)."""
    return await database.segments.find(
        {"shopId": shop_id}, sort=[("nameKey", 1), ("_id", 1)]
    ).to_list()


async def stored_segment(database: Database, shop_id: str, segment_id: ObjectId) -> Doc | None:
    return await database.segments.find_one({"shopId": shop_id, "_id": segment_id})


def match_key(match: Doc) -> str:
    """A DataLoader key for a MongoDB condition; canonical Extended JSON keeps every BSON type."""
    return json_util.dumps(match, json_options=CANONICAL_JSON_OPTIONS)


def _match_of(key: str) -> Doc:
    loaded: Doc = json_util.loads(key, json_options=CANONICAL_JSON_OPTIONS)
    return loaded


async def count_matches(database: Database, matches: list[Doc]) -> list[int]:
    """Exact counts of several conditions in one command.

    One `$facet` over the union of the conditions: each `$or` branch can use
    its own index to find candidates, and every contact is read once however
    many segments are counted.
    """
    if len(matches) == 1:
        return [await database.contacts.count_documents(matches[0])]
    facets: dict[str, Any] = {
        f"c{i}": [{"$match": m}, {"$count": "n"}] for i, m in enumerate(matches)
    }
    pipeline: list[dict[str, Any]] = [
        {"$match": {"$or": matches}},
        {"$project": {"_id": 1, **_fields(matches)}},
        {"$facet": facets},
    ]
    rows = await (await database.contacts.aggregate(pipeline)).to_list()
    result = rows[0] if rows else {}
    return [(result.get(f"c{i}") or [{"n": 0}])[0]["n"] for i in range(len(matches))]


def _fields(matches: list[Doc]) -> dict[str, int]:
    """The fields the conditions look at, so the facets carry no more than they need."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("$and", "$or", "$nor"):
                    walk(value)
                elif not key.startswith("$"):
                    names.add(key)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(matches)
    names.discard("_id")
    # A parent and its child (consent, consent.state) cannot both be projected.
    kept = {n for n in names if not any(n.startswith(f"{other}.") for other in names)}
    return dict.fromkeys(sorted(kept), 1)


class ContactCountByMatchLoader(DataLoader[str, int]):
    """Exact contact counts keyed by `match_key(condition)`; one command per batch."""

    def __init__(self, database: Database) -> None:
        async def load(keys: list[str]) -> list[int]:
            return await count_matches(database, [_match_of(k) for k in keys])

        super().__init__(load_fn=load)
