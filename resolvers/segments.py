"""Segments: saved filters, evaluated afresh on every use so they follow the contacts.

Four built-in segments exist in every shop without being stored: first-time
customers (exactly one order), repeat customers (two or more), subscribers
(a subscription or membership not ended) and members (an ACTIVE or PAUSED
membership). Their ids are fixed, so a client may keep them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from loaders.contact_search import MAX_QUERY_LENGTH
from loaders.contacts import ContactFilterSpec, contact_match, label_key
from loaders.mongo import Database, Doc
from loaders.segments import stored_segment, stored_segments
from resolvers.clock import now
from resolvers.contact_filters import FilterError, check_spec, spec_from_json, spec_to_json
from resolvers.errors import Refused, not_found, refuse
from resolvers.validation import Checker

SEGMENT_NAME_MAX = 100
SHOP_SEGMENT_LIMIT = 100


@dataclass(frozen=True)
class BuiltInSegment:
    key: str
    id: ObjectId
    name: str
    filter: dict[str, Any]

    def doc(self, shop_id: str) -> Doc:
        return {
            "_id": self.id,
            "shopId": shop_id,
            "name": self.name,
            "nameKey": name_key(self.name),
            "query": None,
            "filter": dict(self.filter),
            "builtIn": self.key,
        }


BUILT_IN = (
    BuiltInSegment(
        "FIRST_TIME_CUSTOMERS",
        ObjectId("000000000000000000000001"),
        "First-time customers",
        {"orderCountMin": 1, "orderCountMax": 1},
    ),
    BuiltInSegment(
        "REPEAT_CUSTOMERS",
        ObjectId("000000000000000000000002"),
        "Repeat customers",
        {"orderCountMin": 2},
    ),
    BuiltInSegment(
        "SUBSCRIBERS",
        ObjectId("000000000000000000000003"),
        "Subscribers",
        {"hasActiveSubscription": True},
    ),
    BuiltInSegment(
        "MEMBERS",
        ObjectId("000000000000000000000004"),
        "Members",
        {"isMember": True},
    ),
)
BUILT_IN_BY_KEY = {b.key: b for b in BUILT_IN}
BUILT_IN_BY_ID = {b.id: b for b in BUILT_IN}

SegmentRef = ObjectId | str
"""A segment as a client names it: the ObjectId of its global id, or a built-in's key."""


def name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def built_in(ref: SegmentRef) -> BuiltInSegment | None:
    if isinstance(ref, ObjectId):
        return BUILT_IN_BY_ID.get(ref)
    return BUILT_IN_BY_KEY.get(ref)


async def list_segments(database: Database, shop_id: str) -> list[Doc]:
    """Built-ins first, then the saved segments by name."""
    return [b.doc(shop_id) for b in BUILT_IN] + await stored_segments(database, shop_id)


async def find_segment(database: Database, shop_id: str, ref: SegmentRef | None) -> Doc | None:
    if ref is None:
        return None
    fixed = built_in(ref)
    if fixed is not None:
        return fixed.doc(shop_id)
    if not isinstance(ref, ObjectId):
        return None
    return await stored_segment(database, shop_id, ref)


def segment_match(shop_id: str, doc: Doc) -> Doc:
    """The MongoDB condition of a segment, from its stored query and filter."""
    spec, _ = spec_from_json(doc.get("filter") or {})
    return contact_match(shop_id, doc.get("query"), spec)


async def segment_condition(database: Database, shop_id: str, ref: SegmentRef | None) -> Doc:
    """The condition of the segment a filter names; NOT_FOUND when the shop has no such segment."""
    doc = await find_segment(database, shop_id, ref)
    if doc is None:
        raise not_found(("filter", "segment"), "Segment")
    return segment_match(shop_id, doc)


@dataclass
class SegmentDraft:
    """What a client sends to save a segment, as plain values."""

    name: str | None
    query: str | None
    filter: ContactFilterSpec = field(default_factory=ContactFilterSpec)
    # `filter.segment`: saved segments may not refer to one another, so that
    # deleting or changing one never silently changes another.
    filter_segment: str | None = None


@dataclass
class CheckedSegment:
    name: str
    name_key: str
    query: str | None
    filter: dict[str, Any]


def check_draft(draft: SegmentDraft) -> CheckedSegment:
    check = Checker()
    name = check.text(("input", "name"), draft.name, SEGMENT_NAME_MAX, required=True)
    query = check.text(("input", "query"), draft.query, MAX_QUERY_LENGTH)
    try:
        check_spec(draft.filter)
    except FilterError as err:
        check.add(("input", "filter", err.field or "filter"), err.message, "INVALID")
    if draft.filter_segment is not None:
        check.add(
            ("input", "filter", "segment"),
            "A segment cannot refer to another segment; copy its conditions instead.",
            "INVALID",
        )
    if name is not None and name_key(name) in {name_key(b.name) for b in BUILT_IN}:
        check.add(("input", "name"), "A built-in segment has this name.", "TAKEN")
    if not check.ok:
        raise Refused(check.problems)
    assert name is not None
    return CheckedSegment(name, name_key(name), query, spec_to_json(draft.filter))


def _taken() -> Refused:
    return refuse(("input", "name"), "Another segment has this name.", "TAKEN")


def _built_in_refused() -> Refused:
    return refuse(("id",), "Built-in segments cannot be changed or deleted.", "NOT_ALLOWED")


async def create_segment(database: Database, shop_id: str, draft: SegmentDraft) -> Doc:
    checked = check_draft(draft)
    # A slot is reserved on the shop first, so racing creates cannot pass the limit together.
    reserved = await database.shops.update_one(
        {"_id": shop_id, "segmentCount": {"$not": {"$gte": SHOP_SEGMENT_LIMIT}}},
        {"$inc": {"segmentCount": 1}},
    )
    if reserved.modified_count == 0:
        raise refuse(
            None, f"A shop can save at most {SHOP_SEGMENT_LIMIT} segments.", "LIMIT_EXCEEDED"
        )
    at = now()
    doc: Doc = {
        "_id": ObjectId(),
        "shopId": shop_id,
        "name": checked.name,
        "nameKey": checked.name_key,
        "query": checked.query,
        "filter": checked.filter,
        "createdAt": at,
        "updatedAt": at,
    }
    try:
        await database.segments.insert_one(doc)
    except DuplicateKeyError:
        await database.shops.update_one({"_id": shop_id}, {"$inc": {"segmentCount": -1}})
        raise _taken() from None
    return doc


async def update_segment(
    database: Database, shop_id: str, segment_id: ObjectId | None, draft: SegmentDraft
) -> Doc:
    if segment_id is not None and built_in(segment_id) is not None:
        raise _built_in_refused()
    checked = check_draft(draft)
    if segment_id is None:
        raise not_found(("id",), "Segment")
    try:
        doc = await database.segments.find_one_and_update(
            {"shopId": shop_id, "_id": segment_id},
            {
                "$set": {
                    "name": checked.name,
                    "nameKey": checked.name_key,
                    "query": checked.query,
                    "filter": checked.filter,
                    "updatedAt": now(),
                }
            },
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError:
        raise _taken() from None
    if doc is None:
        raise not_found(("id",), "Segment")
    return doc


async def delete_segment(database: Database, shop_id: str, segment_id: ObjectId | None) -> Doc:
    """The segment as it was; contacts are untouched (a segment only selects them)."""
    if segment_id is not None and built_in(segment_id) is not None:
        raise _built_in_refused()
    doc = None
    if segment_id is not None:
        doc = await database.segments.find_one_and_delete({"shopId": shop_id, "_id": segment_id})
    if doc is None:
        raise not_found(("id",), "Segment")
    await database.shops.update_one({"_id": shop_id}, {"$inc": {"segmentCount": -1}})
    return doc


LABEL_FILTERS = ("labelsAny", "labelsAll", "labelsNone")


def _renamed(names: list[str], old_key: str, new_name: str) -> list[str]:
    """The list with the old label's spellings replaced by the new name, each label once."""
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        replaced = new_name if label_key(name) == old_key else name
        if label_key(replaced) not in seen:
            seen.add(label_key(replaced))
            out.append(replaced)
    return out


async def follow_label_rename(
    database: Database, shop_id: str, old_name: str, new_name: str
) -> int:
    """Saved segments that named the old label name the new one; how many changed.

    Without this a segment "has label VIP" would silently match nobody once
    VIP is renamed. Each segment is rewritten only if its filter is still as
    read, so a concurrent segmentUpdate is never overwritten.
    """
    old_key = label_key(old_name)
    changed = 0
    for _ in range(3):
        missed = 0
        async for doc in database.segments.find({"shopId": shop_id}, {"filter": 1}):
            old_filter = doc.get("filter") or {}
            new_filter = dict(old_filter)
            for name in LABEL_FILTERS:
                if isinstance(old_filter.get(name), list):
                    new_filter[name] = _renamed(old_filter[name], old_key, new_name)
            if new_filter == old_filter:
                continue
            written = await database.segments.update_one(
                {"_id": doc["_id"], "shopId": shop_id, "filter": old_filter},
                {"$set": {"filter": new_filter, "updatedAt": now()}},
            )
            changed += written.modified_count
            missed += 1 - written.modified_count
        if not missed:
            break
    return changed
