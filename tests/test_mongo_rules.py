"""The database a shop's data lives in: the client, the collections, the exact indexes it gets.

These call loaders/mongo.py directly on a database of their own (created
empty, dropped afterwards), without the app: the client reads datetimes
back as UTC and keeps the options it is given, every collection has its
handle, `ensure_indexes` builds exactly the index table below (names,
keys and their directions, unique, TTL) and rebuilds only what is gone,
and `missing_indexes` names exactly the indexes a database lacks.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError
from pymongo.uri_parser import parse_uri

from loaders.mongo import COLLECTIONS, INDEXES, Database, connect, ensure_indexes, missing_indexes

T0 = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)

UNIQUE: dict[str, object] = {"unique": True}
TTL: dict[str, object] = {"expireAfterSeconds": 0}

# Every index a database gets besides _id, by collection: its name (made from
# its keys and their directions) and what it enforces. A query's plan relies
# on each one; a change here is a change to every user's database.
INDEX_TABLE: dict[str, dict[str, dict[str, object]]] = {
    "api_keys": {
        "hash_1": UNIQUE,
        "shopId_1_createdAt_1": {},
    },
    "contacts": {
        "shopId_1_emailKey_1": UNIQUE,
        "shopId_1__id_1": {},
        "shopId_1_createdAt_1__id_1": {},
        "shopId_1_updatedAt_1__id_1": {},
        "shopId_1_nameKey_1__id_1": {},
        "shopId_1_emailKey_1__id_1": {},
        "shopId_1_lastOrderAt_1__id_1": {},
        "shopId_1_orderCount_1__id_1": {},
        "shopId_1_totalSpent_1__id_1": {},
        "shopId_1_searchTerms_1": {},
        "shopId_1_labelKeys_1": {},
        "shopId_1_kind_1_createdAt_-1__id_-1": {},
        "shopId_1_phone_1": {},
        "shopId_1_emailCanon_1": {},
        "shopId_1_consent.state_1": {},
        "shopId_1_mergedIds_1": {},
        "shopId_1_activeSubscriptionCount_1_createdAt_-1__id_-1": {},
        "shopId_1_isMember_1_createdAt_-1__id_-1": {},
    },
    "orders": {
        "shopId_1__id_1": {},
        "shopId_1_externalId_1": UNIQUE,
        "shopId_1_contactId_1_placedAt_-1__id_-1": {},
        "shopId_1_emailKey_1": {},
    },
    "labels": {"shopId_1_key_1": UNIQUE},
    "segments": {"shopId_1_nameKey_1": UNIQUE},
    "messages": {
        "shopId_1_contactId_1_createdAt_-1": {},
        "shopId_1_toKey_1": {},
        "status_1_nextAttemptAt_1": {},
        "status_1_createdAt_1": {},
    },
    "activity_archive": {
        "shopId_1_contactId_1_maxAt_-1_maxId_-1": {},
        "shopId_1_entries._id_1": {},
    },
    "rate_limits": {
        "shopId_1_key_1_window_1": UNIQUE,
        "expiresAt_1": TTL,
    },
    "webhook_receipts": {
        "shopId_1_webhookId_1": UNIQUE,
        "expiresAt_1": TTL,
    },
    "throttle": {"expiresAt_1": TTL},
    "events": {
        "expiresAt_1": TTL,
        "shopId_1_contactId_1": {},
    },
    "webhook_endpoints": {"shopId_1_createdAt_1": {}},
    "webhook_deliveries": {
        "status_1_nextAttemptAt_1": {},
        "status_1_createdAt_1": {},
        "shopId_1_endpointId_1_createdAt_-1__id_-1": {},
        "shopId_1_endpointId_1_contactId_1_seq_1": {},
        "expiresAt_1": TTL,
        "shopId_1_contactId_1": {},
    },
    "contact_counts": {"shopId_1__id_1": {}},
    "subscription_contracts": {
        "shopId_1__id_1": {},
        "shopId_1_externalId_1": UNIQUE,
        "shopId_1_contactId_1_startedAt_-1__id_-1": {},
        "shopId_1_emailKey_1": {},
    },
}

# The test server answers at once: a client that cannot find it fails in seconds, not 30.
QUICK = 5000

EVERY_INDEX = [f"{c}.{name}" for c, names in INDEX_TABLE.items() for name in names]


@pytest.fixture
async def fresh(mongodb_uri: str) -> AsyncIterator[Database]:
    """An empty database of its own on the test server, dropped afterwards."""
    client = connect(mongodb_uri, serverSelectionTimeoutMS=QUICK)
    database = Database(client[f"contactgraph_mongo_{os.getpid()}_{uuid.uuid4().hex[:8]}"])
    yield database
    await client.drop_database(database.db.name)
    await client.close()


async def indexes_of(database: Database, collection: str) -> dict[str, dict[str, object]]:
    """The collection's indexes but _id: name -> what it enforces; each name checked against its keys."""
    found = {}
    for name, spec in (await database.db[collection].index_information()).items():
        if name == "_id_":
            continue
        # The name is the keys with their directions, in order: the stored keys must say the same.
        assert name == "_".join(f"{field}_{int(direction)}" for field, direction in spec["key"])
        found[name] = {k: v for k, v in spec.items() if k in ("unique", "expireAfterSeconds")}
    return found


# The client


async def test_datetimes_come_back_as_the_same_utc_instant(mongodb_uri, fresh):
    client = connect(mongodb_uri, serverSelectionTimeoutMS=QUICK)
    try:
        shops = Database(client[fresh.db.name]).shops
        await shops.insert_one({"_id": "s", "at": T0})

        stored = await shops.find_one({"_id": "s"})
    finally:
        await client.close()

    assert stored is not None
    assert stored["at"] == T0
    assert stored["at"].utcoffset() == dt.timedelta(0)


async def test_the_client_reaches_the_server_its_uri_names(mongodb_uri):
    client = connect(mongodb_uri, serverSelectionTimeoutMS=QUICK)
    try:
        assert (await client.admin.command("ping"))["ok"] == 1
        reached = set(client.topology_description.server_descriptions())
    finally:
        await client.close()

    assert reached == set(parse_uri(mongodb_uri)["nodelist"])


async def test_the_client_keeps_the_options_it_is_given(mongodb_uri):
    client = connect(mongodb_uri, serverSelectionTimeoutMS=1500, appname="contactgraph-rules")
    try:
        assert client.options.server_selection_timeout == 1.5
        assert client.options.pool_options.metadata["application"] == {"name": "contactgraph-rules"}
        assert client.codec_options.tz_aware is True
    finally:
        await client.close()


# The collections


def test_every_collection_has_its_handle_of_the_same_name(fresh):
    for name in COLLECTIONS:
        handle = getattr(fresh, name)
        assert handle.name == name
        assert handle.database.name == fresh.db.name
    assert fresh.client is fresh.db.client
    assert len(set(COLLECTIONS)) == len(COLLECTIONS) == 17


def test_every_indexed_collection_is_one_of_the_collections():
    assert set(INDEXES) <= set(COLLECTIONS)
    assert set(INDEXES) == set(INDEX_TABLE)


# ensure_indexes


async def test_an_empty_database_gets_exactly_the_index_table(fresh):
    await ensure_indexes(fresh)

    for collection in COLLECTIONS:
        assert await indexes_of(fresh, collection) == INDEX_TABLE.get(collection, {}), collection


async def test_building_the_indexes_again_changes_nothing_and_keeps_the_data(fresh):
    await ensure_indexes(fresh)
    await fresh.contacts.insert_one({"shopId": "s", "emailKey": "ann@example.com"})

    await ensure_indexes(fresh)

    assert await indexes_of(fresh, "contacts") == INDEX_TABLE["contacts"]
    assert await fresh.contacts.count_documents({}) == 1


async def test_a_dropped_index_is_built_again_and_the_others_stay(fresh):
    await ensure_indexes(fresh)
    await fresh.orders.drop_index("shopId_1_externalId_1")
    await fresh.events.drop_index("expiresAt_1")

    await ensure_indexes(fresh)

    assert await indexes_of(fresh, "orders") == INDEX_TABLE["orders"]
    assert await indexes_of(fresh, "events") == INDEX_TABLE["events"]


async def test_an_address_is_taken_once_per_shop(fresh):
    await ensure_indexes(fresh)
    await fresh.contacts.insert_one({"shopId": "a", "emailKey": "ann@example.com"})
    # The same address in another shop is another person.
    await fresh.contacts.insert_one({"shopId": "b", "emailKey": "ann@example.com"})

    with pytest.raises(DuplicateKeyError):
        await fresh.contacts.insert_one({"shopId": "a", "emailKey": "ann@example.com"})

    assert await fresh.contacts.count_documents({"shopId": "a"}) == 1


# missing_indexes


async def test_an_empty_database_lacks_every_index_in_table_order(fresh):
    assert await missing_indexes(fresh) == EVERY_INDEX
    assert len(EVERY_INDEX) == 51


async def test_a_database_with_the_indexes_lacks_none(fresh):
    await ensure_indexes(fresh)

    assert await missing_indexes(fresh) == []


async def test_the_dropped_indexes_are_named_with_their_collection(fresh):
    await ensure_indexes(fresh)
    await fresh.contacts.drop_index("shopId_1_phone_1")
    await fresh.contacts.drop_index("shopId_1_emailKey_1")
    await fresh.throttle.drop_index("expiresAt_1")
    # An index the table does not name is no reason to report anything.
    await fresh.shops.create_index([("name", ASCENDING)])

    assert await missing_indexes(fresh) == [
        "contacts.shopId_1_emailKey_1",
        "contacts.shopId_1_phone_1",
        "throttle.expiresAt_1",
    ]


async def test_an_index_whose_keys_changed_counts_as_missing(fresh):
    await ensure_indexes(fresh)
    await fresh.labels.drop_index("shopId_1_key_1")
    # The same fields the other way round: another name, so not the one queries need.
    await fresh.labels.create_index([("key", ASCENDING), ("shopId", ASCENDING)], unique=True)

    assert await missing_indexes(fresh) == ["labels.shopId_1_key_1"]
