"""The MongoDB client, the collections, and the indexes every query relies on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Doc = dict[str, Any]


def connect(uri: str, **options: Any) -> AsyncMongoClient[Doc]:
    # tz_aware: every datetime read back is UTC-aware, as the API promises.
    return AsyncMongoClient(uri, tz_aware=True, **options)


@dataclass(frozen=True)
class Database:
    """The collections contactgraph uses, by name, on one database handle."""

    db: AsyncDatabase[Doc]

    @property
    def client(self) -> AsyncMongoClient[Doc]:
        return self.db.client

    @property
    def shops(self) -> AsyncCollection[Doc]:
        return self.db["shops"]

    @property
    def api_keys(self) -> AsyncCollection[Doc]:
        return self.db["api_keys"]

    @property
    def contacts(self) -> AsyncCollection[Doc]:
        return self.db["contacts"]

    @property
    def orders(self) -> AsyncCollection[Doc]:
        return self.db["orders"]

    @property
    def labels(self) -> AsyncCollection[Doc]:
        return self.db["labels"]

    @property
    def segments(self) -> AsyncCollection[Doc]:
        return self.db["segments"]

    @property
    def messages(self) -> AsyncCollection[Doc]:
        return self.db["messages"]

    @property
    def activity_archive(self) -> AsyncCollection[Doc]:
        return self.db["activity_archive"]

    @property
    def rate_limits(self) -> AsyncCollection[Doc]:
        return self.db["rate_limits"]

    @property
    def migrations(self) -> AsyncCollection[Doc]:
        """The data migrations already applied to this database, by name."""
        return self.db["migrations"]

    @property
    def webhook_receipts(self) -> AsyncCollection[Doc]:
        return self.db["webhook_receipts"]

    @property
    def throttle(self) -> AsyncCollection[Doc]:
        return self.db["throttle"]

    @property
    def contact_counts(self) -> AsyncCollection[Doc]:
        """Per-shop contact counters, kept in the transactions that add or remove contacts."""
        return self.db["contact_counts"]

    @property
    def subscription_contracts(self) -> AsyncCollection[Doc]:
        return self.db["subscription_contracts"]

    @property
    def webhook_endpoints(self) -> AsyncCollection[Doc]:
        return self.db["webhook_endpoints"]

    @property
    def events(self) -> AsyncCollection[Doc]:
        """Outbound events, written in the transaction of the change they report."""
        return self.db["events"]

    @property
    def webhook_deliveries(self) -> AsyncCollection[Doc]:
        """One per event and endpoint subscribed to it: the delivery's state and log."""
        return self.db["webhook_deliveries"]


COLLECTIONS = (
    "shops",
    "api_keys",
    "contacts",
    "orders",
    "labels",
    "segments",
    "messages",
    "activity_archive",
    "rate_limits",
    "migrations",
    "webhook_receipts",
    "throttle",
    "contact_counts",
    "subscription_contracts",
    "webhook_endpoints",
    "events",
    "webhook_deliveries",
)

# Sort fields of the contact list; each gets (shopId, field, _id) so a sorted
# page is an index walk on real MongoDB.
CONTACT_SORT_FIELDS = (
    "createdAt",
    "updatedAt",
    "nameKey",
    "emailKey",
    "lastOrderAt",
    "orderCount",
    "totalSpent",
)

INDEXES: dict[str, list[IndexModel]] = {
    # Keys are looked up by their hash before the shop is known: the one
    # index that cannot start with shopId.
    "api_keys": [
        IndexModel([("hash", ASCENDING)], unique=True),
        IndexModel([("shopId", ASCENDING), ("createdAt", ASCENDING)]),
    ],
    "contacts": [
        IndexModel([("shopId", ASCENDING), ("emailKey", ASCENDING)], unique=True),
        # By id within the shop: the embedded server does not use the _id index for
        # {shopId, _id} and scans the collection (100 ms at 1,000 contacts) without this.
        IndexModel([("shopId", ASCENDING), ("_id", ASCENDING)]),
        # emailKey too: the unique (shopId, emailKey) index cannot serve a sort on
        # (emailKey, _id), as MongoDB does not reason from uniqueness, so an
        # EMAIL page or export without it sorts the whole shop.
        *[
            IndexModel([("shopId", ASCENDING), (field, ASCENDING), ("_id", ASCENDING)])
            for field in CONTACT_SORT_FIELDS
        ],
        IndexModel([("shopId", ASCENDING), ("searchTerms", ASCENDING)]),
        IndexModel([("shopId", ASCENDING), ("labelKeys", ASCENDING)]),
        # With _id last: the list's sort is (createdAt, _id), and without the
        # tiebreak in the index a filtered page sorts in memory.
        IndexModel(
            [
                ("shopId", ASCENDING),
                ("kind", ASCENDING),
                ("createdAt", DESCENDING),
                ("_id", DESCENDING),
            ]
        ),
        # Not sparse: shopId is in every document, so a sparse compound index
        # would hold them all anyway (resolvers/migrations.py drops the old one).
        IndexModel([("shopId", ASCENDING), ("phone", ASCENDING)]),
        IndexModel([("shopId", ASCENDING), ("emailCanon", ASCENDING)]),
        # The marketingState filter (and who may be mailed): SUBSCRIBED is usually few.
        IndexModel([("shopId", ASCENDING), ("consent.state", ASCENDING)]),
        # A merged-away contact's id (an unsubscribe link sent to it) finds the survivor.
        IndexModel([("shopId", ASCENDING), ("mergedIds", ASCENDING)]),
        # The Recurring filters (hasActiveSubscription, isMember) and the built-in
        # Subscribers and Members segments, sorted like the kind filter's list.
        *[
            IndexModel(
                [
                    ("shopId", ASCENDING),
                    (field, ASCENDING),
                    ("createdAt", DESCENDING),
                    ("_id", DESCENDING),
                ]
            )
            for field in ("activeSubscriptionCount", "isMember")
        ],
    ],
    "orders": [
        IndexModel([("shopId", ASCENDING), ("_id", ASCENDING)]),  # see contacts
        # Every order has one, drafts their own _id (resolvers/order_docs.py): a
        # plain index, because a partial one is not used for {shopId, externalId: "A-1"}.
        IndexModel([("shopId", ASCENDING), ("externalId", ASCENDING)], unique=True),
        IndexModel(
            [
                ("shopId", ASCENDING),
                ("contactId", ASCENDING),
                ("placedAt", DESCENDING),
                ("_id", DESCENDING),
            ]
        ),
        # Orders unlinked from a deleted contact, found by address on export and erasure.
        IndexModel([("shopId", ASCENDING), ("emailKey", ASCENDING)]),
    ],
    "labels": [IndexModel([("shopId", ASCENDING), ("key", ASCENDING)], unique=True)],
    "segments": [IndexModel([("shopId", ASCENDING), ("nameKey", ASCENDING)], unique=True)],
    "messages": [
        IndexModel([("shopId", ASCENDING), ("contactId", ASCENDING), ("createdAt", DESCENDING)]),
        # By address (`toKey`, the emailKey form of `to`): export and erasure.
        IndexModel([("shopId", ASCENDING), ("toKey", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("nextAttemptAt", ASCENDING)]),
        # The oldest queued message, for the outbox's metrics (graph/http/metrics.py).
        IndexModel([("status", ASCENDING), ("createdAt", ASCENDING)]),
    ],
    "activity_archive": [
        # Buckets newest first per contact: the archive side of an activity page.
        IndexModel(
            [
                ("shopId", ASCENDING),
                ("contactId", ASCENDING),
                ("maxAt", DESCENDING),
                ("maxId", DESCENDING),
            ]
        ),
        IndexModel([("shopId", ASCENDING), ("entries._id", ASCENDING)]),
    ],
    "rate_limits": [
        IndexModel([("shopId", ASCENDING), ("key", ASCENDING), ("window", ASCENDING)], unique=True),
        IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0),
    ],
    # Order webhook deliveries by their webhook-id: one claim per id, gone after its expiresAt.
    "webhook_receipts": [
        IndexModel([("shopId", ASCENDING), ("webhookId", ASCENDING)], unique=True),
        IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0),
    ],
    # One leaky bucket per API key (_id); a bucket idle long enough to be full again
    # is the same as none, so it is removed then. Looked up by _id only.
    "throttle": [IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0)],
    # Outbound events: kept 7 days (expiresAt), then gone.
    "events": [
        IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0),
        # A contact's events, whose data an erasure takes out (resolvers/contact_events.py).
        IndexModel([("shopId", ASCENDING), ("contactId", ASCENDING)]),
    ],
    "webhook_endpoints": [IndexModel([("shopId", ASCENDING), ("createdAt", ASCENDING)])],
    "webhook_deliveries": [
        # The worker's claim across shops: the due PENDING deliveries, oldest due first.
        IndexModel([("status", ASCENDING), ("nextAttemptAt", ASCENDING)]),
        # The oldest pending delivery, for the metrics (graph/http/metrics.py).
        IndexModel([("status", ASCENDING), ("createdAt", ASCENDING)]),
        # The log, newest first (webhookDeliveries).
        IndexModel(
            [
                ("shopId", ASCENDING),
                ("endpointId", ASCENDING),
                ("createdAt", DESCENDING),
                ("_id", DESCENDING),
            ]
        ),
        # Order per contact: an earlier delivery still pending holds back the later ones.
        IndexModel(
            [
                ("shopId", ASCENDING),
                ("endpointId", ASCENDING),
                ("contactId", ASCENDING),
                ("seq", ASCENDING),
            ]
        ),
        # Delivered and failed deliveries are kept 7 days; pending ones have no expiresAt.
        IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0),
        # A contact's deliveries, whose bodies an erasure takes the person out of.
        IndexModel([("shopId", ASCENDING), ("contactId", ASCENDING)]),
    ],
    # A shop's counter parts, summed on read (resolvers/contact_counts.py).
    "contact_counts": [IndexModel([("shopId", ASCENDING), ("_id", ASCENDING)])],
    # A shop's reports are idempotent on externalId; a contact's Recurring tab is
    # newest first; contracts unlinked by a delete are found by address on erasure.
    "subscription_contracts": [
        IndexModel([("shopId", ASCENDING), ("_id", ASCENDING)]),  # see contacts
        IndexModel([("shopId", ASCENDING), ("externalId", ASCENDING)], unique=True),
        IndexModel(
            [
                ("shopId", ASCENDING),
                ("contactId", ASCENDING),
                ("startedAt", DESCENDING),
                ("_id", DESCENDING),
            ]
        ),
        IndexModel([("shopId", ASCENDING), ("emailKey", ASCENDING)]),
    ],
}


async def ensure_indexes(database: Database) -> None:
    for name, models in INDEXES.items():
        await database.db[name].create_indexes(models)


async def missing_indexes(database: Database) -> list[str]:
    """The indexes INDEXES names that the database lacks, as "collection.index name".

    An index's name is made from its keys, so a changed key list shows up as
    missing too; `contactgraph migrate` builds them.
    """
    missing = []
    for collection, models in INDEXES.items():
        present = set(await database.db[collection].index_information())
        missing += [
            f"{collection}.{model.document['name']}"
            for model in models
            if model.document["name"] not in present
        ]
    return missing
