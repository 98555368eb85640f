"""Labels: normalization, the shop's limit of 250 distinct labels, and exact counts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pymongo.errors import DuplicateKeyError

from loaders.contacts import label_key
from loaders.mongo import Database
from resolvers.errors import Field, refuse
from resolvers.clock import now
from resolvers.validation import LABEL_MAX, Checker

SHOP_LABEL_LIMIT = 250
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def normalize_label(check: Checker, field_path: Field, raw: str) -> str | None:
    """Trimmed, inner whitespace collapsed, 1..100 characters, no control characters."""
    if _CONTROL.search(raw.replace(" ", "")):
        check.add(field_path, "A label must not contain control characters.", "INVALID")
        return None
    name = " ".join(raw.split())
    if not name:
        check.add(field_path, "A label must not be empty.", "REQUIRED")
        return None
    if len(name) > LABEL_MAX:
        check.add(field_path, f"A label is at most {LABEL_MAX} characters.", "TOO_LONG")
        return None
    return name


def normalize_labels(check: Checker, field_path: Field, raws: Iterable[str]) -> list[str]:
    """Distinct labels (case-insensitive, first spelling kept) in the order given."""
    names: dict[str, str] = {}
    for index, raw in enumerate(raws):
        name = normalize_label(check, (*field_path, index), raw)
        if name is not None:
            names.setdefault(label_key(name), name)
    return list(names.values())


@dataclass
class CreatedLabels:
    """Labels a call created; released again when the call fails afterwards."""

    database: Database
    shop_id: str
    keys: list[str] = field(default_factory=list)

    async def release(self) -> None:
        for key in self.keys:
            result = await self.database.labels.delete_one(
                {"shopId": self.shop_id, "key": key, "contactCount": {"$lte": 0}}
            )
            if result.deleted_count:
                await self.database.shops.update_one({"_id": self.shop_id}, {"$inc": {"labelCount": -1}})


async def reserve_labels(database: Database, shop_id: str, names: list[str]) -> CreatedLabels:
    """Make sure the shop has these labels, creating the new ones within the limit.

    Slots are reserved atomically on the shop's `labelCount` first, so two
    calls racing for the last free slots can never together pass 250.
    LIMIT_EXCEEDED (and nothing changed) when the new labels do not fit.
    """
    created = CreatedLabels(database, shop_id)
    if not names:
        return created
    keys = {label_key(n): n for n in names}
    existing = {
        doc["key"]
        for doc in await database.labels.find(
            {"shopId": shop_id, "key": {"$in": list(keys)}}, {"key": 1}
        ).to_list()
    }
    new = [k for k in keys if k not in existing]
    if not new:
        return created
    reserved = await database.shops.update_one(
        {"_id": shop_id, "labelCount": {"$lte": SHOP_LABEL_LIMIT - len(new)}},
        {"$inc": {"labelCount": len(new)}},
    )
    if reserved.modified_count == 0:
        raise refuse(
            ("labels",),
            f"A shop can have at most {SHOP_LABEL_LIMIT} distinct labels.",
            "LIMIT_EXCEEDED",
        )
    unused = 0
    for key in new:
        try:
            await database.labels.insert_one(
                {"shopId": shop_id, "key": key, "name": keys[key], "contactCount": 0, "createdAt": now()}
            )
            created.keys.append(key)
        except DuplicateKeyError:
            unused += 1  # created meanwhile by another call: give the slot back
    if unused:
        await database.shops.update_one({"_id": shop_id}, {"$inc": {"labelCount": -unused}})
    return created


async def add_label_counts(database: Database, shop_id: str, keys: Iterable[str], delta: int) -> None:
    keys = list(keys)
    if keys and delta:
        await database.labels.update_many(
            {"shopId": shop_id, "key": {"$in": keys}}, {"$inc": {"contactCount": delta}}
        )
