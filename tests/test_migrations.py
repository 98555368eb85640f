"""Startup migrations: a database of an earlier version is brought to this one's indexes and data."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING

from loaders.mongo import Database, ensure_indexes
from resolvers.migrations import (
    MIGRATIONS,
    drop_replaced_indexes,
    key_message_addresses,
    run_migrations,
)


@pytest.fixture
async def old_database(database: Database) -> AsyncIterator[Database]:
    """A database of its own, as an earlier version left it; dropped afterwards."""
    scratch = Database(database.client[f"contactgraph_migrate_{os.getpid()}"])
    await scratch.client.drop_database(scratch.db.name)
    yield scratch
    await scratch.client.drop_database(scratch.db.name)


async def _index_specs(database: Database, collection: str) -> dict[str, dict]:
    return await database.db[collection].index_information()


async def test_indexes_of_an_earlier_version_are_replaced_before_the_new_ones_are_built(
    old_database,
):
    contacts = old_database.contacts
    await contacts.create_index([("shopId", ASCENDING), ("phone", ASCENDING)], sparse=True)
    await contacts.create_index(
        [("shopId", ASCENDING), ("kind", ASCENDING), ("createdAt", DESCENDING)]
    )
    await contacts.insert_one({"shopId": "s", "emailKey": "a@example.com", "kind": "LEAD"})

    assert sorted(await drop_replaced_indexes(old_database)) == [
        "contacts.shopId_1_kind_1_createdAt_-1",
        "contacts.shopId_1_phone_1",
    ]
    # The current indexes can now be built under the same names.
    await ensure_indexes(old_database)

    specs = await _index_specs(old_database, "contacts")
    assert "sparse" not in specs["shopId_1_phone_1"]
    assert "shopId_1_kind_1_createdAt_-1" not in specs
    assert "shopId_1_kind_1_createdAt_-1__id_-1" in specs
    assert await contacts.count_documents({}) == 1


async def test_current_indexes_are_left_alone(old_database):
    await ensure_indexes(old_database)
    before = await _index_specs(old_database, "contacts")

    assert await drop_replaced_indexes(old_database) == []

    assert await _index_specs(old_database, "contacts") == before


async def test_an_earlier_database_starts_with_all_migrations_run_once(old_database):
    await old_database.contacts.create_index(
        [("shopId", ASCENDING), ("phone", ASCENDING)], sparse=True
    )

    assert await run_migrations(old_database) == [name for name, _ in MIGRATIONS]
    await ensure_indexes(old_database)
    assert await run_migrations(old_database) == []

    recorded = {doc["_id"] async for doc in old_database.migrations.find({})}
    assert recorded == {name for name, _ in MIGRATIONS}


async def test_messages_of_an_earlier_version_get_their_address_key(old_database):
    earlier = {"_id": ObjectId(), "shopId": "s", "to": "Ann.Lee@Example.com", "subject": "x"}
    current = {**earlier, "_id": ObjectId(), "toKey": "ann.lee@example.com"}
    await old_database.messages.insert_many([earlier, current])

    assert await key_message_addresses(old_database) == 1

    keys = {m["_id"]: m["toKey"] async for m in old_database.messages.find({})}
    assert keys == {earlier["_id"]: "ann.lee@example.com", current["_id"]: "ann.lee@example.com"}
    assert await key_message_addresses(old_database) == 0
