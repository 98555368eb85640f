"""`contactgraph seed`: realistic fake contacts and orders, for trying things out and for benchmarks.

Everything stored passes the very checks the API applies: each contact
those of `contactCreate` (trimmed, NFC text, normalized e-mail, E.164 phone
read in the address's country), each order those of `orderRecord`. So seeded
data looks exactly like data entered through the API, and an export of it
imports again without a change.

The documents are built whole in Python, as the API would leave them after
creating the contact and recording its orders one by one: a contact with
orders is a CUSTOMER whose statistics (`orderCount`, `totalSpent`,
`firstOrderAt`, `lastOrderAt`) and activity log are its orders'. They are
written in batches, each in one transaction with the label counts, the
shop's contact counters and a CONTACT_CREATED event per contact (and, with
the first orders, the shop's currency), so a batch lands whole or not at
all. The next batch is built in a thread while the database stores the
current one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId
from faker import Faker
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError
from tqdm import tqdm

from loaders.contacts import label_key
from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now
from resolvers.contact_events import contacts_created
from resolvers.contacts import ContactDetails, check_details, new_contact
from resolvers.errors import Refused
from resolvers.labels import reserve_labels
from resolvers.order_docs import order_doc, order_label, placed_entries
from resolvers.order_input import LineItemData, OrderData, check_order
from resolvers.order_stats import counted
from resolvers.shops import ensure_shop
from resolvers.validation import parse_phone

LABELS = [
    "VIP",
    "Newsletter",
    "Wholesale",
    "Vegan",
    "Top100",
    "Returning",
    "B2B",
    "Gift buyer",
    "Local",
    "Press",
]
# (title, sku, unit price, ships)
PRODUCTS = [
    ("Espresso beans 1 kg", "COF-1000", Decimal("18.90"), True),
    ("Ceramic mug", "MUG-01", Decimal("12.50"), True),
    ("Tea sampler", "TEA-SMP", Decimal("24.00"), True),
    ("Gift card", "GIFT-25", Decimal("25.00"), False),
    ("Brewing course (online)", "CRS-ONL", Decimal("49.00"), False),
    ("Grinder", "GRN-200", Decimal("129.99"), True),
]
SHIPPING = Decimal("4.90")
TAX_RATE = Decimal("0.19")
CENT = Decimal("0.01")
DEFAULT_CURRENCY = "EUR"
# Contacts per transaction: large enough that the per-command cost vanishes,
# small enough that a batch is a few MB and a conflict retries little.
BATCH = 1_000
# A seeded contact's whole log stays embedded (activity.SPILL_AT is 200
# entries; each order adds one or two).
MAX_ORDERS_PER_CONTACT = 50
HISTORY = dt.timedelta(days=730)
# Faker's German phone numbers include some that are no number at all
# ("00008063608") or dial abroad ("0007..."); those are drawn again, this
# often at most, before the contact goes without one.
PHONE_DRAWS = 5
# A batch whose e-mails another writer took meanwhile is stored again without them.
STORE_ATTEMPTS = 3


class SeedError(Exception):
    """A seed that cannot run as asked; nothing was written."""


@dataclass
class Seeded:
    """What a seed wrote, and how fast."""

    contacts: int = 0
    orders: int = 0
    skipped: int = 0  # contacts whose e-mail the shop already had
    seconds: float = 0.0

    @property
    def contacts_per_second(self) -> float:
        return self.contacts / self.seconds if self.seconds > 0 else 0.0

    def summary(self, shop_id: str) -> str:
        line = (
            f"Seeded {self.contacts:,} contacts and {self.orders:,} orders in shop {shop_id!r} "
            f"in {self.seconds:.1f} s ({self.contacts_per_second:,.0f} contacts/s)"
        )
        if self.skipped:
            line += f"; skipped {self.skipped:,} whose e-mail the shop already had"
        return line + "."


@dataclass
class Batch:
    contacts: list[Doc]
    orders: list[Doc]
    labels: Counter[str] = field(default_factory=Counter)  # label key -> contacts

    def without(self, email_keys: set[str]) -> Batch:
        kept = [c for c in self.contacts if c["emailKey"] not in email_keys]
        ids = {c["_id"] for c in kept}
        return Batch(
            kept,
            [o for o in self.orders if o["contactId"] in ids],
            Counter(key for c in kept for key in c["labelKeys"]),
        )


class Faked:
    """Builds contacts with their orders; one thread at a time (Faker and the RNG are shared)."""

    def __init__(
        self,
        shop_id: str,
        *,
        seed: int,
        at: dt.datetime,
        orders_per_contact: int,
        currency: str,
        labels: dict[str, str],
    ) -> None:
        self.shop_id = shop_id
        self.fake = Faker("de_DE")
        self.fake.seed_instance(seed)
        self.rng = random.Random(seed)
        self.at = at
        self.orders_per_contact = orders_per_contact
        self.currency = currency
        self.labels = labels  # key -> the shop's spelling

    def batch(self, start: int, end: int) -> Batch:
        built = Batch([], [])
        for index in range(start, end):
            contact, orders = self.contact(index)
            built.contacts.append(contact)
            built.orders.extend(orders)
            built.labels.update(contact["labelKeys"])
        return built

    def contact(self, index: int) -> tuple[Doc, list[Doc]]:
        fake, rng = self.fake, self.rng
        first, last = fake.first_name(), fake.last_name()
        # The index keeps addresses unique however many contacts are asked for.
        # Word characters only: "von der Heyden" and "Dr." make no valid local part as they are.
        local = ".".join(re.sub(r"\W+", "", name.lower()) for name in (first, last))
        phones = (fake.phone_number() for _ in range(PHONE_DRAWS))
        checked = check_details(
            ContactDetails(
                email=f"{local}.{index}@{fake.free_email_domain()}",
                first_name=first,
                last_name=last,
                phone=next(
                    (p for p in phones if (parse_phone(p, "DE") or "").startswith("+49")), None
                ),
                company=fake.company() if rng.random() < 0.3 else None,
                shipping_address={
                    "name": f"{first} {last}",
                    "line1": fake.street_address(),
                    "postalCode": fake.postcode(),
                    "city": fake.city(),
                    "countryCode": "DE",
                },
                labels=[self.labels[label_key(n)] for n in rng.sample(LABELS, k=_label_count(rng))],
            ),
            creating=True,
        )
        created = self.at - HISTORY * rng.random()
        email = checked.set.pop("email")
        assert checked.email_key is not None
        contact = new_contact(
            self.shop_id,
            email,
            checked.email_key,
            "LEAD",
            checked.set,
            created,
            labels=checked.labels,
            entries=[activity.entry("CONTACT_CREATED", at=created)],
        )
        if not self.orders_per_contact:
            return contact, []
        span = (self.at - created).total_seconds()
        times = sorted(
            created + dt.timedelta(seconds=rng.uniform(0, span))
            for _ in range(self.orders_per_contact)
        )
        orders = [self.order(contact, placed) for placed in times]
        _land(contact, orders)
        return contact, orders

    def order(self, contact: Doc, placed: dt.datetime) -> Doc:
        rng = self.rng
        lines = [
            LineItemData(title, rng.randint(1, 3), price, sku, ships)
            for title, sku, price, ships in rng.sample(PRODUCTS, k=rng.randint(1, 3))
        ]
        subtotal = sum((line.unit_price * line.quantity for line in lines), Decimal(0))  # type: ignore[operator]
        ships = any(line.requires_shipping for line in lines)
        order_id = ObjectId()
        checked = check_order(
            OrderData(
                external_id=f"seed-{order_id}",
                number=f"S-{str(order_id)[-8:].upper()}",
                status=rng.choices(["FULFILLED", "OPEN", "CANCELED"], weights=[80, 15, 5])[0],
                email=contact["email"],
                currency_code=self.currency,
                line_items=lines,
                first_name=contact["firstName"],
                last_name=contact["lastName"],
                phone=contact["phone"],
                placed_at=placed,
                shipping=SHIPPING if ships else Decimal(0),
                tax=(subtotal * TAX_RATE).quantize(CENT),
                shipping_address=contact["shippingAddress"] if ships else None,
            ),
            at=self.at,
        )
        doc = order_doc(self.shop_id, checked, contact["_id"], placed)
        doc["_id"] = order_id
        return doc


def _label_count(rng: random.Random) -> int:
    return rng.choice([0, 0, 1, 1, 2, 3])


def _land(contact: Doc, orders: list[Doc]) -> None:
    """The contact as recording `orders` (oldest first) one by one would leave it."""
    entries: list[Doc] = []
    for order in orders:
        for entry in placed_entries(order):
            entry["at"] = order["placedAt"]  # each order is recorded as it is placed
            entries.append(entry)
    first = orders[0]
    entries.append(
        activity.entry("CONVERTED_TO_CUSTOMER", text=order_label(first), at=first["placedAt"])
    )
    counting = [o for o in orders if counted(o["status"])]
    shipped = [o for o in orders if o["shippingAddress"]]
    # In write order, as recording the orders one by one appends them (resolvers/activity.py).
    log = sorted([*contact["activity"], *entries], key=activity.sort_key)
    contact.update(
        kind="CUSTOMER",
        orderCount=len(counting),
        totalSpent=_sum_totals(counting),
        updatedAt=orders[-1]["placedAt"],
        activity=log,
        activityCount=len(log),
        activityEmbedded=len(log),
    )
    if counting:
        # Only with a counted order: never null (see resolvers.contacts.BOUND_FIELDS).
        contact.update(
            firstOrderAt=counting[0]["placedAt"],
            lastOrderAt=counting[-1]["placedAt"],
            orderRev=len(counting),
        )
    if shipped:
        contact["shipAt"] = shipped[-1]["placedAt"]


def _sum_totals(orders: list[Doc]) -> Decimal128:
    return Decimal128(sum((o["total"].to_decimal() for o in orders), Decimal(0)))


async def _shop_currency(database: Database, shop_id: str) -> str:
    shop = await database.shops.find_one({"_id": shop_id}, {"currency": 1})
    return (shop or {}).get("currency") or DEFAULT_CURRENCY


async def _store(database: Database, shop_id: str, batch: Batch, claim: str | None) -> Batch:
    """One transaction: contacts (counted, with events), orders, label counts, currency when `claim`."""

    async def work(session: Any) -> None:
        await database.contacts.insert_many(batch.contacts, session=session)
        await contacts_created(database, shop_id, batch.contacts, session=session)
        if batch.orders:
            await database.orders.insert_many(batch.orders, session=session)
        if batch.labels:
            await database.labels.bulk_write(
                [
                    UpdateOne({"shopId": shop_id, "key": key}, {"$inc": {"contactCount": n}})
                    for key, n in batch.labels.items()
                ],
                session=session,
            )
        if claim is not None:
            shop = await database.shops.find_one_and_update(
                {"_id": shop_id},
                [{"$set": {"currency": {"$ifNull": ["$currency", claim]}}}],
                projection={"currency": 1},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            if (shop or {}).get("currency") != claim:
                raise SeedError(
                    f"shop {shop_id!r} began recording orders in {(shop or {}).get('currency')} "
                    f"while seeding in {claim}"
                )

    for attempt in range(STORE_ATTEMPTS):
        try:
            await activity.in_transaction(database, work)
            return batch
        except BulkWriteError as error:
            codes = {e.get("code") for e in error.details.get("writeErrors", [])}
            if codes != {11000} or attempt == STORE_ATTEMPTS - 1:
                raise
            # Some of these e-mails may be taken (an earlier seed, or a contact
            # made meanwhile): store the batch again without them.
            keys = [c["emailKey"] for c in batch.contacts]
            taken = await database.contacts.find(
                {"shopId": shop_id, "emailKey": {"$in": keys}}, {"emailKey": 1}
            ).to_list()
            if not taken:
                raise
            batch = batch.without({doc["emailKey"] for doc in taken})
            if not batch.contacts:
                return batch
    raise AssertionError("unreachable")


async def seed_shop(
    database: Database,
    shop_id: str,
    contacts: int,
    orders_per_contact: int = 0,
    *,
    seed: int | None = None,
    progress: bool = True,
    batch_size: int | None = None,
) -> Seeded:
    """Add `contacts` fake contacts with `orders_per_contact` orders each to the shop.

    `seed` makes the fake data repeatable; without it each run draws new
    names (an e-mail the shop already has is skipped, never changed).
    `batch_size`: contacts per transaction (BATCH unless given).
    SeedError, with nothing written, for counts out of range or labels the
    shop has no room for.
    """
    if contacts < 0 or orders_per_contact < 0:
        raise SeedError("counts must not be negative")
    if orders_per_contact > MAX_ORDERS_PER_CONTACT:
        raise SeedError(f"--orders-per-contact is at most {MAX_ORDERS_PER_CONTACT}")
    started = time.perf_counter()
    result = Seeded()
    await ensure_shop(database, shop_id)
    if contacts == 0:
        return result
    try:
        reserved = await reserve_labels(database, shop_id, LABELS)
    except Refused as refused:
        raise SeedError(f"shop {shop_id!r}: {refused}") from None
    currency = await _shop_currency(database, shop_id)
    faked = Faked(
        shop_id,
        seed=time.time_ns() if seed is None else seed,
        at=now(),
        orders_per_contact=orders_per_contact,
        currency=currency,
        labels={key: reserved.names[key] for key in reserved.names},
    )
    claim: str | None = currency if orders_per_contact else None
    size = batch_size or BATCH
    starts = range(0, contacts, size)
    with tqdm(total=contacts, unit="contact", desc="seeding", disable=not progress) as bar:
        next_batch = asyncio.create_task(asyncio.to_thread(faked.batch, 0, min(size, contacts)))
        try:
            for start in starts:
                batch = await next_batch
                following = start + size
                if following < contacts:
                    next_batch = asyncio.create_task(
                        asyncio.to_thread(faked.batch, following, min(following + size, contacts))
                    )
                stored = await _store(database, shop_id, batch, claim)
                if stored.orders:
                    claim = None
                result.contacts += len(stored.contacts)
                result.orders += len(stored.orders)
                result.skipped += len(batch.contacts) - len(stored.contacts)
                bar.update(len(batch.contacts))
        except Exception:
            if result.contacts == 0:
                await reserved.release()  # labels this seed made, still unused
            raise
        finally:
            next_batch.cancel()
    result.seconds = time.perf_counter() - started
    return result
