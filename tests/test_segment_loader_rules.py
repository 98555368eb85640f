"""Saved segments and their contact counts, read straight from the loaders.

tests/test_segments.py tells the story through the API; these pin the
reads underneath on the embedded server: a shop's saved segments sorted by
name whatever its case, never another shop's; and exact counts of many
conditions at once (nested and/or/nor, a field and its parent, dates,
amounts and ids kept exactly through the loader's keys), in one command.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128, Int64, ObjectId
from conftest import OTHER_SHOP, SHOP

from loaders.segments import (
    ContactCountByMatchLoader,
    count_matches,
    match_key,
    stored_segment,
    stored_segments,
)

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


def day(n: int) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


# -- saved segments -----------------------------------------------------------


async def save(database: Any, name: str, shop: str = SHOP) -> dict[str, Any]:
    doc = {
        "_id": ObjectId(),
        "shopId": shop,
        "name": name,
        "nameKey": " ".join(name.split()).casefold(),
        "query": None,
        "filter": {},
    }
    await database.segments.insert_one(doc)
    return doc


async def test_a_shops_segments_come_by_name_whatever_its_case_and_only_its_own(database):
    names = ["beta", "Alpha two", "ZULU", "alpha", "Äpfel", "Gamma", "b", "Beta 2"]
    saved = [await save(database, name) for name in names]
    await save(database, "Aaa", shop=OTHER_SHOP)
    await save(database, "alpha", shop=OTHER_SHOP)
    found = await stored_segments(database, SHOP)
    assert [s["name"] for s in found] == [
        "alpha",
        "Alpha two",
        "b",
        "beta",
        "Beta 2",
        "Gamma",
        "ZULU",
        "Äpfel",
    ]
    assert sorted(found, key=lambda s: s["_id"]) == sorted(saved, key=lambda s: s["_id"])
    assert await stored_segments(database, "empty-shop") == []


async def test_a_segment_is_found_by_id_in_its_own_shop_only(database):
    mine = await save(database, "Mine")
    theirs = await save(database, "Theirs", shop=OTHER_SHOP)
    assert await stored_segment(database, SHOP, mine["_id"]) == mine
    assert await stored_segment(database, SHOP, theirs["_id"]) is None
    assert await stored_segment(database, OTHER_SHOP, theirs["_id"]) == theirs
    assert await stored_segment(database, SHOP, ObjectId()) is None


# -- counts -------------------------------------------------------------------


@pytest.fixture
async def contacts(database: Any) -> list[ObjectId]:
    """Five contacts of the shop and one of another shop, each field chosen for one count below."""
    rows = [
        {
            "kind": "CUSTOMER",
            "orderCount": 1,
            "labels": ["VIP"],
            "consent": {"state": "SUBSCRIBED", "source": "checkout"},
            "totalSpent": Decimal128("10.00"),
            "createdAt": day(0),
        },
        {
            "kind": "CUSTOMER",
            "orderCount": 3,
            "labels": ["VIP", "B2B"],
            "consent": {"state": "UNSUBSCRIBED"},
            "totalSpent": Decimal128("250.50"),
            "createdAt": day(1),
        },
        {
            "kind": "LEAD",
            "orderCount": 0,
            "labels": [],
            "consent": {"state": "SUBSCRIBED"},
            "createdAt": day(2),
        },
        {"kind": "LEAD", "orderCount": 0, "labels": ["B2B"], "createdAt": day(3)},
        {
            "kind": "CUSTOMER",
            "orderCount": 2,
            "labels": [],
            "consent": {"state": "NOT_SUBSCRIBED"},
            "totalSpent": Decimal128("99.99"),
            "createdAt": day(4),
        },
    ]
    docs: list[dict[str, Any]] = [
        {"_id": ObjectId(), "shopId": SHOP, "emailKey": f"c{i}", **r} for i, r in enumerate(rows)
    ]
    docs.append(
        {
            "_id": ObjectId(),
            "shopId": OTHER_SHOP,
            "emailKey": "o",
            "kind": "CUSTOMER",
            "labels": ["VIP"],
        }
    )
    await database.contacts.insert_many(docs)
    return [d["_id"] for d in docs]


def conditions(ids: list[ObjectId]) -> list[tuple[dict[str, Any], int]]:
    """(condition, how many contacts it selects) over the `contacts` fixture."""
    return [
        ({"shopId": SHOP, "kind": "CUSTOMER"}, 3),
        ({"shopId": SHOP, "labels": "VIP"}, 2),
        ({"shopId": SHOP, "consent.state": "SUBSCRIBED"}, 2),
        ({"shopId": SHOP, "consent": {"$exists": False}}, 1),
        ({"shopId": SHOP, "$and": [{"orderCount": {"$gte": Int64(2)}}, {"labels": "B2B"}]}, 1),
        (
            {
                "shopId": SHOP,
                "$or": [{"kind": "LEAD"}, {"totalSpent": {"$gt": Decimal128("100")}}],
            },
            3,
        ),
        ({"shopId": SHOP, "$nor": [{"labels": "VIP"}, {"kind": "LEAD"}]}, 1),
        ({"shopId": SHOP, "createdAt": {"$gte": day(2)}}, 3),
        ({"shopId": SHOP, "totalSpent": {"$lt": Decimal128(Decimal("100.00"))}}, 2),
        ({"shopId": SHOP, "kind": "NOBODY"}, 0),
        ({"shopId": SHOP, "_id": {"$in": [ids[0], ids[3], ids[5]]}}, 2),
        ({"shopId": OTHER_SHOP, "kind": "CUSTOMER"}, 1),
        ({"shopId": SHOP, "$and": [{"$or": [{"orderCount": 0}, {"labels": "VIP"}]}]}, 4),
    ]


async def test_counts_of_many_conditions_are_exact_each_in_its_place(database, contacts, commands):
    cases = conditions(contacts)
    commands.reset()
    assert await count_matches(database, [m for m, _ in cases]) == [n for _, n in cases]
    assert commands.on("contacts") == ["aggregate"]


@pytest.mark.parametrize("case", range(13))
async def test_each_condition_alone_is_counted_exactly(database, contacts, case):
    match, n = conditions(contacts)[case]
    assert await count_matches(database, [match]) == [n]


@pytest.mark.parametrize("case", range(13))
async def test_each_condition_beside_one_selecting_no_one_is_counted_exactly(
    database, contacts, case
):
    match, n = conditions(contacts)[case]
    nobody = {"shopId": SHOP, "kind": "NOBODY"}
    assert await count_matches(database, [nobody, match]) == [0, n]
    assert await count_matches(database, [match, nobody]) == [n, 0]


@pytest.mark.parametrize("case", range(13))
async def test_each_condition_beside_one_selecting_everyone_by_another_field_is_counted_exactly(
    database, contacts, case
):
    # Every contact then reaches each count, carrying only the fields some condition names.
    match, n = conditions(contacts)[case]
    everyone = {"shopId": SHOP, "createdAt": {"$gte": day(0)}}
    assert await count_matches(database, [everyone, match]) == [5, n]


async def test_a_field_and_its_parent_are_counted_together(database, contacts):
    subscribed = {"shopId": SHOP, "consent.state": "SUBSCRIBED"}
    no_consent = {"shopId": SHOP, "consent": {"$exists": False}}
    consent_known = {"shopId": SHOP, "consent": {"$exists": True}, "consent.state": {"$ne": None}}
    exactly = {"shopId": SHOP, "consent": {"state": "SUBSCRIBED", "source": "checkout"}}
    assert await count_matches(database, [subscribed, no_consent, consent_known]) == [2, 1, 4]
    assert await count_matches(database, [no_consent, subscribed]) == [1, 2]
    # The whole consent is read for the one condition, not only the state the other names.
    assert await count_matches(database, [exactly, subscribed]) == [1, 2]


async def test_conditions_selecting_no_one_count_zero(database, contacts):
    nobody = [{"shopId": SHOP, "kind": "NOBODY"}, {"shopId": "empty-shop"}]
    assert await count_matches(database, nobody) == [0, 0]


async def test_the_loader_counts_conditions_by_their_keys_in_one_command(
    database, contacts, commands
):
    cases = conditions(contacts)
    loader = ContactCountByMatchLoader(database)
    commands.reset()
    assert await loader.load_many([match_key(m) for m, _ in cases]) == [n for _, n in cases]
    assert commands.on("contacts") == ["aggregate"]
    one = ContactCountByMatchLoader(database)
    assert await one.load(match_key(cases[7][0])) == 3


def test_a_conditions_key_keeps_every_bson_type_apart():
    at = {"createdAt": {"$gte": day(2)}}
    assert match_key(at) == match_key({"createdAt": {"$gte": day(2)}})
    assert match_key(at) != match_key({"createdAt": {"$gte": day(2).isoformat()}})
    assert match_key({"n": Int64(2)}) != match_key({"n": 2}) != match_key({"n": 2.0})
    assert match_key({"m": Decimal128("2")}) != match_key({"m": "2"})
    oid = ObjectId()
    assert match_key({"_id": oid}) != match_key({"_id": str(oid)})


class MongoDBReply:
    """A database whose contacts answer an aggregation with a fixed reply, as MongoDB words it."""

    def __init__(self, reply: list[dict[str, Any]]) -> None:
        self.reply = reply
        self.contacts = self

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> MongoDBReply:
        return self

    async def to_list(self) -> list[dict[str, Any]]:
        return self.reply


async def test_a_count_of_no_contacts_is_zero_where_mongodb_answers_it_with_no_row():
    # MongoDB's $count over no documents yields no row (the embedded server
    # yields {n: 0}): such a facet is an empty list, and its count is 0.
    reply = MongoDBReply([{"c0": [], "c1": [{"n": 2}], "c2": []}])
    matches = [{"shopId": SHOP, "kind": kind} for kind in ("NOBODY", "LEAD", "NONE")]
    assert await count_matches(reply, matches) == [0, 2, 0]
