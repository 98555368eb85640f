"""Changes stored data needs once after an upgrade, run by `contactgraph migrate` and recorded.

`migrate` brings a database up to this version: the data migrations, then
every index. It runs once per deploy (`contactgraph migrate`, or `serve` on
the embedded database it starts itself); a server on MONGODB_URI only checks
with `schema_gaps` and refuses to start while something is missing, so no
worker ever builds an index or rewrites data during its own start.

`run_migrations` applies, in order, every migration this database has not
recorded in its `migrations` collection, and records each one that
finished. Each migration is idempotent and safe while the API serves
requests: a run cut short (the process stopped) is simply run again by the
next start, and two workers starting at once both run it without harm.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne

from loaders.mongo import Database, Doc, ensure_indexes, missing_indexes
from loaders.orders import history_stages
from resolvers.activity import in_transaction
from resolvers.clock import now
from resolvers.contact_counts import rebuild_counts
from resolvers.contacts import set_or_unset
from resolvers.order_stats import COUNTED
from resolvers.validation import email_key

log = logging.getLogger("contactgraph")

BATCH = 500
# Passes over the contacts still to repair: one whose statistics keep
# changing under the repair is left for the next run rather than held up.
REPAIR_ATTEMPTS = 5


async def repair_order_dates(database: Database) -> int:
    """Contacts that stored null order times get the true ones; the number of contacts fixed.

    Contacts used to be created with `firstOrderAt: null`, and `$min` keeps a
    null (it is below every date in BSON order), so a lead that ordered, or
    a customer who ordered again after all their counted orders were
    canceled, never got a first order time. Now those times are absent until
    there is an order. This derives them from the counted orders, or removes
    the null where there are none. Each write is a compare-and-set on
    `orderRev` (which every statistics write bumps), so an order landing
    meanwhile is never overwritten: that contact is read again.
    """
    # No counted order: nothing to derive, the nulls just go. One write per
    # document, each atomic, so a concurrent first order is never lost.
    await database.contacts.update_many(
        {"lastOrderAt": {"$type": "null"}}, {"$unset": {"lastOrderAt": ""}}
    )
    await database.contacts.update_many(
        {"activityArchivedAt": {"$type": "null"}}, {"$unset": {"activityArchivedAt": ""}}
    )
    fixed = 0
    for _ in range(REPAIR_ATTEMPTS):
        missed = 0
        batch: list[Doc] = []
        # One pass over the affected contacts; a repaired one leaves the
        # result set, one that changed under the repair waits for the next pass.
        async for contact in database.contacts.find(
            {"firstOrderAt": {"$type": "null"}}, {"shopId": 1, "orderRev": 1}, batch_size=BATCH
        ):
            batch.append(contact)
            if len(batch) == BATCH:
                done = await _repair_batch(database, batch)
                fixed, missed, batch = fixed + done, missed + len(batch) - done, []
        if batch:
            done = await _repair_batch(database, batch)
            fixed, missed = fixed + done, missed + len(batch) - done
        if not missed:
            break
    return fixed


async def _repair_batch(database: Database, contacts: list[Doc]) -> int:
    by_shop: dict[str, list[Doc]] = defaultdict(list)
    for contact in contacts:
        by_shop[contact["shopId"]].append(contact)
    fixed = 0
    for shop_id, group in by_shop.items():
        bounds: dict[ObjectId, Doc] = {
            row["_id"]: row
            async for row in await database.orders.aggregate(
                [
                    *history_stages(shop_id, [c["_id"] for c in group], COUNTED),
                    {
                        "$group": {
                            "_id": "$contactId",
                            "first": {"$min": "$placedAt"},
                            "last": {"$max": "$placedAt"},
                        }
                    },
                ]
            )
        }
        for contact in group:
            row = bounds.get(contact["_id"], {})
            update = set_or_unset(
                {"firstOrderAt": row.get("first"), "lastOrderAt": row.get("last")}
            )
            if not update["$set"]:
                del update["$set"]
            result = await database.contacts.update_one(
                {
                    "_id": contact["_id"],
                    "shopId": shop_id,
                    "orderRev": contact.get("orderRev"),  # None also matches a missing field
                    "firstOrderAt": {"$type": "null"},
                },
                update,
            )
            fixed += result.modified_count
    return fixed


# Indexes whose spec changed under the same name (creating the new one would
# fail with an options conflict) or that are no longer wanted, with the
# option that tells the old spec from the new one (None: drop it whatever it is).
REPLACED_INDEXES: list[tuple[str, str, str | None]] = [
    ("contacts", "shopId_1_phone_1", "sparse"),
    ("contacts", "shopId_1_kind_1_createdAt_-1", None),  # now ends with _id
]


# The index of every embedded log entry's id (100-200 keys per contact): entries
# are found through their contact instead, whose id their global ids carry.
UNUSED_INDEXES: list[tuple[str, str, str | None]] = [
    ("contacts", "shopId_1_activity._id_1", None),
]


async def drop_replaced_indexes(
    database: Database, replaced: list[tuple[str, str, str | None]] = REPLACED_INDEXES
) -> list[str]:
    """Drop the indexes of earlier versions that the current ones replace; their names.

    Runs before `ensure_indexes` builds the new ones. Queries keep working
    meanwhile, if more slowly, until the new index is built.
    """
    dropped = []
    for collection, name, option in replaced:
        indexes = await database.db[collection].index_information()
        spec = indexes.get(name)
        if spec is None or (option is not None and not spec.get(option)):
            continue
        await database.db[collection].drop_index(name)
        dropped.append(f"{collection}.{name}")
    return dropped


async def key_message_addresses(database: Database) -> int:
    """Messages stored before `toKey` existed get it; the number of messages changed.

    Export and erasure find a person's messages by it (with an index); without
    it, a message sent before its contact was deleted and made again would
    be neither exported nor erased.
    """
    changed = 0
    batch: list[UpdateOne] = []
    async for message in database.messages.find(
        {"toKey": {"$exists": False}, "to": {"$type": "string"}}, {"to": 1}, batch_size=BATCH
    ):
        batch.append(
            UpdateOne(
                {"_id": message["_id"], "toKey": {"$exists": False}},
                {"$set": {"toKey": email_key(message["to"])}},
            )
        )
        if len(batch) == BATCH:
            changed += (await database.messages.bulk_write(batch, ordered=False)).modified_count
            batch = []
    if batch:
        changed += (await database.messages.bulk_write(batch, ordered=False)).modified_count
    return changed


async def key_drafts(database: Database) -> int:
    """Drafts stored without an externalId get their own _id as one; the number changed.

    Orders were unique on (shopId, externalId) only where it was a string,
    and drafts had none. The plain unique index that replaces that partial
    one (which look-ups by externalId could not use) needs a distinct key in
    every order, and a draft's own id is one no shop's id (a string) can
    equal. The partial index goes once the drafts are keyed, so
    `ensure_indexes` builds the plain one under its name.
    """
    keyed = await database.orders.update_many(
        {"externalId": None}, [{"$set": {"externalId": "$_id"}}]
    )
    indexes = await database.orders.index_information()
    if "partialFilterExpression" in indexes.get("shopId_1_externalId_1", {}):
        await database.orders.drop_index("shopId_1_externalId_1")
    return keyed.modified_count


async def count_contacts_once(database: Database) -> int:
    """Every shop's contact counters, from an exact count of its contacts; the shops counted.

    Writes keep the counters (resolvers.contact_counts) from this version on;
    contacts stored before have never been counted. Each shop is counted and
    its counters replaced in one transaction (contact_counts.rebuild_counts),
    so a contact written meanwhile is counted exactly once.
    """
    shops = [shop for shop in await database.contacts.distinct("shopId") if isinstance(shop, str)]
    for shop_id in shops:

        async def work(session: Any, shop_id: str = shop_id) -> None:
            await rebuild_counts(database, shop_id, session=session)

        await in_transaction(database, work)
    return len(shops)


Migration = Callable[[Database], Awaitable[Any]]

# In the order they must run; a name, once released, never changes meaning.
MIGRATIONS: list[tuple[str, Migration]] = [
    ("order-dates-never-null", repair_order_dates),
    ("drop-replaced-indexes-1", drop_replaced_indexes),
    ("drafts-keyed-by-their-id", key_drafts),
    ("message-address-keys", key_message_addresses),
    ("drop-unused-indexes-1", lambda database: drop_replaced_indexes(database, UNUSED_INDEXES)),
    ("contact-counters", count_contacts_once),
]


async def run_migrations(database: Database) -> list[str]:
    """Apply the migrations this database has not recorded yet; the names of those run."""
    done = {doc["_id"] async for doc in database.migrations.find({}, {"_id": 1})}
    ran = []
    for name, migration in MIGRATIONS:
        if name in done:
            continue
        log.info("data migration %s: running", name)
        result = await migration(database)
        await database.migrations.update_one(
            {"_id": name}, {"$set": {"doneAt": now(), "result": result}}, upsert=True
        )
        log.info("data migration %s: done (%s)", name, result)
        ran.append(name)
    return ran


async def migrate(database: Database) -> list[str]:
    """Data first (a migration may make the data fit a changed index), then the indexes."""
    if await database.db.list_collection_names():
        ran = await run_migrations(database)
    else:
        # A new database holds nothing to migrate: it starts at this version.
        for name, _ in MIGRATIONS:
            await database.migrations.update_one(
                {"_id": name}, {"$set": {"doneAt": now(), "result": "new database"}}, upsert=True
            )
        ran = []
    await ensure_indexes(database)
    return ran


async def schema_gaps(database: Database) -> list[str]:
    """What `migrate` would still do here: pending migrations and missing indexes, by name."""
    done = {doc["_id"] async for doc in database.migrations.find({}, {"_id": 1})}
    pending = [f"migration {name}" for name, _ in MIGRATIONS if name not in done]
    return pending + [f"index {name}" for name in await missing_indexes(database)]


class SchemaNotReady(RuntimeError):
    def __init__(self, gaps: list[str]) -> None:
        shown = ", ".join(gaps[:5]) + (f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
        super().__init__(
            f"The database is not ready for this version ({shown}): run `contactgraph migrate`."
        )
        self.gaps = gaps
