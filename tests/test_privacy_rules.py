"""The person's rights to the edge: what a data export holds, and what an erasure leaves behind.

tests/test_privacy.py exercises both through the API; these call the rules
directly on stored documents, for the exact JSON of an export (ids, money
and times as text, everything of the person and nothing of anyone else),
and the exact state of every collection after an erasure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from pymongo.errors import PyMongoError

from resolvers import privacy
from resolvers.errors import Refused
from resolvers.events import contact_gid
from resolvers.privacy import data_export, erase_contact, erased_email, json_safe

SHOP, OTHER = "acme", "other"
# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
NOW = dt.datetime(2126, 4, 1, 8, 30, 0, 125_000, tzinfo=dt.UTC)
T0 = dt.datetime(2126, 1, 1, 10, 0, tzinfo=dt.UTC)
ANN, BOB = ObjectId("65a1b2c3d4e5f60718293a01"), ObjectId("65a1b2c3d4e5f60718293a02")
PLACEHOLDER = re.compile(r"^erased-[0-9a-f]{24}@erased\.invalid$")


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privacy, "now", lambda: NOW)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def entry(kind: str, minutes: int, **fields: Any) -> dict[str, Any]:
    return {"_id": ObjectId(), "kind": kind, "at": at(minutes), **fields}


# -- plain JSON -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        (ObjectId("65a1b2c3d4e5f60718293a01"), "65a1b2c3d4e5f60718293a01"),
        (Decimal128("10.10"), "10.10"),
        (Decimal128("1E+2"), "100"),  # never in exponent form
        (Decimal("0.000001"), "0.000001"),
        (Decimal("2.5E+3"), "2500"),
        (
            dt.datetime(2126, 1, 5, 10, 12, 3, 481_999),
            "2126-01-05T10:12:03.481+00:00",
        ),  # naive: UTC
        (
            dt.datetime(2126, 1, 5, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2126-01-05T10:00:00.000+00:00",
        ),
        (
            {1: "a", "b": [ObjectId("65a1b2c3d4e5f60718293a02")]},
            {"1": "a", "b": ["65a1b2c3d4e5f60718293a02"]},
        ),
        ((1, Decimal("1.0")), [1, "1.0"]),
        ("text", "text"),
        (None, None),
        (True, True),
        (1.5, 1.5),
    ],
)
def test_a_stored_value_becomes_plain_json(value, plain):
    assert json_safe(value) == plain


def test_times_are_utc_whatever_the_server_s_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        naive = json_safe(dt.datetime(2126, 1, 5, 10, 12, 3))
        aware = json_safe(dt.datetime(2126, 7, 5, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5))))
    finally:
        monkeypatch.undo()
        time.tzset()

    assert (naive, aware) == ("2126-01-05T10:12:03.000+00:00", "2126-07-05T07:00:00.000+00:00")


def test_an_erased_address_is_random_and_can_never_be_delivered():
    first, second = erased_email(), erased_email()

    assert PLACEHOLDER.match(first) and PLACEHOLDER.match(second)
    assert first != second


# -- the export -----------------------------------------------------------------------


async def stored_person(database: Any) -> None:
    await database.contacts.insert_many(
        [
            {
                "_id": ANN,
                "shopId": SHOP,
                "email": "Ann@Example.com",
                "emailKey": "ann@example.com",
                "kind": "CUSTOMER",
                "activity": [entry("NOTE", 30, text="called"), entry("ORDER_PLACED", 10)],
                "consent": {"history": [{"state": "SUBSCRIBED", "at": at(5)}]},
                "labelKeys": ["vip", "b2b"],
                "totalSpent": Decimal128("42.50"),
            },
            {"_id": BOB, "shopId": SHOP, "email": "bob@example.com", "emailKey": "bob@example.com"},
            {
                "_id": ObjectId(),
                "shopId": OTHER,
                "email": "ann@example.com",
                "emailKey": "ann@example.com",
            },
        ]
    )
    await database.activity_archive.insert_many(
        [
            {
                "shopId": SHOP,
                "contactId": ANN,
                "entries": [entry("NOTE", 20, text="old"), entry("CREATED", 1)],
            },
            {"shopId": SHOP, "contactId": ANN, "entries": []},
            {"shopId": SHOP, "contactId": BOB, "entries": [entry("NOTE", 25, text="bob's")]},
        ]
    )
    orders = [
        ("o-linked-late", SHOP, ANN, "ann@example.com", at(50)),
        ("o-linked", SHOP, ANN, "ann@example.com", at(40)),
        ("o-unlinked", SHOP, None, "ann@example.com", at(45)),  # left by an earlier delete
        ("o-bob-same-email", SHOP, BOB, "ann@example.com", at(41)),
        ("o-bob", SHOP, BOB, "bob@example.com", at(42)),
        ("o-other-shop", OTHER, None, "ann@example.com", at(43)),
    ]
    for collection in (database.orders, database.subscription_contracts):
        await collection.insert_many(
            [
                {
                    "externalId": ext,
                    "shopId": shop,
                    "contactId": contact,
                    "email": email,
                    "emailKey": email,
                    "firstName": "Ann",
                    "lastName": "Lee",
                    "phone": "+4930123456",
                    "shippingAddress": {"city": "Bonn"},
                    "billingAddress": {"city": "Bonn"},
                    "total": Decimal128("10.00"),
                    "createdAt": created,
                }
                for ext, shop, contact, email, created in orders
            ]
        )
    # Two of the same time, stored in the opposite order of their ids: the id decides.
    for collection in (database.orders, database.subscription_contracts):
        for n in (2, 1):
            await collection.insert_one(
                {
                    "_id": ObjectId(f"{n:024x}"),
                    "externalId": f"o-tie-{n}",
                    "shopId": SHOP,
                    "contactId": ANN,
                    "emailKey": "ann@example.com",
                    "createdAt": at(47),
                }
            )
    for n in (2, 1):
        await database.messages.insert_one(
            {
                "_id": ObjectId(f"{n:024x}"),
                "subject": f"tie {n}",
                "shopId": SHOP,
                "contactId": ANN,
                "createdAt": at(30),
            }
        )
    await database.messages.insert_many(
        [
            {
                "subject": "by contact",
                "shopId": SHOP,
                "contactId": ANN,
                "toKey": "x@y.z",
                "createdAt": at(60),
            },
            {
                "subject": "before the contact",
                "shopId": SHOP,
                "contactId": None,
                "toKey": "ann@example.com",
                "createdAt": at(2),
            },
            {
                "subject": "bob's",
                "shopId": SHOP,
                "contactId": BOB,
                "toKey": "bob@example.com",
                "createdAt": at(3),
            },
            {
                "subject": "other shop",
                "shopId": OTHER,
                "contactId": None,
                "toKey": "ann@example.com",
                "createdAt": at(4),
            },
        ]
    )


async def test_an_export_holds_everything_of_the_person_and_nothing_of_anyone_else(database):
    await stored_person(database)

    export = await data_export(database, SHOP, ANN)

    assert export is not None
    assert export["exportedAt"] == "2126-04-01T08:30:00.125+00:00"
    assert export["contact"]["_id"] == str(ANN)
    assert export["contact"]["totalSpent"] == "42.50"
    assert "activity" not in export["contact"]  # its entries are listed apart, with the archive
    assert [(e["kind"], e["at"]) for e in export["activity"]] == [
        ("NOTE", "2126-01-01T10:30:00.000+00:00"),
        ("NOTE", "2126-01-01T10:20:00.000+00:00"),
        ("ORDER_PLACED", "2126-01-01T10:10:00.000+00:00"),
        ("CREATED", "2126-01-01T10:01:00.000+00:00"),
    ]
    assert [e["text"] for e in export["notes"]] == ["called", "old"]
    mine = ["o-linked", "o-unlinked", "o-tie-1", "o-tie-2", "o-linked-late"]
    assert [o["externalId"] for o in export["orders"]] == mine
    assert [c["externalId"] for c in export["subscriptionContracts"]] == mine
    assert [m["subject"] for m in export["messages"]] == [
        "before the contact",
        "tie 1",
        "tie 2",
        "by contact",
    ]
    assert export["consentHistory"] == [
        {"state": "SUBSCRIBED", "at": "2126-01-01T10:05:00.000+00:00"}
    ]


async def test_an_export_of_a_contact_without_a_log_or_consent_has_empty_lists(database):
    await database.contacts.insert_one(
        {"_id": ANN, "shopId": SHOP, "emailKey": "ann@example.com", "consent": {}}
    )

    export = await data_export(database, SHOP, ANN)

    assert export is not None
    assert {
        k: export[k] for k in ("activity", "notes", "orders", "messages", "consentHistory")
    } == {
        "activity": [],
        "notes": [],
        "orders": [],
        "messages": [],
        "consentHistory": [],
    }


@pytest.mark.parametrize("contact_id", [ObjectId(), ANN])
async def test_no_export_of_an_unknown_or_another_shop_s_contact(database, contact_id):
    await database.contacts.insert_one({"_id": ANN, "shopId": OTHER, "emailKey": "a@b.io"})

    assert await data_export(database, SHOP, contact_id) is None


# -- erasure ---------------------------------------------------------------------------


async def test_an_erasure_removes_the_person_and_keeps_the_books_without_them(database):
    await stored_person(database)
    await database.labels.insert_many(
        [
            {"shopId": SHOP, "key": "vip", "contactCount": 5},
            {"shopId": SHOP, "key": "b2b", "contactCount": 1},
            {"shopId": SHOP, "key": "new", "contactCount": 2},
            {"shopId": OTHER, "key": "vip", "contactCount": 9},
        ]
    )

    assert await erase_contact(database, SHOP, ANN) == ANN

    assert await database.contacts.find_one({"_id": ANN}) is None
    assert await database.contacts.count_documents({}) == 2
    assert [b["contactId"] for b in await database.activity_archive.find({}).to_list()] == [BOB]
    assert sorted(m["subject"] for m in await database.messages.find({}).to_list()) == [
        "bob's",
        "other shop",
    ]
    for collection in (database.orders, database.subscription_contracts):
        docs = {d["externalId"]: d for d in await collection.find({}).to_list()}
        erased = [docs["o-linked-late"], docs["o-linked"], docs["o-unlinked"]]
        placeholder = erased[0]["email"]
        assert PLACEHOLDER.match(placeholder)
        for doc in erased:
            assert (doc["email"], doc["emailKey"], doc["contactId"]) == (
                placeholder,
                placeholder,
                None,
            )
            assert (doc["firstName"], doc["lastName"]) == (None, None)
            assert (doc["erasedAt"], doc["updatedAt"]) == (NOW, NOW)
            assert doc["total"] == Decimal128("10.00")
        for kept in ("o-bob-same-email", "o-bob", "o-other-shop"):
            assert docs[kept]["firstName"] == "Ann" and "erasedAt" not in docs[kept]
    orders = {d["externalId"]: d for d in await database.orders.find({}).to_list()}
    assert {f: orders["o-linked"][f] for f in privacy.ORDER_PERSONAL_FIELDS} == dict.fromkeys(
        privacy.ORDER_PERSONAL_FIELDS
    )
    labels = {
        (d["shopId"], d["key"]): d["contactCount"] for d in await database.labels.find({}).to_list()
    }
    assert labels == {(SHOP, "vip"): 4, (SHOP, "b2b"): 0, (SHOP, "new"): 2, (OTHER, "vip"): 9}
    erasures = await database.events.find({"type": "CONTACT_ERASED"}).to_list()
    assert [(e["shopId"], e["contactId"], e["data"]) for e in erasures] == [
        (SHOP, ANN, {"id": contact_gid(ANN)})
    ]


async def test_the_same_placeholder_on_every_order_but_a_new_one_per_erasure(database):
    for contact_id, email in ((ANN, "ann@example.com"), (BOB, "bob@example.com")):
        await database.contacts.insert_one(
            {"_id": contact_id, "shopId": SHOP, "emailKey": email, "kind": "LEAD"}
        )
        await database.orders.insert_many(
            [
                {
                    "shopId": SHOP,
                    "externalId": f"{email}-{n}",
                    "contactId": contact_id,
                    "emailKey": email,
                }
                for n in range(2)
            ]
        )

    await erase_contact(database, SHOP, ANN)
    await erase_contact(database, SHOP, BOB)

    placeholders = [d["email"] for d in await database.orders.find({}, sort=[("_id", 1)]).to_list()]
    assert placeholders[0] == placeholders[1] != placeholders[2] == placeholders[3]


@pytest.mark.parametrize("contact_id", [None, ObjectId(), ANN])
async def test_erasing_an_unknown_or_another_shop_s_contact_is_not_found(database, contact_id):
    await database.contacts.insert_one({"_id": ANN, "shopId": OTHER, "emailKey": "ann@example.com"})
    await database.orders.insert_one(
        {"shopId": OTHER, "contactId": ANN, "emailKey": "ann@example.com"}
    )

    with pytest.raises(Refused) as refused:
        await erase_contact(database, SHOP, contact_id)

    assert [(p.field, p.message, p.code) for p in refused.value.problems] == [
        (("id",), "Contact not found.", "NOT_FOUND")
    ]
    assert await database.contacts.count_documents({}) == 1
    assert (await database.orders.find_one({}))["contactId"] == ANN


async def test_a_label_given_while_the_erasure_runs_is_counted_out_too(database, monkeypatch):
    await database.contacts.insert_one(
        {"_id": ANN, "shopId": SHOP, "emailKey": "ann@example.com", "kind": "LEAD"}
    )
    await database.labels.insert_one({"shopId": SHOP, "key": "vip", "contactCount": 0})
    contacts = database.db["contacts"]
    read, go = asyncio.Event(), asyncio.Event()

    class ReadThenWait:
        def __getattr__(self, name: str) -> Any:
            return getattr(contacts, name)

        async def find_one(self, *args: Any, **kwargs: Any) -> Any:
            found = await contacts.find_one(*args, **kwargs)
            if not read.is_set():
                read.set()
                await go.wait()
            return found

    monkeypatch.setattr(type(database), "contacts", property(lambda _: ReadThenWait()))
    erasure = asyncio.create_task(erase_contact(database, SHOP, ANN))
    await read.wait()
    # Another request labels the person after the erasure read them.
    await contacts.update_one({"_id": ANN}, {"$set": {"labelKeys": ["vip"]}})
    await database.labels.update_one({"key": "vip"}, {"$inc": {"contactCount": 1}})
    go.set()
    await erasure

    assert await contacts.count_documents({}) == 0
    assert (await database.labels.find_one({"key": "vip"}))["contactCount"] == 0


async def test_an_erasure_that_fails_at_its_last_write_changes_nothing(database, monkeypatch):
    await stored_person(database)
    await database.labels.insert_many(
        [{"shopId": SHOP, "key": key, "contactCount": 3} for key in ("vip", "b2b")]
    )
    names = ("contacts", "orders", "messages", "labels", "events", "contact_counts")
    before = {name: await database.db[name].find({}).to_list() for name in names}
    labels = database.db["labels"]
    updates: list[Any] = []

    class FailsOnSecond:
        def __getattr__(self, name: str) -> Any:
            return getattr(labels, name)

        async def update_one(self, *args: Any, **kwargs: Any) -> Any:
            updates.append(args[0])
            if len(updates) == 2:
                raise PyMongoError("connection reset")
            return await labels.update_one(*args, **kwargs)

    monkeypatch.setattr(type(database), "labels", property(lambda _: FailsOnSecond()))
    with pytest.raises(PyMongoError):
        await erase_contact(database, SHOP, ANN)
    monkeypatch.undo()

    assert len(updates) == 2
    assert {name: await database.db[name].find({}).to_list() for name in names} == before


async def test_an_erasure_that_fails_changes_nothing(database, monkeypatch):
    await stored_person(database)
    collections = ("contacts", "orders", "subscription_contracts", "messages", "activity_archive")
    before = {name: await database.db[name].find({}).to_list() for name in collections}

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the event store is gone")

    monkeypatch.setattr(privacy, "contact_erased", broken)
    with pytest.raises(RuntimeError):
        await erase_contact(database, SHOP, ANN)

    assert {name: await database.db[name].find({}).to_list() for name in collections} == before
