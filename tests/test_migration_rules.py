"""Data migrations to the edge: what each one changes and leaves, how runs are recorded, and
what a server that finds the database behind is told.

tests/test_migrations.py and tests/test_order_dates.py tell the upgrade story;
these call the migrations directly, on the embedded server, for the exact
rules: which documents each one selects and skips, the batches it writes in,
a repair that an order overtakes, the record of a run, and the refusal text.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bson import ObjectId
from conftest import OTHER_SHOP, SHOP
from list_factories import add_contacts, at, contact_doc, order_doc
from pymongo import ASCENDING, DESCENDING, MongoClient

from loaders.mongo import Database, ensure_indexes, missing_indexes
from resolvers import migrations
from resolvers.contact_counts import contact_totals
from resolvers.migrations import (
    MIGRATIONS,
    REPAIR_ATTEMPTS,
    SchemaNotReady,
    count_contacts_once,
    drop_replaced_indexes,
    key_drafts,
    key_message_addresses,
    migrate,
    repair_order_dates,
    run_migrations,
    schema_gaps,
)

NOW = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrations, "now", lambda: NOW)


@pytest.fixture
async def scratch(database: Database) -> AsyncIterator[Database]:
    """An empty database of its own (no collections, no indexes); dropped afterwards."""
    fresh = Database(database.client[f"contactgraph_migration_rules_{os.getpid()}"])
    await fresh.client.drop_database(fresh.db.name)
    yield fresh
    await fresh.client.drop_database(fresh.db.name)


async def stored(database: Database, doc: dict[str, Any]) -> dict[str, Any]:
    found = await database.contacts.find_one({"_id": doc["_id"]})
    assert found is not None
    return found


def without(doc: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in names}


TIMES = ("firstOrderAt", "lastOrderAt")


# --- repair_order_dates -----------------------------------------------------------------


async def test_null_last_order_and_archive_times_go_even_where_the_first_is_not_null(
    database, commands
):
    # Only null first order times are repaired from the orders; the other nulls just go.
    no_first = contact_doc("a@example.com", lastOrderAt=None, activityArchivedAt=None)
    kept = contact_doc(
        "b@example.com", orders=1, firstOrderAt=at(1), lastOrderAt=at(2), activityArchivedAt=at(3)
    )
    await add_contacts(database, no_first, kept)
    commands.reset()

    assert await repair_order_dates(database) == 0

    # No null first order time: one look, and no order is read.
    assert commands.on("contacts") == ["update", "update", "find"]
    assert commands.on("orders") == []

    assert await stored(database, no_first) == without(
        no_first, "lastOrderAt", "activityArchivedAt"
    )
    assert await stored(database, kept) == kept


async def test_the_repair_reads_each_shops_counted_orders_only(database):
    mine = contact_doc("ann@example.com", orders=2, firstOrderAt=None, lastOrderAt=at(9))
    theirs = contact_doc("bob@example.com", shop=OTHER_SHOP, orders=1, firstOrderAt=None)
    # Its only orders are canceled, a draft, and one of another shop filed under its id.
    uncounted = contact_doc(
        "cid@example.com", firstOrderAt=None, lastOrderAt=at(7), activityArchivedAt=None
    )
    await add_contacts(database, mine, theirs, uncounted)
    await database.orders.insert_many(
        [
            order_doc(mine, "5.00", status="CANCELED", placed=at(1)),
            order_doc(mine, "5.00", status="FULFILLED", placed=at(3)),
            order_doc(mine, "5.00", status="OPEN", placed=at(6)),
            order_doc(mine, "5.00", status="REFUNDED", placed=at(8)),
            order_doc(theirs, "5.00", placed=at(4)),
            order_doc(uncounted, "5.00", status="CANCELED", placed=at(2)),
            order_doc(uncounted, "5.00", status="DRAFT", placed=at(2)),
            {**order_doc(uncounted, "5.00", placed=at(5)), "shopId": OTHER_SHOP},
        ]
    )

    assert await repair_order_dates(database) == 3

    assert await stored(database, mine) == {**mine, "firstOrderAt": at(3), "lastOrderAt": at(6)}
    assert await stored(database, theirs) == {**theirs, "firstOrderAt": at(4), "lastOrderAt": at(4)}
    assert await stored(database, uncounted) == without(
        uncounted, "firstOrderAt", "lastOrderAt", "activityArchivedAt"
    )


async def test_the_repair_reads_the_orders_once_per_batch_and_the_contacts_once(
    database, commands, monkeypatch
):
    monkeypatch.setattr(migrations, "BATCH", 2)
    docs = [
        contact_doc(f"c{n}@example.com", orders=1, firstOrderAt=None, orderRev=n) for n in range(5)
    ]
    await add_contacts(database, *docs)
    await database.orders.insert_many(
        [order_doc(d, "1.00", placed=at(n)) for n, d in enumerate(docs)]
    )
    commands.reset()

    assert await repair_order_dates(database) == 5

    assert commands.on("orders") == ["aggregate"] * 3  # batches of 2, 2 and 1
    # The nulls go first; then one read of the contacts, BATCH at a time, each batch
    # repaired before the next is fetched.
    assert commands.on("contacts") == [
        *("update", "update"),
        *("find", "update", "update"),
        *("getMore", "update", "update"),
        *("getMore", "update"),
    ]
    for n, doc in enumerate(docs):
        assert without(await stored(database, doc), "_id") == {
            **without(doc, "_id"),
            "firstOrderAt": at(n),
            "lastOrderAt": at(n),
        }


async def test_a_batch_that_fills_exactly_is_repaired_once(database, commands, monkeypatch):
    monkeypatch.setattr(migrations, "BATCH", 2)
    docs = [contact_doc(f"c{n}@example.com", orders=1, firstOrderAt=None) for n in range(4)]
    await add_contacts(database, *docs)
    await database.orders.insert_many([order_doc(d, "1.00", placed=at(1)) for d in docs])
    commands.reset()

    assert await repair_order_dates(database) == 4

    assert commands.on("orders") == ["aggregate"] * 2
    assert await database.contacts.count_documents({"firstOrderAt": at(1)}) == 4


def orders_landing(monkeypatch: pytest.MonkeyPatch, database: Database, times: dict) -> list[int]:
    """Before each batch is repaired, a statistics write lands on the contacts in `times`
    (id -> how many more times); the sizes of the batches repaired, in order."""
    real = migrations._repair_batch
    sizes: list[int] = []

    async def batch_overtaken(db: Database, contacts: list[dict]) -> int:
        sizes.append(len(contacts))
        for contact in contacts:
            if times.get(contact["_id"], 0) > 0:
                times[contact["_id"]] -= 1
                await database.contacts.update_one(
                    {"_id": contact["_id"]}, {"$inc": {"orderRev": 1}}
                )
        return await real(db, contacts)

    monkeypatch.setattr(migrations, "_repair_batch", batch_overtaken)
    return sizes


async def test_a_contact_an_order_overtook_is_repaired_on_the_next_pass(database, monkeypatch):
    docs = [contact_doc(f"c{n}@example.com", orders=1, firstOrderAt=None) for n in range(3)]
    await add_contacts(database, *docs)
    await database.orders.insert_many([order_doc(d, "1.00", placed=at(2)) for d in docs])
    sizes = orders_landing(monkeypatch, database, {docs[1]["_id"]: 2})

    assert await repair_order_dates(database) == 3

    assert sizes == [3, 1, 1]
    for doc in docs:
        assert [(await stored(database, doc))[name] for name in TIMES] == [at(2), at(2)]


async def test_contacts_overtaken_in_different_batches_are_all_repaired(database, monkeypatch):
    monkeypatch.setattr(migrations, "BATCH", 2)
    docs = [contact_doc(f"c{n}@example.com", orders=1, firstOrderAt=None) for n in range(3)]
    await add_contacts(database, *docs)
    await database.orders.insert_many([order_doc(d, "1.00", placed=at(2)) for d in docs])
    # One in the full batch, one in the last, partial one.
    sizes = orders_landing(monkeypatch, database, {docs[0]["_id"]: 1, docs[2]["_id"]: 1})

    assert await repair_order_dates(database) == 3

    assert sizes == [2, 1, 2]
    assert await database.contacts.count_documents({"firstOrderAt": at(2)}) == 3


async def test_a_contact_that_keeps_changing_is_left_for_the_next_run(
    database, commands, monkeypatch
):
    busy, calm = (
        contact_doc(f"{name}@example.com", orders=1, firstOrderAt=None) for name in ("busy", "calm")
    )
    await add_contacts(database, busy, calm)
    await database.orders.insert_many([order_doc(d, "1.00", placed=at(2)) for d in (busy, calm)])
    sizes = orders_landing(monkeypatch, database, {busy["_id"]: REPAIR_ATTEMPTS})
    commands.reset()

    assert await repair_order_dates(database) == 1

    assert REPAIR_ATTEMPTS == 5
    assert sizes == [2, 1, 1, 1, 1]
    assert commands.on("contacts").count("find") == 5
    assert (await stored(database, busy))["firstOrderAt"] is None
    assert (await stored(database, calm))["firstOrderAt"] == at(2)
    # The next run finds it calm.
    assert await repair_order_dates(database) == 1
    assert (await stored(database, busy))["firstOrderAt"] == at(2)


async def test_a_contact_repaired_meanwhile_is_not_written_again(database):
    contact = contact_doc("ann@example.com", orders=1, firstOrderAt=None, orderRev=4)
    await add_contacts(database, contact)
    await database.orders.insert_one(order_doc(contact, "1.00", placed=at(2)))
    as_read = {"_id": contact["_id"], "shopId": SHOP, "orderRev": 4}
    # Another worker's run repaired it from orders it saw then.
    await database.contacts.update_one(
        {"_id": contact["_id"]}, {"$set": {"firstOrderAt": at(1), "lastOrderAt": at(1)}}
    )

    assert await migrations._repair_batch(database, [as_read]) == 0

    assert [(await stored(database, contact))[name] for name in TIMES] == [at(1), at(1)]


async def test_a_contact_stored_without_order_rev_is_repaired(database):
    contact = contact_doc("ann@example.com", orders=1, firstOrderAt=None)
    contact.pop("orderRev", None)
    await add_contacts(database, contact)
    await database.orders.insert_one(order_doc(contact, "1.00", placed=at(2)))

    assert await repair_order_dates(database) == 1

    assert "orderRev" not in await stored(database, contact)
    assert [(await stored(database, contact))[name] for name in TIMES] == [at(2), at(2)]


# --- drop_replaced_indexes -------------------------------------------------------------


async def index_names(database: Database, collection: str) -> set[str]:
    return set(await database.db[collection].index_information())


async def test_an_index_with_the_old_option_is_dropped_and_named(scratch):
    await scratch.contacts.create_index([("shopId", ASCENDING), ("phone", ASCENDING)], sparse=True)

    assert await drop_replaced_indexes(scratch) == ["contacts.shopId_1_phone_1"]

    assert await index_names(scratch, "contacts") == {"_id_"}


async def test_an_index_already_current_is_kept_and_the_rest_still_checked(scratch):
    await scratch.contacts.create_index([("shopId", ASCENDING), ("phone", ASCENDING)])
    await scratch.contacts.create_index(
        [("shopId", ASCENDING), ("kind", ASCENDING), ("createdAt", DESCENDING)]
    )

    assert await drop_replaced_indexes(scratch) == ["contacts.shopId_1_kind_1_createdAt_-1"]

    assert await index_names(scratch, "contacts") == {"_id_", "shopId_1_phone_1"}


async def test_indexes_that_are_absent_are_skipped(scratch):
    await scratch.orders.create_index([("shopId", ASCENDING), ("status", ASCENDING)], sparse=True)
    await scratch.contacts.insert_one({"shopId": "s"})
    replaced = [
        ("contacts", "shopId_1_phone_1", "sparse"),
        ("contacts", "gone_1", None),
        ("orders", "shopId_1_status_1", "sparse"),
    ]

    assert await drop_replaced_indexes(scratch, replaced) == ["orders.shopId_1_status_1"]

    assert await index_names(scratch, "orders") == {"_id_"}


async def test_an_unwanted_index_goes_whatever_its_options(scratch):
    await scratch.contacts.create_index([("shopId", ASCENDING), ("activity._id", ASCENDING)])
    unused = dict(MIGRATIONS)["drop-unused-indexes-1"]

    assert await unused(scratch) == ["contacts.shopId_1_activity._id_1"]

    assert await index_names(scratch, "contacts") == {"_id_"}
    assert await unused(scratch) == []


# --- key_message_addresses -------------------------------------------------------------


async def test_only_messages_with_an_address_and_without_a_key_are_keyed(database, commands):
    earlier = {"_id": ObjectId(), "shopId": SHOP, "to": "Ann.Lee@Example.COM"}
    keyed = {"_id": ObjectId(), "shopId": SHOP, "to": "Bob@Example.com", "toKey": "kept@example"}
    no_address = {"_id": ObjectId(), "shopId": SHOP, "to": None}
    missing = {"_id": ObjectId(), "shopId": SHOP}
    await database.messages.insert_many([earlier, keyed, no_address, missing])

    assert await key_message_addresses(database) == 1

    found = {m["_id"]: m async for m in database.messages.find({})}
    assert found == {
        earlier["_id"]: {**earlier, "toKey": "ann.lee@example.com"},
        keyed["_id"]: keyed,
        no_address["_id"]: no_address,
        missing["_id"]: missing,
    }
    # Run again, it finds nothing to write.
    commands.reset()
    assert await key_message_addresses(database) == 0
    assert commands.on("messages") == ["find"]


async def test_messages_are_keyed_in_batches(database, commands, monkeypatch):
    monkeypatch.setattr(migrations, "BATCH", 2)
    messages = [{"_id": ObjectId(), "shopId": SHOP, "to": f"P{n}@Example.com"} for n in range(5)]
    await database.messages.insert_many(messages)
    commands.reset()

    assert await key_message_addresses(database) == 5

    # One read, BATCH messages at a time, each batch written before the next is fetched.
    assert commands.on("messages") == [
        *("find", "update"),
        *("getMore", "update"),
        *("getMore", "update"),
    ]
    keys = {m["_id"]: m["toKey"] async for m in database.messages.find({})}
    assert keys == {m["_id"]: f"p{n}@example.com" for n, m in enumerate(messages)}


async def test_a_message_keyed_meanwhile_is_left_as_it_is(database, mongodb_uri, monkeypatch):
    ann = {"_id": ObjectId(), "shopId": SHOP, "to": "Ann@Example.com"}
    bob = {"_id": ObjectId(), "shopId": SHOP, "to": "Bob@Example.com"}
    await database.messages.insert_many([ann, bob])
    real = migrations.email_key

    def keyed_by_another_run(address: str) -> str:
        # Another worker's run of the same migration keys Ann's message first.
        if address == ann["to"]:
            with MongoClient(mongodb_uri) as client:
                client[database.db.name].messages.update_one(
                    {"_id": ann["_id"]}, {"$set": {"toKey": "ann@example.com"}}
                )
        return real(address)

    monkeypatch.setattr(migrations, "email_key", keyed_by_another_run)

    assert await key_message_addresses(database) == 1

    keys = {m["_id"]: m["toKey"] async for m in database.messages.find({})}
    assert keys == {ann["_id"]: "ann@example.com", bob["_id"]: "bob@example.com"}


async def test_a_full_last_batch_of_messages_is_written_once(database, commands, monkeypatch):
    monkeypatch.setattr(migrations, "BATCH", 2)
    await database.messages.insert_many(
        [{"_id": ObjectId(), "shopId": SHOP, "to": f"p{n}@example.com"} for n in range(4)]
    )
    commands.reset()

    assert await key_message_addresses(database) == 4

    assert commands.on("messages").count("update") == 2


# --- key_drafts ------------------------------------------------------------------------


async def test_drafts_get_their_own_id_as_external_id(scratch):
    no_key = {"_id": ObjectId(), "shopId": SHOP, "status": "DRAFT"}
    null_key = {"_id": ObjectId(), "shopId": SHOP, "status": "DRAFT", "externalId": None}
    placed = {"_id": ObjectId(), "shopId": SHOP, "status": "OPEN", "externalId": "A-1"}
    await scratch.orders.insert_many([no_key, null_key, placed])

    assert await key_drafts(scratch) == 2

    found = {o["_id"]: o async for o in scratch.orders.find({})}
    assert found == {
        no_key["_id"]: {**no_key, "externalId": no_key["_id"]},
        null_key["_id"]: {**null_key, "externalId": null_key["_id"]},
        placed["_id"]: placed,
    }
    assert await key_drafts(scratch) == 0


async def test_the_partial_external_id_index_goes(scratch):
    await scratch.orders.create_index(
        [("shopId", ASCENDING), ("externalId", ASCENDING)],
        unique=True,
        partialFilterExpression={"externalId": {"$type": "string"}},
    )

    assert await key_drafts(scratch) == 0

    assert await index_names(scratch, "orders") == {"_id_"}


async def test_the_plain_external_id_index_stays(scratch):
    await scratch.orders.create_index(
        [("shopId", ASCENDING), ("externalId", ASCENDING)], unique=True
    )

    assert await key_drafts(scratch) == 0

    assert await index_names(scratch, "orders") == {"_id_", "shopId_1_externalId_1"}


async def test_drafts_are_keyed_where_there_is_no_external_id_index(scratch):
    await scratch.orders.insert_one({"_id": ObjectId(), "shopId": SHOP, "status": "DRAFT"})

    assert await key_drafts(scratch) == 1

    assert await index_names(scratch, "orders") == {"_id_"}


# --- count_contacts_once ---------------------------------------------------------------


async def test_every_shop_with_contacts_is_counted_and_stray_shop_ids_are_not(database):
    await add_contacts(
        database,
        contact_doc("a@example.com"),
        contact_doc("b@example.com", orders=1),
        contact_doc("c@example.com", orders=2),
        contact_doc("d@example.com", shop=OTHER_SHOP),
        {**contact_doc("e@example.com"), "shopId": None},
        {**contact_doc("f@example.com"), "shopId": 7},
    )

    assert await count_contacts_once(database) == 2

    assert await contact_totals(database, SHOP) == {"total": 3, "CUSTOMER": 2, "LEAD": 1}
    assert await contact_totals(database, OTHER_SHOP) == {"total": 1, "CUSTOMER": 0, "LEAD": 1}
    assert await database.contact_counts.count_documents({}) == 2


async def test_a_shop_whose_count_fails_keeps_its_counters(database, monkeypatch):
    await add_contacts(database, contact_doc("a@example.com"), contact_doc("b@example.com"))
    earlier = {"_id": ObjectId(), "shopId": SHOP, "total": 9, "CUSTOMER": 4, "LEAD": 5}
    await database.contact_counts.insert_one(earlier)
    real = migrations.rebuild_counts

    async def counted_then_failed(db: Database, shop_id: str, *, session: Any) -> None:
        await real(db, shop_id, session=session)
        raise RuntimeError("connection lost")

    monkeypatch.setattr(migrations, "rebuild_counts", counted_then_failed)

    with pytest.raises(RuntimeError, match="connection lost"):
        await count_contacts_once(database)

    assert await database.contact_counts.find({}).to_list() == [earlier]


# --- run_migrations --------------------------------------------------------------------


def recording(monkeypatch: pytest.MonkeyPatch, results: dict[str, Any]) -> list[str]:
    """MIGRATIONS replaced by ones named as in `results` returning those results (an exception
    is raised); the names of those called, in order."""
    called: list[str] = []

    def make(name: str, result: Any) -> Any:
        async def migration(database: Database) -> Any:
            called.append(name)
            if isinstance(result, Exception):
                raise result
            return result

        return migration

    monkeypatch.setattr(
        migrations, "MIGRATIONS", [(name, make(name, r)) for name, r in results.items()]
    )
    return called


async def recorded(database: Database) -> list[dict]:
    return await database.migrations.find({}).sort("_id", 1).to_list()


async def test_pending_migrations_run_in_order_and_are_recorded_with_their_result(
    scratch, monkeypatch, caplog
):
    await scratch.migrations.insert_one({"_id": "a-first", "doneAt": at(0), "result": 1})
    called = recording(monkeypatch, {"a-first": 11, "b-second": ["x.y"], "c-third": 0})

    with caplog.at_level(logging.INFO, logger="contactgraph"):
        assert await run_migrations(scratch) == ["b-second", "c-third"]

    assert called == ["b-second", "c-third"]
    assert await recorded(scratch) == [
        {"_id": "a-first", "doneAt": at(0), "result": 1},
        {"_id": "b-second", "doneAt": NOW, "result": ["x.y"]},
        {"_id": "c-third", "doneAt": NOW, "result": 0},
    ]
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("contactgraph", "INFO", "data migration b-second: running"),
        ("contactgraph", "INFO", "data migration b-second: done (['x.y'])"),
        ("contactgraph", "INFO", "data migration c-third: running"),
        ("contactgraph", "INFO", "data migration c-third: done (0)"),
    ]


async def test_a_migration_that_fails_is_run_again_by_the_next_start(scratch, monkeypatch):
    called = recording(
        monkeypatch, {"a-first": 1, "b-second": RuntimeError("stopped"), "c-third": 3}
    )

    with pytest.raises(RuntimeError, match="stopped"):
        await run_migrations(scratch)

    assert called == ["a-first", "b-second"]
    assert [doc["_id"] for doc in await recorded(scratch)] == ["a-first"]

    called = recording(monkeypatch, {"a-first": 1, "b-second": 2, "c-third": 3})
    assert await run_migrations(scratch) == ["b-second", "c-third"]
    assert called == ["b-second", "c-third"]


async def test_the_released_migrations_in_their_order():
    assert [name for name, _ in MIGRATIONS] == [
        "order-dates-never-null",
        "drop-replaced-indexes-1",
        "drafts-keyed-by-their-id",
        "message-address-keys",
        "drop-unused-indexes-1",
        "contact-counters",
    ]


# --- migrate ---------------------------------------------------------------------------


async def test_a_new_database_records_every_migration_without_running_one(scratch, monkeypatch):
    called = recording(monkeypatch, {"a-first": 1, "b-second": 2})

    assert await migrate(scratch) == []

    assert called == []
    assert await recorded(scratch) == [
        {"_id": "a-first", "doneAt": NOW, "result": "new database"},
        {"_id": "b-second", "doneAt": NOW, "result": "new database"},
    ]
    assert await missing_indexes(scratch) == []
    assert await schema_gaps(scratch) == []


async def test_a_database_with_data_runs_its_migrations_then_builds_the_indexes(
    scratch, monkeypatch
):
    await scratch.contacts.insert_one({"shopId": SHOP})
    called = recording(monkeypatch, {"a-first": 1, "b-second": 2})

    assert await migrate(scratch) == ["a-first", "b-second"]

    assert called == ["a-first", "b-second"]
    assert [(d["_id"], d["result"]) for d in await recorded(scratch)] == [
        ("a-first", 1),
        ("b-second", 2),
    ]
    assert await missing_indexes(scratch) == []


# --- schema_gaps and SchemaNotReady ----------------------------------------------------


async def test_gaps_name_the_pending_migrations_then_the_missing_indexes(scratch, monkeypatch):
    recording(monkeypatch, {"a-first": 1, "b-second": 2, "c-third": 3})
    await scratch.migrations.insert_one({"_id": "b-second"})
    indexes = await missing_indexes(scratch)

    assert await schema_gaps(scratch) == [
        "migration a-first",
        "migration c-third",
        *(f"index {name}" for name in indexes),
    ]
    assert "index contacts.shopId_1_emailKey_1__id_1" in await schema_gaps(scratch)

    await ensure_indexes(scratch)
    assert await schema_gaps(scratch) == ["migration a-first", "migration c-third"]


def gaps(n: int) -> list[str]:
    return [f"index c.i{k}" for k in range(1, n + 1)]


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (1, "index c.i1"),
        (5, "index c.i1, index c.i2, index c.i3, index c.i4, index c.i5"),
        (6, "index c.i1, index c.i2, index c.i3, index c.i4, index c.i5 and 1 more"),
        (8, "index c.i1, index c.i2, index c.i3, index c.i4, index c.i5 and 3 more"),
    ],
)
def test_the_refusal_shows_five_gaps_and_counts_the_rest(count: int, shown: str):
    refusal = SchemaNotReady(gaps(count))

    assert str(refusal) == (
        f"The database is not ready for this version ({shown}): run `contactgraph migrate`."
    )
    assert refusal.gaps == gaps(count)
