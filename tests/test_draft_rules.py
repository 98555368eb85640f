"""Draft order rules to the edge: what a draft stores, logs and changes on its contact.

tests/test_orders.py tells the story through the API (`draftOrderCreate`
by staff, the draft in the contact's history); these pin the rules
underneath: the draft as stored (the contact's details, no placement time,
its own id as its key, the shop's currency), the entries it logs, a lead
becoming a customer (counters and event with it), statistics that never
move, and the refusals (a bad draft, an unknown or another shop's contact,
a currency the shop does not record) that leave everything as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from conftest import OTHER_SHOP, SHOP

from resolvers import activity
from resolvers import drafts as draft_rules
from resolvers.activity import BUCKET_SIZE, EMBEDDED_KEEP, SPILL_AT
from resolvers.contacts import new_contact
from resolvers.drafts import create_draft
from resolvers.errors import Refused
from resolvers.events import contact_gid
from resolvers.order_input import DraftData, LineItemData
from resolvers.shops import ensure_shop

# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
T0 = dt.datetime(2126, 1, 5, 9, 0, tzinfo=dt.UTC)
AUTHOR = "Sam Staff"
ADDRESS = {"line1": "1 Main St", "city": "Springfield", "zip": "12345", "country": "US"}
CONTACT_NOT_FOUND = [(("contactId",), "Contact not found.", "NOT_FOUND")]


def draft(**changes: Any) -> DraftData:
    lines = [
        LineItemData("Mug", 2, Decimal("7.50"), sku="MUG-1"),
        LineItemData("Gift card", 1, Decimal("10.00"), requires_shipping=False),
    ]
    return dataclasses.replace(DraftData(line_items=lines, shipping=Decimal("4.99")), **changes)


def problems(refusal: pytest.ExceptionInfo[Refused]) -> list[tuple[Any, str, str]]:
    return [(p.field, p.message, p.code) for p in refusal.value.problems]


@pytest.fixture
def moment(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    """The drafts' clock held at one instant."""
    at = dt.datetime(2126, 3, 1, 12, 30, 15, 250_000, tzinfo=dt.UTC)
    monkeypatch.setattr(draft_rules, "utc_now", lambda: at)
    return at


async def stored_contact(
    database: Any, kind: str = "LEAD", shop: str = SHOP, entries: int = 1
) -> ObjectId:
    email = f"Ann.{ObjectId()}@Example.com"
    log = [
        activity.entry("FORM_SUBMITTED", text=f"form {i}", at=T0 + dt.timedelta(seconds=i))
        for i in range(entries)
    ]
    doc = new_contact(shop, email, email.lower(), kind, {}, T0, entries=log)
    doc.update({"firstName": "Ann", "lastName": "Lee", "phone": "+15551234567", "orderRev": 3})
    await database.contacts.insert_one(doc)
    return doc["_id"]


async def contact_doc(database: Any, oid: ObjectId) -> dict[str, Any]:
    doc = await database.contacts.find_one({"_id": oid})
    assert doc is not None
    return doc


async def shop_with(database: Any, currency: str | None, shop: str = SHOP) -> None:
    await ensure_shop(database, shop, currency=currency)


async def everything(database: Any) -> dict[str, list[dict[str, Any]]]:
    """What a draft may write anywhere."""
    names = ("contacts", "orders", "shops", "events", "contact_counts", "activity_archive")
    return {name: await database.db[name].find({}).to_list() for name in names}


# -- a draft for a lead ------------------------------------------------------------


async def test_a_draft_is_stored_with_the_contacts_details_and_its_own_id_as_its_key(
    database, moment
):
    await shop_with(database, "EUR")
    oid = await stored_contact(database)
    contact = await contact_doc(database, oid)
    made = await create_draft(
        database, SHOP, oid, draft(shipping_address=ADDRESS), AUTHOR, shop_currency="EUR"
    )
    stored = await database.orders.find_one({"_id": made["_id"]})
    assert made == stored
    assert {
        k: v for k, v in stored.items() if k not in ("_id", "lineItems", "shippingAddress")
    } == {
        "shopId": SHOP,
        "externalId": made["_id"],
        "number": None,
        "status": "DRAFT",
        "email": contact["email"],
        "emailKey": contact["emailKey"],
        "contactId": oid,
        "firstName": "Ann",
        "lastName": "Lee",
        "phone": "+15551234567",
        "placedAt": None,
        "createdAt": moment,
        "updatedAt": moment,
        "currency": "EUR",
        "subtotal": Decimal128("25.00"),
        "shipping": Decimal128("4.99"),
        "tax": Decimal128("0"),
        "discount": Decimal128("0"),
        "total": Decimal128("29.99"),
        "refunded": Decimal128("0"),
        "billingAddress": None,
        "acceptsMarketing": None,
        "hasAccount": None,
        "createdBy": AUTHOR,
    }
    assert [(li["title"], li["quantity"], li["total"]) for li in stored["lineItems"]] == [
        ("Mug", 2, Decimal128("15.00")),
        ("Gift card", 1, Decimal128("10.00")),
    ]
    assert stored["shippingAddress"]["city"] == "Springfield"


async def test_a_draft_for_a_lead_makes_a_customer_and_logs_both(database, moment):
    await shop_with(database, "EUR")
    oid = await stored_contact(database, entries=2)
    before = await contact_doc(database, oid)
    made = await create_draft(database, SHOP, oid, draft(), AUTHOR, shop_currency="EUR")
    doc = await contact_doc(database, oid)
    label = "Order draft: 29.99 EUR"
    assert doc["activity"][:2] == before["activity"]
    assert [{k: v for k, v in e.items() if k != "_id"} for e in doc["activity"][2:]] == [
        {
            "kind": "DRAFT_ORDER_CREATED",
            "text": label,
            "author": AUTHOR,
            "orderId": made["_id"],
            "at": moment,
        },
        {"kind": "CONVERTED_TO_CUSTOMER", "text": label, "author": AUTHOR, "at": moment},
    ]
    assert doc["activityCount"] == doc["activityEmbedded"] == 4
    assert (doc["kind"], doc["updatedAt"]) == ("CUSTOMER", moment)
    # A draft never counts: the statistics stay as they were.
    untouched = ("orderCount", "totalSpent", "orderRev", "rev", "email", "labels", "consent")
    assert {k: doc.get(k) for k in untouched} == {k: before.get(k) for k in untouched}
    assert "firstOrderAt" not in doc and "lastOrderAt" not in doc
    # The lead counted as a customer from now on, and the change announced once.
    counts = await database.contact_counts.find({}, {"_id": 0}).to_list()
    assert counts == [{"shopId": SHOP, "total": 0, "LEAD": -1, "CUSTOMER": 1}]
    events = await database.events.find({}).to_list()
    assert [(e["shopId"], e["type"], e["contactId"], e["data"]) for e in events] == [
        (SHOP, "CONTACT_UPDATED", oid, {"id": contact_gid(oid), "kind": "CUSTOMER"})
    ]


async def test_a_draft_for_a_customer_only_logs_the_draft(database, moment):
    await shop_with(database, "EUR")
    oid = await stored_contact(database, "CUSTOMER")
    before = await contact_doc(database, oid)
    made = await create_draft(database, SHOP, oid, draft(), "Bob Boss", shop_currency="EUR")
    doc = await contact_doc(database, oid)
    [logged] = doc["activity"][1:]
    assert logged == {
        "_id": logged["_id"],
        "kind": "DRAFT_ORDER_CREATED",
        "text": "Order draft: 29.99 EUR",
        "author": "Bob Boss",
        "orderId": made["_id"],
        "at": moment,
    }
    assert doc == {
        **before,
        "activity": [*before["activity"], logged],
        "activityCount": 2,
        "activityEmbedded": 2,
        "updatedAt": moment,
    }
    assert await database.contact_counts.count_documents({}) == 0
    assert await database.events.count_documents({}) == 0


async def test_every_draft_of_a_contact_is_its_own_order(database):
    await shop_with(database, "EUR")
    oid = await stored_contact(database)
    first = await create_draft(database, SHOP, oid, draft(), AUTHOR, shop_currency="EUR")
    second = await create_draft(database, SHOP, oid, draft(), AUTHOR, shop_currency="EUR")
    assert first["_id"] != second["_id"]
    assert await database.orders.count_documents({"contactId": oid, "status": "DRAFT"}) == 2
    doc = await contact_doc(database, oid)
    assert [e["kind"] for e in doc["activity"][1:]] == [
        "DRAFT_ORDER_CREATED",
        "CONVERTED_TO_CUSTOMER",
        "DRAFT_ORDER_CREATED",
    ]
    # Only the first draft made the lead a customer.
    assert await database.contact_counts.count_documents({}) == 1
    assert await database.events.count_documents({}) == 1


# -- the currency ----------------------------------------------------------------------


async def test_the_first_draft_of_a_shop_without_a_currency_gives_it_one(database):
    await shop_with(database, None)
    oid = await stored_contact(database, "CUSTOMER")
    made = await create_draft(database, SHOP, oid, draft(currency_code="USD"), AUTHOR)
    assert made["currency"] == "USD"
    assert (await database.shops.find_one({"_id": SHOP}))["currency"] == "USD"
    assert (await contact_doc(database, oid))["activity"][-1]["text"] == "Order draft: 29.99 USD"


async def test_a_draft_without_a_currency_is_in_the_shops(database):
    await shop_with(database, "CAD")
    oid = await stored_contact(database, "CUSTOMER")
    made = await create_draft(database, SHOP, oid, draft(), AUTHOR)
    assert made["currency"] == "CAD"


async def test_the_shops_known_currency_costs_no_read_of_the_shop(database, commands):
    await shop_with(database, "EUR")
    oid = await stored_contact(database, "CUSTOMER")
    commands.reset()
    made = await create_draft(database, SHOP, oid, draft(), AUTHOR, shop_currency="EUR")
    assert made["currency"] == "EUR"
    assert "shops" not in [target for _, target in commands.calls]


async def test_a_draft_reads_the_contacts_details_not_its_log(database, commands):
    # A contact carries up to 200 log entries; a draft needs none of them.
    await shop_with(database, "EUR")
    oid = await stored_contact(database, "CUSTOMER", entries=50)
    commands.reset()
    await create_draft(database, SHOP, oid, draft(), AUTHOR, shop_currency="EUR")
    (look,) = commands.documents("find", "contacts")
    assert look["filter"] == {"_id": oid, "shopId": SHOP}
    read = look.get("projection", {})
    assert {"email", "emailKey", "kind"} <= set(read)
    assert not {"activity", "searchTerms", "consent"} & set(read)


@pytest.mark.parametrize(
    ("stored", "known", "wanted", "problem"),
    [
        ("EUR", None, "USD", ("This shop records orders in EUR, not USD.", "INVALID")),
        ("EUR", "EUR", "USD", ("This shop records orders in EUR, not USD.", "INVALID")),
        (None, None, None, ("The shop has no currency yet: give a currency code.", "REQUIRED")),
    ],
)
async def test_a_draft_in_a_currency_the_shop_cannot_record_writes_nothing(
    database, stored, known, wanted, problem
):
    await shop_with(database, stored)
    oid = await stored_contact(database)
    before = await everything(database)
    with pytest.raises(Refused) as refusal:
        await create_draft(
            database, SHOP, oid, draft(currency_code=wanted), AUTHOR, shop_currency=known
        )
    assert problems(refusal) == [(("input", "currencyCode"), *problem)]
    assert await everything(database) == before


# -- refusals ------------------------------------------------------------------------------


async def test_a_draft_for_an_unknown_or_another_shops_contact_is_not_found(database):
    await shop_with(database, None)
    await shop_with(database, None, OTHER_SHOP)
    foreign = await stored_contact(database, shop=OTHER_SHOP)
    before = await everything(database)
    for shop, contact_id in ((SHOP, foreign), (OTHER_SHOP, ObjectId())):
        with pytest.raises(Refused) as refusal:
            # The contact is looked for first: the shop's currency stays unclaimed.
            await create_draft(database, shop, contact_id, draft(currency_code="EUR"), AUTHOR)
        assert problems(refusal) == CONTACT_NOT_FOUND
    assert await everything(database) == before


async def test_a_bad_draft_is_refused_with_every_problem_and_writes_nothing(database):
    await shop_with(database, "EUR")
    oid = await stored_contact(database)
    before = await everything(database)
    with pytest.raises(Refused) as refusal:
        await create_draft(database, SHOP, oid, draft(line_items=[], currency_code="euro"), AUTHOR)
    assert [p[0] for p in problems(refusal)] == [
        ("input", "currencyCode"),
        ("input", "lineItems"),
    ]
    # Checked before anything is looked up: an unknown contact changes nothing.
    with pytest.raises(Refused) as refusal:
        await create_draft(database, SHOP, ObjectId(), draft(line_items=[]), AUTHOR)
    assert problems(refusal) == [
        (("input", "lineItems"), "An order needs at least one line item.", "REQUIRED")
    ]
    assert await everything(database) == before


# -- a full log --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "logged"), [("CUSTOMER", 1), ("LEAD", 2)])
async def test_a_draft_that_fills_the_log_moves_the_oldest_entries_to_the_archive(
    database, moment, kind, logged
):
    await shop_with(database, "EUR")
    oid = await stored_contact(database, kind, entries=SPILL_AT - logged)
    made = await create_draft(database, SHOP, oid, draft(), AUTHOR, shop_currency="EUR")
    doc = await contact_doc(database, oid)
    assert doc["activityEmbedded"] == len(doc["activity"]) == EMBEDDED_KEEP
    assert (doc["activityArchived"], doc["activityCount"]) == (BUCKET_SIZE, SPILL_AT)
    assert doc["activity"][-logged]["orderId"] == made["_id"]
    bucket = await database.activity_archive.find_one({"contactId": oid})
    assert (bucket["shopId"], bucket["count"]) == (SHOP, BUCKET_SIZE)


async def test_a_draft_one_short_of_a_full_log_moves_nothing(database):
    await shop_with(database, "EUR")
    oid = await stored_contact(database, "CUSTOMER", entries=SPILL_AT - 2)
    await create_draft(database, SHOP, oid, draft(), AUTHOR, shop_currency="EUR")
    doc = await contact_doc(database, oid)
    assert doc["activityEmbedded"] == doc["activityCount"] == SPILL_AT - 1
    assert await database.activity_archive.count_documents({}) == 0


# -- one transaction ------------------------------------------------------------------------


class Aborted(Exception):
    pass


async def never_committed(database: Any, work: Any) -> Any:
    """activity.in_transaction, but the transaction fails after its work, before the commit."""
    async with database.client.start_session() as session:
        async with await session.start_transaction():
            await work(session)
            raise Aborted


async def test_a_draft_whose_transaction_fails_leaves_nothing_written(database, monkeypatch):
    # Everything a draft writes: the shop's first currency, the order, the
    # contact's log and kind, the counters and the event.
    await shop_with(database, None)
    oid = await stored_contact(database)
    before = await everything(database)
    monkeypatch.setattr(activity, "in_transaction", never_committed)
    with pytest.raises(Aborted):
        await create_draft(database, SHOP, oid, draft(currency_code="USD"), AUTHOR)
    assert await everything(database) == before


class Converted:
    """The database, but the lead becomes a customer by another write just after it is read."""

    def __init__(self, database: Any) -> None:
        self.real = database
        self.contacts = self
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        found = await self.real.contacts.find_one(*args, **kwargs)
        if not self.raced:
            self.raced = True
            await self.real.contacts.update_one(
                {"_id": args[0]["_id"]}, {"$set": {"kind": "CUSTOMER"}}
            )
        return found

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self.real.contacts.update_one(*args, **kwargs)


async def test_a_lead_made_a_customer_meanwhile_is_converted_once(database):
    await shop_with(database, "EUR")
    oid = await stored_contact(database)
    await create_draft(Converted(database), SHOP, oid, draft(), AUTHOR, shop_currency="EUR")
    doc = await contact_doc(database, oid)
    # The draft's transaction read the lead before the other write: it runs
    # again, finds a customer, and only logs the draft.
    assert [e["kind"] for e in doc["activity"][1:]] == ["DRAFT_ORDER_CREATED"]
    assert await database.contact_counts.count_documents({}) == 0
    assert await database.orders.count_documents({"contactId": oid}) == 1
