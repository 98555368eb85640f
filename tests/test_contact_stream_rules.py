"""The export's stream of contacts, read straight from the loader.

tests/test_export.py downloads the CSV; these pin the stream underneath on
the embedded server: every contact the condition selects exactly once, in
(sort field, _id) order either way with missing values first ascending and
last descending, batches of exactly the size asked (the last one the rest,
no empty one), the projection applied, one round trip per batch, and a
stream stopped early closing its cursor on the server.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bson import ObjectId
from conftest import OTHER_SHOP, SHOP

from loaders.contact_stream import EXPORT_BATCH, contact_batches

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
MATCH = {"shopId": SHOP, "kind": "CUSTOMER"}


async def batches(database: Any, *args: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
    return [batch async for batch in contact_batches(database, *args, **kwargs)]


def in_order(rows: list[dict[str, Any]], field: str, ascending: bool) -> list[ObjectId]:
    """(field, _id) order as the server sorts: a missing value below every date."""
    undated = sorted((r for r in rows if field not in r), key=lambda r: r["_id"])
    dated = sorted((r for r in rows if field in r), key=lambda r: (r[field], r["_id"]))
    ordered = [r["_id"] for r in undated + dated]
    return ordered if ascending else ordered[::-1]


@pytest.fixture
async def customers(database: Any) -> list[dict[str, Any]]:
    """Twelve customers: ties on the date, two without one; beside them leads and another shop's."""
    oids = sorted(ObjectId() for _ in range(20))
    order = [7, 2, 11, 0, 5, 9, 3, 10, 1, 6, 8, 4]  # written out of _id order
    minutes = [3, 1, 3, None, 2, 3, None, 0, 5, 1, 4, 2]
    rows = []
    for i, minute in zip(order, minutes, strict=True):
        doc: dict[str, Any] = {
            "_id": oids[i],
            "shopId": SHOP,
            "kind": "CUSTOMER",
            "email": f"c{i}@example.com",
            "emailKey": f"c{i}@example.com",
            "labels": ["VIP"],
        }
        if minute is not None:
            doc["lastOrderAt"] = T0 + dt.timedelta(minutes=minute)
        rows.append(doc)
    await database.contacts.insert_many(rows)
    await database.contacts.insert_many(
        [
            {"_id": oids[12], "shopId": SHOP, "emailKey": "l", "kind": "LEAD", "lastOrderAt": T0},
            {
                "_id": oids[13],
                "shopId": OTHER_SHOP,
                "emailKey": "o",
                "kind": "CUSTOMER",
                "lastOrderAt": T0,
            },
        ]
    )
    return rows


@pytest.mark.parametrize("ascending", [True, False])
@pytest.mark.parametrize("batch_size", [1, 5, 6, 11, 12, 13, 100])
async def test_every_selected_contact_comes_once_in_order_in_batches_of_the_size_asked(
    database, customers, ascending, batch_size
):
    got = await batches(database, MATCH, "lastOrderAt", ascending=ascending, batch_size=batch_size)
    full, rest = divmod(len(customers), batch_size)
    assert [len(b) for b in got] == [batch_size] * full + ([rest] if rest else [])
    assert [doc["_id"] for b in got for doc in b] == in_order(customers, "lastOrderAt", ascending)


async def test_the_stream_is_ascending_unless_asked_otherwise(database, customers):
    got = await batches(database, MATCH, "email", batch_size=5)
    assert [doc["_id"] for b in got for doc in b] == in_order(customers, "email", True)


async def test_a_condition_selecting_no_one_gives_no_batch_at_all(database, customers):
    assert await batches(database, {"shopId": SHOP, "kind": "NOBODY"}, "email") == []
    assert await batches(database, {"shopId": "empty-shop"}, "email", batch_size=1) == []


async def test_the_projection_is_applied_and_without_one_the_whole_contact_comes(
    database, customers
):
    got = await batches(database, MATCH, "email", projection={"email": 1}, batch_size=4)
    assert [doc for b in got for doc in b] == [
        {"_id": doc["_id"], "email": doc["email"]}
        for doc in sorted(customers, key=lambda d: d["email"])
    ]
    whole = await batches(database, MATCH, "email", batch_size=4)
    assert [doc for b in whole for doc in b] == sorted(customers, key=lambda d: d["email"])


async def test_each_batch_is_one_round_trip_to_the_server(database, customers, commands):
    commands.reset()
    got = await batches(database, MATCH, "email", batch_size=5)
    assert [len(b) for b in got] == [5, 5, 2]
    assert commands.on("contacts") == ["find", "getMore", "getMore"]


async def test_the_default_batch_is_five_hundred_contacts(database):
    await database.contacts.insert_many(
        [
            {
                "shopId": SHOP,
                "kind": "CUSTOMER",
                "email": f"{i:04}@x.com",
                "emailKey": f"{i:04}@x.com",
            }
            for i in range(501)
        ]
    )
    got = await batches(database, MATCH, "email")
    assert [len(b) for b in got] == [EXPORT_BATCH, 1] == [500, 1]
    assert [d["email"] for d in got[0] + got[1]] == [f"{i:04}@x.com" for i in range(501)]


async def test_a_stream_stopped_early_closes_its_cursor_on_the_server(
    database, customers, commands
):
    commands.reset()
    stream = contact_batches(database, MATCH, "email", batch_size=5)
    first = await anext(stream)
    assert len(first) == 5
    await stream.aclose()
    assert commands.on("contacts") == ["find", "killCursors"]
