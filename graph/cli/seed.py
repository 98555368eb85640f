"""`contactgraph seed`: realistic fake contacts for trying things out and for benchmarks.

Every contact passes the very checks `contactCreate` applies (trimmed,
NFC text, normalized e-mail, E.164 phone read in the address's country),
so seeded data looks exactly like data entered through the API: an
export of it imports again without a change.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter
from typing import Any

from faker import Faker
from pymongo import UpdateOne
from tqdm import tqdm

from loaders.contacts import label_key
from loaders.mongo import Database
from resolvers import activity
from resolvers.clock import now
from resolvers.contacts import ContactDetails, check_details, new_contact
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
BATCH = 1_000
# Faker's German phone numbers include some that are no number at all
# ("00008063608") or dial abroad ("0007..."); those are drawn again, this
# often at most, before the contact goes without one.
PHONE_DRAWS = 5


def fake_contact(
    fake: Faker, shop_id: str, index: int, at: dt.datetime, rng: random.Random
) -> dict[str, Any]:
    first, last = fake.first_name(), fake.last_name()
    # The index keeps addresses unique however many contacts are asked for.
    # Word characters only: "von der Heyden" and "Dr." make no valid local part as they are.
    local = ".".join(re.sub(r"\W+", "", name.lower()) for name in (first, last))
    email = f"{local}.{index}@{fake.free_email_domain()}"
    phones = (fake.phone_number() for _ in range(PHONE_DRAWS))
    checked = check_details(
        ContactDetails(
            email=email,
            first_name=first,
            last_name=last,
            phone=next((p for p in phones if (parse_phone(p, "DE") or "").startswith("+49")), None),
            company=fake.company() if rng.random() < 0.3 else None,
            shipping_address={
                "name": f"{first} {last}",
                "line1": fake.street_address(),
                "postalCode": fake.postcode(),
                "city": fake.city(),
                "countryCode": "DE",
            },
            labels=rng.sample(LABELS, k=rng.choice([0, 0, 1, 1, 2, 3])),
        ),
        creating=True,
    )
    created = at - dt.timedelta(minutes=index)
    email = checked.set.pop("email")
    assert checked.email_key is not None
    return new_contact(
        shop_id,
        email,
        checked.email_key,
        "LEAD",
        checked.set,
        created,
        labels=checked.labels,
        entries=[activity.entry("CONTACT_CREATED", at=created)],
    )


async def seed_shop(
    database: Database, shop_id: str, contacts: int, orders_per_contact: int = 0
) -> int:
    """Insert `contacts` fake contacts (and their orders); returns how many were written."""
    await ensure_shop(database, shop_id)
    fake = Faker("de_DE")
    Faker.seed(contacts)
    rng = random.Random(contacts)
    at = now()
    label_counts: Counter[str] = Counter()
    written = 0
    with tqdm(total=contacts, unit="contact", desc="seeding") as bar:
        for start in range(0, contacts, BATCH):
            docs = [
                fake_contact(fake, shop_id, i, at, rng)
                for i in range(start, min(start + BATCH, contacts))
            ]
            await database.contacts.insert_many(docs, ordered=False)
            for doc in docs:
                label_counts.update(doc["labels"])
            if orders_per_contact:
                from resolvers.order_seed import seed_orders  # orders are their own feature

                await seed_orders(database, shop_id, docs, orders_per_contact, rng)
            written += len(docs)
            bar.update(len(docs))
    if label_counts:
        await database.labels.bulk_write(
            [
                UpdateOne(
                    {"shopId": shop_id, "key": label_key(name)},
                    {
                        "$inc": {"contactCount": count},
                        "$setOnInsert": {"name": name, "createdAt": at},
                    },
                    upsert=True,
                )
                for name, count in label_counts.items()
            ]
        )
        total = await database.labels.count_documents({"shopId": shop_id})
        await database.shops.update_one({"_id": shop_id}, {"$set": {"labelCount": total}})
    return written
