"""Recording a reported order to the edge: the contact it lands on, the currency, the transaction.

tests/test_orders.py tells the story through `orderRecord` and the webhook;
these call `record_order` and `settle_currency` directly, with a fixed
clock and chosen times, for the exact rules: what a first order makes,
which details a later order takes (newest wins, ties included, locked
details kept), the events and counters beside the write, the currency a
shop keeps, and that a failure anywhere leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from resolvers import activity, events, order_cancel, order_record
from resolvers.contact_counts import contact_totals
from resolvers.contacts import new_contact
from resolvers.errors import Problem, Refused
from resolvers.events import contact_gid
from resolvers.order_input import LineItemData, OrderData, check_order
from resolvers.order_record import record_order, settle_currency

SHOP = "acme"
OTHER = "other-shop"
# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
NOW = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
T0 = dt.datetime(2126, 2, 1, 9, 0, tzinfo=dt.UTC)
CURRENCY_PATH = ("input", "currencyCode")
HOME = {"line1": "1 Main St", "city": "Springfield", "countryCode": "US"}
OFFICE = {"line1": "9 Elm Rd", "city": "Shelbyville", "countryCode": "US"}


class Stop(Exception):
    """The transaction fails after its writes, as if the process stopped before the commit."""


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(order_record, "utc_now", lambda: NOW)
    monkeypatch.setattr(order_cancel, "utc_now", lambda: NOW)
    monkeypatch.setattr(activity, "now", lambda: NOW)
    monkeypatch.setattr(events, "now", lambda: NOW)


def day(n: int) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def report(
    external_id: str = "A-1",
    email: str = "Ann@Example.com",
    *,
    placed: dt.datetime | None = None,
    ships: bool = True,
    **fields: Any,
) -> OrderData:
    """Two mugs at 12.50 EUR: 25.00."""
    fields.setdefault("currency_code", "EUR")
    return OrderData(
        external_id=external_id,
        email=email,
        line_items=[LineItemData("Mug", 2, Decimal("12.50"), requires_shipping=ships)],
        number=fields.pop("number", "#1001"),
        placed_at=placed or day(0),
        **fields,
    )


async def record(database: Any, data: OrderData, **kwargs: Any) -> order_record.Recorded:
    kwargs.setdefault("shop_currency", "EUR")
    return await record_order(database, SHOP, data, **kwargs)


async def stored_contact(database: Any, kind: str = "CUSTOMER", **details: Any) -> dict[str, Any]:
    """Ann, stored as the API makes her, with `details` on top."""
    doc = new_contact(SHOP, "Ann@example.com", "ann@example.com", kind, details, day(-30))
    await database.contacts.insert_one(doc)
    return doc


async def contact_of(database: Any, email_key: str = "ann@example.com") -> dict[str, Any]:
    doc = await database.contacts.find_one({"shopId": SHOP, "emailKey": email_key})
    assert doc is not None
    return doc


async def order_of(database: Any, external_id: str = "A-1") -> dict[str, Any]:
    doc = await database.orders.find_one({"shopId": SHOP, "externalId": external_id})
    assert doc is not None
    return doc


def logged(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(e["kind"], e.get("text"), e.get("orderId"), e["at"]) for e in doc["activity"]]


async def emitted(database: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    stored = await database.events.find({"shopId": SHOP}, sort=[("_id", 1)]).to_list()
    return [(e["type"], e["contactId"], e["data"]) for e in stored]


async def counts(database: Any) -> dict[str, int]:
    return await contact_totals(database, SHOP)


def counted(total: int = 0, customers: int = 0, leads: int = 0) -> dict[str, int]:
    return {"total": total, "CUSTOMER": customers, "LEAD": leads}


async def everything(database: Any) -> tuple[list[Any], ...]:
    """Every document the order's transaction may touch, for 'nothing changed' checks."""
    names = ("shops", "orders", "contacts", "events", "contact_counts", "activity_archive")
    return tuple([await database.db[name].find({}, sort=[("_id", 1)]).to_list() for name in names])


def placed(order: dict[str, Any], text: str = "Order #1001: 25.00 EUR") -> tuple[Any, ...]:
    return ("ORDER_PLACED", text, order["_id"], order["placedAt"])


CHECKOUT_YES = "Marketing consent: SUBSCRIBED (CHECKOUT)"


# -- the currency ------------------------------------------------------------------


async def test_a_first_order_claims_the_currency_of_a_shop_without_one(database):
    await database.shops.insert_one({"_id": SHOP, "currency": None})
    await database.shops.insert_one({"_id": OTHER, "currency": None})

    recorded = await record(database, report(currency_code="USD"), shop_currency=None)

    assert recorded.order["currency"] == "USD"
    assert await database.shops.find_one({"_id": SHOP}) == {"_id": SHOP, "currency": "USD"}
    assert await database.shops.find_one({"_id": OTHER}) == {"_id": OTHER, "currency": None}


async def test_a_shop_keeps_its_currency_and_refuses_an_order_in_another(database):
    await database.shops.insert_one({"_id": SHOP, "currency": "EUR"})
    before = await everything(database)

    with pytest.raises(Refused) as refused:
        await record(database, report(currency_code="USD"), shop_currency=None)

    assert refused.value.problems == [
        Problem(CURRENCY_PATH, "This shop records orders in EUR, not USD.", "INVALID")
    ]
    assert await everything(database) == before


async def test_an_order_in_the_shop_s_own_currency_is_recorded(database):
    await database.shops.insert_one({"_id": SHOP, "currency": "EUR"})

    recorded = await record(database, report(), shop_currency=None)

    assert recorded.order["currency"] == "EUR"
    assert await database.shops.find_one({"_id": SHOP}) == {"_id": SHOP, "currency": "EUR"}


async def test_the_currency_the_caller_knows_is_trusted_without_a_read(database, commands):
    # No shop document at all: a read would find no currency.
    commands.reset()

    recorded = await record(database, report(), shop_currency="EUR")

    assert recorded.order["currency"] == "EUR"
    assert commands.on("shops") == []
    assert await database.shops.count_documents({}) == 0


async def test_a_known_currency_refuses_an_order_in_another(database, commands):
    commands.reset()

    with pytest.raises(Refused) as refused:
        await settle_currency(database, SHOP, "EUR", "USD", ("draft", "currencyCode"))

    assert refused.value.problems == [
        Problem(("draft", "currencyCode"), "This shop records orders in EUR, not USD.", "INVALID")
    ]
    assert commands.on("shops") == []


async def test_without_a_currency_of_its_own_an_order_takes_the_shop_s(database):
    await database.shops.insert_one({"_id": SHOP, "currency": "GBP"})
    await database.shops.insert_one({"_id": OTHER, "currency": "EUR"})

    assert await settle_currency(database, SHOP, None, None, CURRENCY_PATH) == "GBP"
    assert await settle_currency(database, SHOP, "CHF", None, CURRENCY_PATH) == "CHF"
    assert await database.shops.find_one({"_id": SHOP}) == {"_id": SHOP, "currency": "GBP"}


@pytest.mark.parametrize("shop", [None, {"_id": SHOP, "currency": None}, {"_id": SHOP}])
async def test_neither_the_order_nor_the_shop_naming_a_currency_is_refused(database, shop):
    await database.shops.insert_one({"_id": OTHER, "currency": "EUR"})
    if shop is not None:
        await database.shops.insert_one(shop)

    with pytest.raises(Refused) as refused:
        await settle_currency(database, SHOP, None, None, ("draft", "currencyCode"))

    assert refused.value.problems == [
        Problem(
            ("draft", "currencyCode"),
            "The shop has no currency yet: give a currency code.",
            "REQUIRED",
        )
    ]
    assert await database.shops.find_one({"_id": SHOP}) == shop


async def test_a_claimed_currency_goes_with_the_transaction_that_failed(database):
    await database.shops.insert_one({"_id": SHOP, "currency": None})

    async def work(session: Any) -> None:
        assert await settle_currency(database, SHOP, None, "USD", CURRENCY_PATH, session) == "USD"
        assert await settle_currency(database, SHOP, None, None, CURRENCY_PATH, session) == "USD"
        raise Stop

    with pytest.raises(Stop):
        await activity.in_transaction(database, work)

    assert await database.shops.find_one({"_id": SHOP}) == {"_id": SHOP, "currency": None}


# -- a first order of a new email ----------------------------------------------------


async def test_a_first_order_makes_a_customer_with_everything_it_brings(database):
    recorded = await record(
        database,
        report(
            first_name="Ann",
            last_name="Lee",
            phone="+12025550143",
            shipping_address=OFFICE,
            billing_address=HOME,
            has_account=True,
        ),
    )

    order = await order_of(database)
    contact = await contact_of(database)
    assert order["contactId"] == contact["_id"]
    assert (order["createdAt"], order["updatedAt"], order["placedAt"]) == (NOW, NOW, day(0))
    assert recorded.order == order
    assert recorded.created is True
    expected = {
        "_id": contact["_id"],
        "shopId": SHOP,
        "email": "Ann@example.com",
        "emailKey": "ann@example.com",
        "emailCanon": "ann@example.com",
        "firstName": "Ann",
        "lastName": "Lee",
        "nameKey": "ann lee",
        "phone": "+12025550143",
        "company": None,
        "shippingAddress": OFFICE,
        "shipAt": day(0),
        "billingAddress": HOME,
        "kind": "CUSTOMER",
        "labels": [],
        "labelKeys": [],
        "hasAccount": True,
        "detailsLocked": False,
        "consent": {"state": "NOT_SUBSCRIBED", "history": []},
        "orderCount": 1,
        "totalSpent": Decimal128("25.00"),
        "firstOrderAt": day(0),
        "lastOrderAt": day(0),
        "orderRev": 1,
        "createdAt": NOW,
        "updatedAt": NOW,
        "rev": 0,
        "activityCount": 1,
        "activityEmbedded": 1,
    }
    assert {k: v for k, v in contact.items() if k not in ("activity", "searchTerms")} == expected
    assert logged(contact) == [placed(order)]
    assert recorded.contact == expected
    assert recorded.logged == expected
    assert await emitted(database) == [
        (
            "CONTACT_CREATED",
            contact["_id"],
            {
                "id": contact_gid(contact["_id"]),
                "email": "Ann@example.com",
                "kind": "CUSTOMER",
                "firstName": "Ann",
                "lastName": "Lee",
                "phone": "+12025550143",
                "shippingAddress": OFFICE,
                "billingAddress": HOME,
                "hasAccount": True,
                "createdAt": NOW,
            },
        )
    ]
    assert await counts(database) == counted(1, 1, 0)


@pytest.mark.parametrize(
    ("ships", "address"), [(False, OFFICE), (True, None)], ids=["no-shipping-line", "no-address"]
)
async def test_a_first_order_that_ships_nothing_stores_no_shipping_address(
    database, ships, address
):
    await record(database, report(ships=ships, shipping_address=address, billing_address=HOME))

    contact = await contact_of(database)
    assert contact["shippingAddress"] is None
    assert "shipAt" not in contact
    assert contact["billingAddress"] == HOME


@pytest.mark.parametrize("has_account", [None, False])
async def test_a_first_order_without_an_account_makes_a_contact_without_one(database, has_account):
    recorded = await record(database, report(has_account=has_account))

    assert (await contact_of(database))["hasAccount"] is False
    assert recorded.contact is not None and recorded.contact["hasAccount"] is False


async def test_a_first_order_with_marketing_yes_subscribes_its_new_contact(database):
    await record(database, report(accepts_marketing=True))

    contact = await contact_of(database)
    assert contact["consent"] == {
        "state": "SUBSCRIBED",
        "optInLevel": "SINGLE_OPT_IN",
        "at": day(0),
        "source": "CHECKOUT",
        "history": [
            {
                "state": "SUBSCRIBED",
                "optInLevel": "SINGLE_OPT_IN",
                "at": day(0),
                "source": "CHECKOUT",
                "actor": None,
                "evidence": "A-1",
            }
        ],
    }
    order = await order_of(database)
    assert logged(contact) == [placed(order), ("CONSENT_CHANGED", CHECKOUT_YES, None, NOW)]
    assert (contact["activityCount"], contact["activityEmbedded"]) == (2, 2)
    assert [(kind, who) for kind, who, _ in await emitted(database)] == [
        ("CONTACT_CREATED", contact["_id"]),
        ("CONSENT_CHANGED", contact["_id"]),
    ]
    assert (await emitted(database))[1][2] == {
        "id": contact_gid(contact["_id"]),
        "state": "SUBSCRIBED",
        "previousState": "NOT_SUBSCRIBED",
        "optInLevel": "SINGLE_OPT_IN",
        "source": "CHECKOUT",
        "at": day(0),
    }


async def test_a_first_order_that_came_in_canceled_makes_a_customer_without_statistics(database):
    await record(database, report(status="CANCELED"))

    contact = await contact_of(database)
    order = await order_of(database)
    assert (contact["kind"], contact["orderCount"], contact["totalSpent"]) == (
        "CUSTOMER",
        0,
        Decimal128("0"),
    )
    assert contact["orderRev"] == 1
    assert "firstOrderAt" not in contact and "lastOrderAt" not in contact
    assert logged(contact) == [
        placed(order),
        ("ORDER_CANCELED", "Order #1001: 25.00 EUR", order["_id"], NOW),
    ]


async def test_an_order_without_a_time_is_placed_now(database):
    recorded = await record_order(
        database,
        SHOP,
        OrderData("A-1", "ann@example.com", "EUR", [LineItemData("Mug", 1, Decimal(5))]),
        shop_currency="EUR",
    )

    assert recorded.order["placedAt"] == NOW
    assert (await order_of(database))["placedAt"] == NOW


async def test_a_refused_report_writes_nothing(database):
    await stored_contact(database)
    before = await everything(database)

    with pytest.raises(Refused) as refused:
        await record(database, report(email="not an address"))

    assert [p.field for p in refused.value.problems] == [("input", "email")]
    assert await everything(database) == before


# -- an order of a known contact ---------------------------------------------------


async def test_a_lead_s_first_order_converts_it_and_takes_its_details(database, monkeypatch):
    lead = await stored_contact(database, "LEAD", firstName="Ann", rev=3)
    # The clock moves on while the order is written: the conversion keeps the order's time.
    monkeypatch.setattr(activity, "now", lambda: NOW + dt.timedelta(seconds=1))

    recorded = await record(
        database,
        report(last_name="Lee", phone="+12025550143", billing_address=HOME, has_account=True),
    )

    contact = await contact_of(database)
    order = await order_of(database)
    assert order["contactId"] == lead["_id"]
    assert recorded.order == order
    assert recorded.contact is None and recorded.created is True
    assert recorded.logged == {"_id": lead["_id"], "activityEmbedded": 2}
    assert {
        k: contact[k] for k in ("kind", "firstName", "lastName", "phone", "billingAddress")
    } == {
        "kind": "CUSTOMER",
        "firstName": "Ann",
        "lastName": "Lee",
        "phone": "+12025550143",
        "billingAddress": HOME,
    }
    assert (contact["hasAccount"], contact["nameKey"], contact["rev"]) == (True, "ann lee", 4)
    assert "lee" in contact["searchTerms"]
    assert contact["updatedAt"] == NOW
    assert (contact["orderCount"], contact["totalSpent"], contact["orderRev"]) == (
        1,
        Decimal128("25.00"),
        1,
    )
    assert (contact["firstOrderAt"], contact["lastOrderAt"]) == (day(0), day(0))
    assert sorted(logged(contact), key=lambda e: e[3]) == [
        placed(order),
        ("CONVERTED_TO_CUSTOMER", "Order #1001: 25.00 EUR", None, NOW),
    ]
    assert (contact["activityCount"], contact["activityEmbedded"]) == (2, 2)
    assert await emitted(database) == [
        (
            "CONTACT_UPDATED",
            lead["_id"],
            {
                "id": contact_gid(lead["_id"]),
                "kind": "CUSTOMER",
                "lastName": "Lee",
                "phone": "+12025550143",
                "billingAddress": HOME,
                "hasAccount": True,
            },
        )
    ]
    assert await counts(database) == counted(0, 1, -1)


async def test_a_customer_s_next_order_is_counted_without_a_conversion(database):
    ann = await stored_contact(
        database,
        firstName="Ann",
        orderCount=1,
        totalSpent=Decimal128("10.00"),
        firstOrderAt=day(-5),
        lastOrderAt=day(-5),
        orderRev=1,
    )

    recorded = await record(database, report(first_name="Ann"))

    contact = await contact_of(database)
    order = await order_of(database)
    assert (contact["orderCount"], contact["totalSpent"], contact["orderRev"]) == (
        2,
        Decimal128("35.00"),
        2,
    )
    assert (contact["firstOrderAt"], contact["lastOrderAt"]) == (day(-5), day(0))
    assert logged(contact) == [placed(order)]
    assert contact["rev"] == 0  # the name did not change
    assert contact["kind"] == "CUSTOMER"
    assert recorded.logged == {"_id": ann["_id"], "activityEmbedded": 1}
    assert await emitted(database) == []  # nothing the API shows of the contact changed
    assert await counts(database) == counted()


@pytest.mark.parametrize(
    ("placed_on", "taken"), [(-1, False), (0, True), (1, True)], ids=["older", "same", "newer"]
)
async def test_details_come_from_the_newest_order_ties_included(database, placed_on, taken):
    await stored_contact(
        database,
        firstName="Ann",
        lastName="Lee",
        phone="+12025550100",
        billingAddress=OFFICE,
        hasAccount=False,
        orderCount=1,
        totalSpent=Decimal128("10.00"),
        firstOrderAt=day(0),
        lastOrderAt=day(0),
        orderRev=1,
    )
    before = await contact_of(database)

    await record(
        database,
        report(
            placed=day(placed_on),
            first_name="Anne",
            last_name="Lee-Smith",
            phone="+12025550143",
            billing_address=HOME,
            has_account=True,
        ),
    )

    contact = await contact_of(database)
    details = ("firstName", "lastName", "phone", "billingAddress", "hasAccount", "nameKey", "rev")
    if taken:
        assert [contact[k] for k in details] == [
            "Anne",
            "Lee-Smith",
            "+12025550143",
            HOME,
            True,
            "anne lee-smith",
            1,
        ]
        assert {"anne", "lee-smith", "smith"} <= set(contact["searchTerms"])
    else:
        assert [contact[k] for k in details] == [before[k] for k in details]
        assert contact["searchTerms"] == before["searchTerms"]
        assert await emitted(database) == []
    # Counted either way.
    assert contact["orderCount"] == 2
    assert contact["firstOrderAt"] == min(day(0), day(placed_on))
    assert contact["lastOrderAt"] == max(day(0), day(placed_on))


async def test_an_order_without_details_keeps_the_contact_s(database):
    await stored_contact(
        database,
        firstName="Ann",
        lastName="Lee",
        phone="+12025550100",
        billingAddress=OFFICE,
        shippingAddress=OFFICE,
        hasAccount=True,
    )
    before = await contact_of(database)

    await record(database, report(ships=False, shipping_address=HOME))

    contact = await contact_of(database)
    for key in (
        "firstName",
        "lastName",
        "phone",
        "billingAddress",
        "shippingAddress",
        "hasAccount",
    ):
        assert contact[key] == before[key], key
    assert "shipAt" not in contact
    assert (contact["nameKey"], contact["rev"]) == ("ann lee", 0)
    assert await emitted(database) == []


async def test_details_an_order_repeats_are_not_named_as_changed(database):
    ann = await stored_contact(
        database, firstName="Ann", lastName="Lee", phone="+12025550100", hasAccount=True
    )

    await record(
        database,
        report(
            first_name="Ann",
            last_name="Lee",
            phone="+12025550100",
            billing_address=HOME,
            has_account=True,
        ),
    )

    contact = await contact_of(database)
    assert contact["rev"] == 0
    assert await emitted(database) == [
        ("CONTACT_UPDATED", ann["_id"], {"id": contact_gid(ann["_id"]), "billingAddress": HOME})
    ]


@pytest.mark.parametrize(
    ("first", "last", "name_key", "term"),
    [("Ann", "Smith", "ann smith", "smith"), ("Zoe", "Lee", "zoe lee", "zoe")],
    ids=["last-name", "first-name"],
)
async def test_one_changed_name_renames_the_contact(database, first, last, name_key, term):
    await stored_contact(database, firstName="Ann", lastName="Lee")

    await record(database, report(first_name=first, last_name=last))

    contact = await contact_of(database)
    assert (contact["firstName"], contact["lastName"]) == (first, last)
    assert (contact["nameKey"], contact["rev"]) == (name_key, 1)
    assert term in contact["searchTerms"]


async def test_locked_details_stay_but_the_account_flag_follows_the_newest_order(database):
    ann = await stored_contact(
        database, firstName="Ann", detailsLocked=True, billingAddress=OFFICE, hasAccount=False
    )

    await record(
        database,
        report(first_name="Anne", billing_address=HOME, shipping_address=HOME, has_account=True),
    )

    contact = await contact_of(database)
    assert (contact["firstName"], contact["billingAddress"], contact["shippingAddress"]) == (
        "Ann",
        OFFICE,
        None,
    )
    assert "shipAt" not in contact
    assert (contact["hasAccount"], contact["rev"]) == (True, 0)
    assert await emitted(database) == [
        ("CONTACT_UPDATED", ann["_id"], {"id": contact_gid(ann["_id"]), "hasAccount": True})
    ]


@pytest.mark.parametrize(
    ("stored", "reported", "changed"),
    [
        (None, None, False),
        (True, None, False),
        (None, False, False),  # a contact stored without the flag has no account
        (False, False, False),
        (True, True, False),
        (None, True, True),
        (True, False, True),
    ],
)
async def test_the_account_flag_changes_only_when_the_order_says_otherwise(
    database, stored, reported, changed
):
    ann = await stored_contact(database)
    if stored is None:
        await database.contacts.update_one({"_id": ann["_id"]}, {"$unset": {"hasAccount": 1}})
    else:
        await database.contacts.update_one({"_id": ann["_id"]}, {"$set": {"hasAccount": stored}})

    await record(database, report(has_account=reported))

    contact = await contact_of(database)
    assert contact.get("hasAccount") == (reported if changed else stored)
    expected = {"id": contact_gid(ann["_id"]), "hasAccount": reported}
    assert await emitted(database) == (
        [("CONTACT_UPDATED", ann["_id"], expected)] if changed else []
    )


@pytest.mark.parametrize(
    ("placed_on", "address", "taken"),
    [
        (4, HOME, False),  # placed before the address on file was shipped to
        (5, HOME, True),  # the same time: the order reported last wins
        (6, HOME, True),
        (6, OFFICE, True),  # the same address, shipped to later
    ],
)
async def test_the_shipping_address_comes_from_the_newest_order_that_ships(
    database, placed_on, address, taken
):
    ann = await stored_contact(
        database, shippingAddress=OFFICE, shipAt=day(5), lastOrderAt=day(2), firstOrderAt=day(2)
    )

    await record(database, report(placed=day(placed_on), shipping_address=address))

    contact = await contact_of(database)
    if taken:
        assert (contact["shippingAddress"], contact["shipAt"]) == (address, day(placed_on))
    else:
        assert (contact["shippingAddress"], contact["shipAt"]) == (OFFICE, day(5))
    events_ = await emitted(database)
    named = [data for _, _, data in events_ if "shippingAddress" in data]
    if taken and address != OFFICE:
        assert named == [{"id": contact_gid(ann["_id"]), "shippingAddress": address}]
    else:
        assert named == []


async def test_a_contact_never_shipped_to_takes_the_address_of_an_older_order(database):
    await stored_contact(database, lastOrderAt=day(9), firstOrderAt=day(9), firstName="Ann")

    await record(database, report(placed=day(1), shipping_address=HOME, first_name="Anne"))

    contact = await contact_of(database)
    assert (contact["shippingAddress"], contact["shipAt"]) == (HOME, day(1))
    assert contact["firstName"] == "Ann"  # not the newest order: the name stays


async def test_an_order_that_came_in_canceled_is_logged_but_not_counted(database):
    lead = await stored_contact(database, "LEAD")

    await record(database, report(status="CANCELED"))

    contact = await contact_of(database)
    order = await order_of(database)
    assert (contact["kind"], contact["orderCount"], contact["totalSpent"]) == (
        "CUSTOMER",
        0,
        Decimal128("0"),
    )
    assert "orderRev" not in contact and "lastOrderAt" not in contact
    assert sorted(logged(contact), key=lambda e: (e[3], e[0])) == [
        placed(order),
        ("CONVERTED_TO_CUSTOMER", "Order #1001: 25.00 EUR", None, NOW),
        ("ORDER_CANCELED", "Order #1001: 25.00 EUR", order["_id"], NOW),
    ]
    assert contact["activityEmbedded"] == 3
    assert await emitted(database) == [
        ("CONTACT_UPDATED", lead["_id"], {"id": contact_gid(lead["_id"]), "kind": "CUSTOMER"})
    ]


# -- marketing consent given at checkout --------------------------------------------------


async def test_a_checkout_yes_subscribes_a_known_contact(database):
    ann = await stored_contact(database)

    await record(database, report(accepts_marketing=True))

    contact = await contact_of(database)
    yes = {
        "state": "SUBSCRIBED",
        "optInLevel": "SINGLE_OPT_IN",
        "at": day(0),
        "source": "CHECKOUT",
        "actor": None,
        "evidence": "A-1",
    }
    assert contact["consent"] == {
        "state": "SUBSCRIBED",
        "history": [yes],
        "optInLevel": "SINGLE_OPT_IN",
        "at": day(0),
        "source": "CHECKOUT",
    }
    assert ("CONSENT_CHANGED", CHECKOUT_YES, None, NOW) in logged(contact)
    assert contact["activityEmbedded"] == 2
    assert await emitted(database) == [
        (
            "CONSENT_CHANGED",
            ann["_id"],
            {
                "id": contact_gid(ann["_id"]),
                "state": "SUBSCRIBED",
                "previousState": "NOT_SUBSCRIBED",
                "optInLevel": "SINGLE_OPT_IN",
                "source": "CHECKOUT",
                "at": day(0),
            },
        )
    ]


@pytest.mark.parametrize(
    ("held_on", "becomes_state"), [(0, True), (1, False)], ids=["same-time", "newer-no"]
)
async def test_a_checkout_yes_older_than_the_contact_s_no_joins_only_the_history(
    database, held_on, becomes_state
):
    no = {"state": "UNSUBSCRIBED", "optInLevel": None, "at": day(held_on), "source": "ADMIN"}
    ann = await stored_contact(
        database,
        consent={**no, "history": [{**no, "actor": "Staff", "evidence": None}]},
    )

    await record(database, report(accepts_marketing=True))

    contact = await contact_of(database)
    assert contact["consent"]["state"] == ("SUBSCRIBED" if becomes_state else "UNSUBSCRIBED")
    assert [e["at"] for e in contact["consent"]["history"]] == sorted([day(held_on), day(0)])
    assert ("CONSENT_CHANGED", CHECKOUT_YES, None, NOW) in logged(contact)
    changed = [data for kind, _, data in await emitted(database) if kind == "CONSENT_CHANGED"]
    if becomes_state:
        assert changed == [
            {
                "id": contact_gid(ann["_id"]),
                "state": "SUBSCRIBED",
                "previousState": "UNSUBSCRIBED",
                "optInLevel": "SINGLE_OPT_IN",
                "source": "CHECKOUT",
                "at": day(0),
            }
        ]
    else:
        assert changed == []


async def test_a_checkout_without_a_yes_leaves_consent_alone(database):
    no = {"state": "UNSUBSCRIBED", "optInLevel": None, "at": day(-3), "source": "ADMIN"}
    await stored_contact(database, consent={**no, "history": [no]})

    await record(database, report(accepts_marketing=False))

    contact = await contact_of(database)
    assert contact["consent"] == {**no, "history": [no]}
    assert [e[0] for e in logged(contact)] == ["ORDER_PLACED"]
    assert await emitted(database) == []


# -- the log's archive after the commit ----------------------------------------------


async def with_log(database: Any, contact_id: ObjectId, size: int) -> None:
    entries = [
        activity.entry("NOTE", text=f"n{i}", at=day(-20) + dt.timedelta(minutes=i))
        for i in range(size)
    ]
    await database.contacts.update_one(
        {"_id": contact_id},
        {"$set": {"activity": entries, "activityCount": size, "activityEmbedded": size}},
    )


@pytest.mark.parametrize(("before", "spilled"), [(196, False), (197, True)])
async def test_an_order_that_grows_the_log_to_its_bound_archives_the_oldest(
    database, before, spilled
):
    # A lead saying yes at checkout: placed, converted and consent make three entries.
    lead = await stored_contact(database, "LEAD")
    await with_log(database, lead["_id"], before)

    await record(database, report(accepts_marketing=True))

    contact = await contact_of(database)
    assert contact["activityCount"] == before + 3
    if spilled:
        assert contact["activityEmbedded"] == 100
        assert await database.activity_archive.count_documents({"contactId": lead["_id"]}) == 1
    else:
        assert contact["activityEmbedded"] == 199
        assert await database.activity_archive.count_documents({}) == 0


async def test_a_replay_that_grows_the_log_to_its_bound_archives_the_oldest(database):
    ann = await stored_contact(database)
    await record(database, report())
    await with_log(database, ann["_id"], 199)

    await record(database, report(status="CANCELED"))

    contact = await contact_of(database)
    assert (contact["activityCount"], contact["activityEmbedded"]) == (200, 100)
    assert await database.activity_archive.count_documents({"contactId": ann["_id"]}) == 1


# -- replays, other shops, retries ---------------------------------------------------


async def test_a_replay_changes_the_order_and_makes_nothing_new(database):
    first = await record(database, report())
    contact = await contact_of(database)

    again = await record(database, report(status="FULFILLED", first_name="Zed"))

    assert again.created is False
    assert again.contact is None
    assert again.logged is None  # a fulfilled order logs nothing
    assert again.order == {**first.order, "status": "FULFILLED", "updatedAt": NOW}
    assert await order_of(database) == again.order
    assert await database.orders.count_documents({}) == 1
    assert await contact_of(database) == contact


async def test_the_same_report_again_changes_nothing(database):
    first = await record(database, report())
    before = await everything(database)

    again = await record(database, report())

    assert (again.order, again.created, again.contact, again.logged) == (
        first.order,
        False,
        None,
        None,
    )
    assert await everything(database) == before


async def test_a_replay_stores_a_new_refund(database):
    await record(database, report())

    again = await record(database, report(refunded=Decimal("5.50")))

    assert again.order["refunded"] == Decimal128("5.50")
    assert (await order_of(database))["refunded"] == Decimal128("5.50")


async def test_a_replay_older_than_the_report_applied_last_changes_nothing(database):
    await record(database, report(updated_at=day(2)))
    applied = await order_of(database)

    older = await record(database, report(status="CANCELED", updated_at=day(1)))

    assert older.order == applied
    assert await order_of(database) == applied

    newer = await record(database, report(status="FULFILLED", updated_at=day(3)))

    assert (newer.order["status"], newer.order["shopUpdatedAt"]) == ("FULFILLED", day(3))
    assert await order_of(database) == newer.order


async def test_a_replay_that_fails_before_the_commit_changes_nothing(database, monkeypatch):
    await record(database, report())
    before = await everything(database)
    real = order_record.change_order

    async def then_stop(*args: Any, **kwargs: Any) -> Any:
        await real(*args, **kwargs)
        raise Stop

    monkeypatch.setattr(order_record, "change_order", then_stop)

    with pytest.raises(Stop):
        await record(database, report(status="CANCELED", refunded=Decimal("5.00")))

    assert await everything(database) == before


async def test_another_shop_s_order_and_contact_are_not_this_shop_s(database):
    theirs = await record_order(database, OTHER, report(first_name="Other"), shop_currency="EUR")
    their_contact = await database.contacts.find_one({"shopId": OTHER})

    mine = await record(database, report(first_name="Ann"))

    assert mine.created is True
    assert mine.order["_id"] != theirs.order["_id"]
    assert mine.order["contactId"] != theirs.order["contactId"]
    contact = await contact_of(database)
    assert (contact["firstName"], contact["orderCount"]) == ("Ann", 1)
    assert await database.contacts.find_one({"shopId": OTHER}) == their_contact
    assert await database.orders.count_documents({"shopId": OTHER}) == 1


async def test_a_report_that_fails_before_the_commit_leaves_nothing(database, monkeypatch):
    await database.shops.insert_one({"_id": SHOP, "currency": None})
    await stored_contact(database, "LEAD", firstName="Ann")
    before = await everything(database)
    real = order_record._checkout_consent_changed

    async def then_stop(*args: Any) -> None:
        await real(*args)
        raise Stop

    monkeypatch.setattr(order_record, "_checkout_consent_changed", then_stop)

    with pytest.raises(Stop):
        await record(
            database,
            report(first_name="Anne", accepts_marketing=True, has_account=True),
            shop_currency=None,
        )
    with pytest.raises(Stop):
        await record(
            database,
            report("B-1", "bob@example.com", accepts_marketing=True, status="CANCELED"),
            shop_currency=None,
        )

    assert await everything(database) == before


async def test_a_contact_that_cannot_be_written_fails_the_order(database, monkeypatch):
    await stored_contact(database)
    before = await everything(database)
    real = AsyncCollection.update_one

    async def lost(self: AsyncCollection, where: Any, *args: Any, **kwargs: Any) -> Any:
        if self.name == "contacts":
            where = {**where, "_id": ObjectId()}  # as if the contact were gone
        return await real(self, where, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "update_one", lost)

    with pytest.raises(RuntimeError, match="^the contact read in this transaction could not be"):
        await record(database, report())

    assert await everything(database) == before


async def test_a_duplicate_key_runs_the_order_again_up_to_five_times(database, monkeypatch):
    real = activity.in_transaction
    calls = []

    async def colliding(database_: Any, work: Any) -> Any:
        calls.append(1)
        if len(calls) < 5:
            raise DuplicateKeyError("E11000 duplicate key")
        return await real(database_, work)

    monkeypatch.setattr(activity, "in_transaction", colliding)

    recorded = await record(database, report())

    assert len(calls) == 5
    assert recorded.created is True
    assert await database.orders.count_documents({}) == 1


async def test_a_sixth_duplicate_key_is_not_retried(database, monkeypatch):
    calls = []

    async def colliding(database_: Any, work: Any) -> Any:
        calls.append(1)
        raise DuplicateKeyError("E11000 duplicate key")

    monkeypatch.setattr(activity, "in_transaction", colliding)

    with pytest.raises(DuplicateKeyError):
        await record(database, report())

    assert len(calls) == 5
    assert await database.orders.count_documents({}) == 0


# -- inside the order's transaction ----------------------------------------------------


async def in_one_transaction(database: Any, *reports: OrderData) -> list[order_record.Recorded]:
    """The reports recorded one after another in a single transaction, after Ann is inserted in it."""

    async def work(session: Any) -> list[order_record.Recorded]:
        ann = new_contact(SHOP, "Ann@example.com", "ann@example.com", "LEAD", {}, day(-30))
        await database.contacts.insert_one(ann, session=session)
        return [
            await order_record._record_once(database, SHOP, check_order(r, NOW), NOW, session)
            for r in reports
        ]

    return await activity.in_transaction(database, work)


async def test_the_order_lands_on_the_contact_its_own_transaction_wrote(database):
    [recorded] = await in_one_transaction(database, report())

    contact = await contact_of(database)
    assert recorded.order["contactId"] == contact["_id"]
    assert (contact["kind"], contact["orderCount"]) == ("CUSTOMER", 1)
    assert await database.contacts.count_documents({}) == 1


async def test_a_report_again_in_the_same_transaction_is_a_replay(database):
    first, again = await in_one_transaction(database, report(), report(status="FULFILLED"))

    assert (first.created, again.created) == (True, False)
    assert again.order["_id"] == first.order["_id"]
    assert (await order_of(database))["status"] == "FULFILLED"
    assert await database.orders.count_documents({}) == 1
