"""Recording orders: contacts made and converted, statistics, replays, cancels, drafts, history."""

from __future__ import annotations

import datetime as dt
import os
import random
from decimal import Decimal

from bson import Decimal128, ObjectId
from conftest import OTHER_SHOP, SHOP, Api

from graph.cli.seed import seed_shop
from graph.types.node import decode_id, encode_id
from loaders.mongo import Database, ensure_indexes
from resolvers import activity
from resolvers.contacts import new_contact
from resolvers.migrations import key_drafts
from resolvers.order_seed import seed_orders
from resolvers.shops import Role, create_key, ensure_shop
from resolvers.validation import email_key

RECORD = """
mutation($input: OrderInput!) {
  orderRecord(input: $input) {
    order {
      id externalId number status email placedAt
      subtotal { amount currencyCode } shipping { amount } tax { amount } discount { amount }
      total { amount currencyCode } refunded { amount }
      lineItems { title sku quantity unitPrice { amount } total { amount } requiresShipping }
      shippingAddress { line1 city countryCode }
      contact { id email }
    }
    contact {
      id email kind firstName lastName phone hasAccount detailsLocked
      orderCount totalSpent { amount currencyCode } averageOrderValue { amount currencyCode }
      firstOrderAt lastOrderAt
      shippingAddress { name line1 city countryCode }
      consent { state optInLevel source updatedAt history { state source optInLevel evidence at } }
    }
    userErrors { field message code }
  }
}
"""

CANCEL = """
mutation($id: ID!) {
  orderCancel(id: $id) {
    order { id status }
    contact { orderCount totalSpent { amount } firstOrderAt lastOrderAt }
    userErrors { field message code }
  }
}
"""

DRAFT = """
mutation($contactId: ID!, $input: DraftOrderInput!) {
  draftOrderCreate(contactId: $contactId, input: $input) {
    order { id externalId status placedAt email total { amount currencyCode } contact { id } }
    contact { kind orderCount totalSpent { amount } }
    userErrors { field message code }
  }
}
"""

CREATE_CONTACT = """
mutation($input: ContactInput!) {
  contactCreate(input: $input) { contact { id kind } userErrors { code } }
}
"""

UPDATE_CONTACT = """
mutation($id: ID!, $input: ContactInput!) {
  contactUpdate(id: $id, input: $input) { contact { id detailsLocked } userErrors { field code } }
}
"""

UNLOCK_CONTACT = """
mutation($id: ID!) { contactUnlock(id: $id) { contact { detailsLocked } userErrors { code } } }
"""

CONTACT_ORDERS = """
query($id: ID!, $first: Int, $after: String, $canceled: Boolean, $drafts: Boolean) {
  contact(id: $id) {
    orders(first: $first, after: $after, includeCanceled: $canceled, includeDrafts: $drafts) {
      totalCount
      nodes { externalId status }
      edges { cursor node { externalId } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}
"""

BASE_TIME = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)


def at(days: float = 0) -> str:
    return (BASE_TIME + dt.timedelta(days=days)).isoformat(timespec="milliseconds")


def order_input(external_id: str = "A-1", email: str = "ann@example.com", **extra: object) -> dict:
    """A valid order: 2 x 12.50 + 4.90 shipping = 29.90 EUR, placed at BASE_TIME."""
    data: dict = {
        "externalId": external_id,
        "email": email,
        "currencyCode": "EUR",
        "placedAt": at(0),
        "lineItems": [{"title": "Mug", "sku": "MUG-1", "quantity": 2, "unitPrice": "12.50"}],
        "shipping": "4.90",
    }
    data.update(extra)
    return data


def address(line1: str, city: str = "Berlin") -> dict:
    return {
        "name": "Ann Example",
        "line1": line1,
        "postalCode": "10115",
        "city": city,
        "countryCode": "DE",
    }


async def record(api: Api, **kwargs: object) -> dict:
    data = await api.data(RECORD, {"input": order_input(**kwargs)})  # type: ignore[arg-type]
    return data["orderRecord"]


async def record_ok(api: Api, **kwargs: object) -> dict:
    result = await record(api, **kwargs)
    assert result["userErrors"] == [], result["userErrors"]
    return result


async def contact_doc(database, email: str = "ann@example.com") -> dict:  # type: ignore[no-untyped-def]
    doc = await database.contacts.find_one({"shopId": SHOP, "emailKey": email_key(email)})
    assert doc is not None
    return doc


def newest_first(doc: dict) -> list[dict]:
    """The stored log ordered as read: it is kept in write order."""
    return sorted(doc.get("activity", []), key=lambda e: (e["at"], e["_id"]), reverse=True)


def kinds(doc: dict) -> list[str]:
    return [e["kind"] for e in newest_first(doc)]


async def counts(database) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    return (
        await database.orders.count_documents({"shopId": SHOP}),
        await database.contacts.count_documents({"shopId": SHOP}),
    )


# ---------------------------------------------------------------- recording


async def test_a_new_email_makes_a_customer_with_the_order(api, database):
    result = await record_ok(
        api,
        firstName="Ann",
        lastName="Example",
        phone="+49 30 1234567",
        shippingAddress=address("Main St 1"),
    )
    order, contact = result["order"], result["contact"]
    assert order["externalId"] == "A-1" and order["status"] == "OPEN"
    assert order["subtotal"] == {"amount": "25.00", "currencyCode": "EUR"}
    assert order["total"] == {"amount": "29.90", "currencyCode": "EUR"}
    assert order["refunded"]["amount"] == "0"
    assert order["lineItems"] == [
        {
            "title": "Mug",
            "sku": "MUG-1",
            "quantity": 2,
            "unitPrice": {"amount": "12.50"},
            "total": {"amount": "25.00"},
            "requiresShipping": True,
        }
    ]
    assert order["contact"]["id"] == contact["id"]
    assert contact["kind"] == "CUSTOMER"
    assert contact["orderCount"] == 1
    assert contact["totalSpent"] == {"amount": "29.90", "currencyCode": "EUR"}
    assert contact["averageOrderValue"] == {"amount": "29.90", "currencyCode": "EUR"}
    assert contact["firstOrderAt"] == contact["lastOrderAt"] == at(0)
    assert (contact["firstName"], contact["lastName"], contact["phone"]) == (
        "Ann",
        "Example",
        "+49301234567",
    )
    assert contact["shippingAddress"]["line1"] == "Main St 1"

    doc = await contact_doc(database)
    assert kinds(doc) == ["ORDER_PLACED"]
    assert doc["activity"][0]["orderId"] == decode_id(order["id"], "Order")
    assert doc["activityCount"] == 1
    assert doc["totalSpent"] == Decimal128("29.90")
    assert doc["nameKey"] == "ann example" and "ann" in doc["searchTerms"]
    stored = await database.orders.find_one({"shopId": SHOP, "externalId": "A-1"})
    assert stored["contactId"] == doc["_id"] and stored["emailKey"] == "ann@example.com"
    assert stored["total"] == Decimal128("29.90") and stored["currency"] == "EUR"


async def test_the_email_finds_the_contact_in_any_letter_case(api, database):
    first = await record_ok(api, external_id="A-1", email="Ann@Example.com")
    second = await record_ok(api, external_id="A-2", email="ANN@EXAMPLE.COM", placedAt=at(1))
    assert first["contact"]["id"] == second["contact"]["id"]
    assert second["contact"]["orderCount"] == 2
    assert second["contact"]["totalSpent"]["amount"] == "59.80"
    assert await counts(database) == (2, 1)


async def test_a_lead_with_an_order_becomes_a_customer(api, database):
    created = await api.data(CREATE_CONTACT, {"input": {"email": "ann@example.com"}})
    assert created["contactCreate"]["contact"]["kind"] == "LEAD"
    result = await record_ok(api)
    assert result["contact"]["id"] == created["contactCreate"]["contact"]["id"]
    assert result["contact"]["kind"] == "CUSTOMER"
    doc = await contact_doc(database)
    assert sorted(kinds(doc)) == ["CONTACT_CREATED", "CONVERTED_TO_CUSTOMER", "ORDER_PLACED"]
    # A second order does not convert again.
    await record_ok(api, external_id="A-2", placedAt=at(1))
    doc = await contact_doc(database)
    assert kinds(doc).count("CONVERTED_TO_CUSTOMER") == 1
    assert kinds(doc).count("ORDER_PLACED") == 2


async def test_statistics_are_exact_sums_of_original_totals(api, database):
    # 3 x 0.10 + 0.20 shipping + 0.07 tax - 0.05 discount = 0.52
    await record_ok(
        api,
        external_id="S-1",
        lineItems=[{"title": "Sticker", "quantity": 3, "unitPrice": "0.10"}],
        shipping="0.20",
        tax="0.07",
        discount="0.05",
        total="0.52",
    )
    # 1 x 0.1 + 0 + 0 = 0.1 (the classic float trap: 0.52 + 0.1 + 0.2)
    await record_ok(
        api,
        external_id="S-2",
        lineItems=[{"title": "A", "quantity": 1, "unitPrice": "0.1"}],
        shipping="0",
        placedAt=at(1),
    )
    result = await record_ok(
        api,
        external_id="S-3",
        lineItems=[{"title": "B", "quantity": 1, "unitPrice": "0.2"}],
        shipping="0",
        placedAt=at(-1),
        refunded="0.2",
    )
    contact = result["contact"]
    assert contact["orderCount"] == 3
    assert Decimal(contact["totalSpent"]["amount"]) == Decimal("0.82")  # refunds are not subtracted
    assert contact["averageOrderValue"]["amount"] == "0.27"
    assert contact["firstOrderAt"] == at(-1) and contact["lastOrderAt"] == at(1)
    assert (await contact_doc(database))["totalSpent"].to_decimal() == Decimal("0.82")


async def test_a_total_that_does_not_add_up_is_invalid_and_writes_nothing(api, database):
    result = await record(api, total="29.80")
    assert result["order"] is None
    assert [(e["field"], e["code"]) for e in result["userErrors"]] == [
        (["input", "total"], "INVALID")
    ]
    assert await counts(database) == (0, 0)
    shop = await database.shops.find_one({"_id": SHOP})
    assert shop["currency"] is None  # a refused order does not claim the currency
    ok = await record(api, total="29.9")  # the same amount, spelled differently
    assert ok["userErrors"] == [] and ok["order"]["total"]["amount"] == "29.9"


async def test_the_first_order_sets_the_shop_currency_and_others_are_refused(api, database):
    first = await record_ok(api, external_id="E-1")
    assert first["contact"]["totalSpent"]["currencyCode"] == "EUR"
    assert (await database.shops.find_one({"_id": SHOP}))["currency"] == "EUR"
    refused = await record(api, external_id="U-1", currencyCode="USD", email="bob@example.com")
    assert [(e["field"], e["code"]) for e in refused["userErrors"]] == [
        (["input", "currencyCode"], "INVALID")
    ]
    assert await counts(database) == (1, 1)


async def test_a_configured_shop_currency_decides(http, database, keys):
    await database.shops.update_one({"_id": OTHER_SHOP}, {"$set": {"currency": "CHF"}})
    other = Api(http, keys["OTHER"])
    refused = await record(other, currencyCode="EUR")
    assert refused["userErrors"][0]["code"] == "INVALID"
    assert await database.orders.count_documents({"shopId": OTHER_SHOP}) == 0
    ok = await record_ok(other, currencyCode="CHF")
    assert ok["order"]["total"]["currencyCode"] == "CHF"


async def test_every_input_problem_is_reported_with_its_field(api, database):
    too_many = [{"title": "x", "quantity": 1, "unitPrice": "1"}] * 501
    cases = [
        ({"email": "not-an-email"}, ["input", "email"], "INVALID"),
        ({"email": "  "}, ["input", "email"], "REQUIRED"),
        ({"externalId": ""}, ["input", "externalId"], "REQUIRED"),
        ({"externalId": "x" * 201}, ["input", "externalId"], "TOO_LONG"),
        ({"number": "n" * 101}, ["input", "number"], "TOO_LONG"),
        ({"status": "DRAFT"}, ["input", "status"], "INVALID"),
        ({"currencyCode": "eur"}, ["input", "currencyCode"], "INVALID"),
        ({"currencyCode": "EURO"}, ["input", "currencyCode"], "INVALID"),
        ({"lineItems": []}, ["input", "lineItems"], "REQUIRED"),
        ({"lineItems": too_many}, ["input", "lineItems"], "LIMIT_EXCEEDED"),
        (
            {"lineItems": [{"title": "M", "quantity": 0, "unitPrice": "1"}]},
            ["input", "lineItems", "0", "quantity"],
            "INVALID",
        ),
        (
            {"lineItems": [{"title": "M", "quantity": 100_001, "unitPrice": "1"}]},
            ["input", "lineItems", "0", "quantity"],
            "INVALID",
        ),
        (
            {"lineItems": [{"title": "M", "quantity": 1, "unitPrice": "-1"}]},
            ["input", "lineItems", "0", "unitPrice"],
            "INVALID",
        ),
        (
            {"lineItems": [{"title": "M", "quantity": 1, "unitPrice": "1.23456"}]},
            ["input", "lineItems", "0", "unitPrice"],
            "INVALID",
        ),
        (
            {"lineItems": [{"title": " ", "quantity": 1, "unitPrice": "1"}]},
            ["input", "lineItems", "0", "title"],
            "REQUIRED",
        ),
        (
            {"lineItems": [{"title": "t" * 501, "quantity": 1, "unitPrice": "1"}]},
            ["input", "lineItems", "0", "title"],
            "TOO_LONG",
        ),
        (
            {"lineItems": [{"title": "M", "sku": "s" * 101, "quantity": 1, "unitPrice": "1"}]},
            ["input", "lineItems", "0", "sku"],
            "TOO_LONG",
        ),
        ({"shipping": "-0.01"}, ["input", "shipping"], "INVALID"),
        ({"tax": "-1"}, ["input", "tax"], "INVALID"),
        ({"discount": "100"}, ["input", "discount"], "INVALID"),
        ({"refunded": "30"}, ["input", "refunded"], "INVALID"),
        (
            {"placedAt": (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).isoformat()},
            ["input", "placedAt"],
            "INVALID",
        ),
        (
            {"shippingAddress": {"countryCode": "D1"}},
            ["input", "shippingAddress", "countryCode"],
            "INVALID",
        ),
        (
            {"shippingAddress": {"countryCode": "DEU"}},
            ["input", "shippingAddress", "countryCode"],
            "TOO_LONG",
        ),
        ({"billingAddress": {"city": "c" * 201}}, ["input", "billingAddress", "city"], "TOO_LONG"),
        ({"phone": "12"}, ["input", "phone"], "INVALID"),
        ({"firstName": "f" * 201}, ["input", "firstName"], "TOO_LONG"),
    ]
    for change, field, code in cases:
        result = (await api.data(RECORD, {"input": {**order_input(), **change}}))["orderRecord"]
        assert result["order"] is None, change
        assert [(e["field"], e["code"]) for e in result["userErrors"]] == [(field, code)], change
    # Several problems at once are all reported.
    many = {
        **order_input(),
        "email": "x",
        "currencyCode": "e",
        "lineItems": [{"title": "M", "quantity": -1, "unitPrice": "1"}],
    }
    result = (await api.data(RECORD, {"input": many}))["orderRecord"]
    assert {tuple(e["field"]) for e in result["userErrors"]} == {
        ("input", "email"),
        ("input", "currencyCode"),
        ("input", "lineItems", "0", "quantity"),
    }
    assert await counts(database) == (0, 0)
    # A few minutes ahead of our clock is tolerated (shops' clocks drift).
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)).isoformat()
    await record_ok(api, placedAt=soon)


# ---------------------------------------------------------------- replays and cancels


async def test_the_same_order_twice_changes_nothing(api, database):
    first = await record_ok(api)
    before = await contact_doc(database)
    again = await record_ok(api)
    assert again["order"]["id"] == first["order"]["id"]
    assert (
        again["contact"]["orderCount"] == 1 and again["contact"]["totalSpent"]["amount"] == "29.90"
    )
    after = await contact_doc(database)
    assert after["activityCount"] == before["activityCount"] == 1
    assert after["updatedAt"] == before["updatedAt"]
    assert await counts(database) == (1, 1)


async def test_a_replay_with_canceled_status_rederives_the_statistics(api, database):
    await record_ok(api, external_id="A-1", placedAt=at(0))
    await record_ok(
        api,
        external_id="A-2",
        placedAt=at(2),
        lineItems=[{"title": "Pen", "quantity": 1, "unitPrice": "3.30"}],
    )
    canceled = await record_ok(api, external_id="A-1", placedAt=at(0), status="CANCELED")
    assert canceled["order"]["status"] == "CANCELED"
    contact = canceled["contact"]
    assert contact["orderCount"] == 1
    assert contact["totalSpent"]["amount"] == "8.20"  # 3.30 + 4.90 shipping
    assert contact["firstOrderAt"] == contact["lastOrderAt"] == at(2)
    doc = await contact_doc(database)
    assert kinds(doc).count("ORDER_CANCELED") == 1
    # The same cancel again changes nothing, and canceled is final: a later
    # report with another status does not reopen the order.
    await record_ok(api, external_id="A-1", status="CANCELED")
    assert kinds(await contact_doc(database)).count("ORDER_CANCELED") == 1
    replayed = await record_ok(api, external_id="A-1", status="FULFILLED")
    assert replayed["order"]["status"] == "CANCELED"
    assert replayed["contact"]["orderCount"] == 1
    assert replayed["contact"]["totalSpent"]["amount"] == "8.20"
    assert (await contact_doc(database))["totalSpent"] == Decimal128("8.20")


async def test_a_replay_with_a_refund_updates_the_order_not_the_statistics(api, database):
    await record_ok(api)
    refunded = await record_ok(api, refunded="10.00")
    assert refunded["order"]["refunded"]["amount"] == "10.00"
    assert refunded["contact"]["totalSpent"]["amount"] == "29.90"
    assert refunded["contact"]["orderCount"] == 1
    stored = await database.orders.find_one({"shopId": SHOP, "externalId": "A-1"})
    assert stored["refunded"] == Decimal128("10.00")
    # Status and refund move together.
    both = await record_ok(api, refunded="29.90", status="CANCELED")
    assert both["order"]["refunded"]["amount"] == "29.90" and both["order"]["status"] == "CANCELED"
    assert (
        both["contact"]["orderCount"] == 0 and Decimal(both["contact"]["totalSpent"]["amount"]) == 0
    )
    assert both["contact"]["firstOrderAt"] is None and both["contact"]["lastOrderAt"] is None


async def test_order_cancel_from_the_admin_side(api, as_role, database):
    first = await record_ok(api, external_id="A-1", placedAt=at(0))
    await record_ok(api, external_id="A-2", placedAt=at(1))
    order_id = first["order"]["id"]
    result = (await api.data(CANCEL, {"id": order_id}))["orderCancel"]
    assert result["userErrors"] == []
    assert result["order"]["status"] == "CANCELED"
    assert result["contact"]["orderCount"] == 1
    assert result["contact"]["totalSpent"]["amount"] == "29.90"
    assert result["contact"]["firstOrderAt"] == at(1)
    doc = await contact_doc(database)
    canceled = [e for e in doc["activity"] if e["kind"] == "ORDER_CANCELED"]
    assert len(canceled) == 1 and canceled[0]["author"] == "Admin Person"
    assert canceled[0]["orderId"] == decode_id(order_id, "Order")
    # Again: nothing changes, nothing is logged.
    again = (await api.data(CANCEL, {"id": order_id}))["orderCancel"]
    assert again["userErrors"] == [] and again["contact"]["orderCount"] == 1
    assert kinds(await contact_doc(database)).count("ORDER_CANCELED") == 1
    # Unknown, malformed and other-shop ids are NOT_FOUND; READER and INGEST may not cancel.
    for bad in (encode_id("Order", ObjectId()), "nonsense", first["contact"]["id"]):
        missing = (await api.data(CANCEL, {"id": bad}))["orderCancel"]
        assert [(e["field"], e["code"]) for e in missing["userErrors"]] == [(["id"], "NOT_FOUND")]
    other = Api(api.client, (await create_key(database, OTHER_SHOP, Role.ADMIN, "x"))[1])
    assert (await other.data(CANCEL, {"id": order_id}))["orderCancel"]["userErrors"][0][
        "code"
    ] == "NOT_FOUND"
    for role in ("READER", "INGEST", "PUBLIC"):
        body = await as_role(role).gql(CANCEL, {"id": order_id})
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_an_order_recorded_as_canceled_does_not_count(api, database):
    result = await record_ok(api, status="CANCELED")
    assert result["contact"]["kind"] == "CUSTOMER"
    assert result["contact"]["orderCount"] == 0
    assert result["contact"]["firstOrderAt"] is None
    assert kinds(await contact_doc(database)) == ["ORDER_CANCELED", "ORDER_PLACED"]


# ---------------------------------------------------------------- details from orders


async def test_details_follow_the_newest_order(api, database):
    await record_ok(
        api,
        external_id="A-1",
        firstName="Ann",
        lastName="Old",
        phone="+4930111111",
        shippingAddress=address("Old St 1"),
    )
    newer = await record_ok(
        api,
        external_id="A-2",
        placedAt=at(1),
        firstName="Ann",
        lastName="New",
        phone="+4930222222",
        shippingAddress=address("New St 2", "Hamburg"),
    )
    contact = newer["contact"]
    assert (contact["lastName"], contact["phone"]) == ("New", "+4930222222")
    assert contact["shippingAddress"]["line1"] == "New St 2"
    doc = await contact_doc(database)
    assert (
        doc["nameKey"] == "ann new"
        and "new" in doc["searchTerms"]
        and "old" not in doc["searchTerms"]
    )
    assert doc["shipAt"] == BASE_TIME + dt.timedelta(days=1)
    found = await api.data('{ contacts(first: 5, query: "new") { nodes { email } } }')
    assert found["contacts"]["nodes"] == [{"email": "ann@example.com"}]


async def test_a_late_older_order_does_not_overwrite_newer_details(api, database):
    await record_ok(
        api,
        external_id="NEW",
        placedAt=at(5),
        lastName="Newer",
        phone="+4930222222",
        shippingAddress=address("New St 2"),
    )
    late = await record_ok(
        api,
        external_id="OLD",
        placedAt=at(1),
        lastName="Older",
        phone="+4930111111",
        shippingAddress=address("Old St 1"),
    )
    contact = late["contact"]
    assert contact["lastName"] == "Newer" and contact["phone"] == "+4930222222"
    assert contact["shippingAddress"]["line1"] == "New St 2"
    assert contact["orderCount"] == 2
    assert contact["firstOrderAt"] == at(1) and contact["lastOrderAt"] == at(5)
    doc = await contact_doc(database)
    assert doc["shipAt"] == BASE_TIME + dt.timedelta(days=5)
    # The log is newest first by time, whatever the arrival order.
    placed = [e for e in doc["activity"] if e["kind"] == "ORDER_PLACED"]
    assert [e["at"] for e in placed] == [
        BASE_TIME + dt.timedelta(days=5),
        BASE_TIME + dt.timedelta(days=1),
    ]


async def test_a_digital_only_order_never_sets_the_shipping_address(api, database):
    await record_ok(api, external_id="A-1", shippingAddress=address("Main St 1"))
    digital = [{"title": "E-book", "quantity": 1, "unitPrice": "9.99", "requiresShipping": False}]
    later = await record_ok(
        api,
        external_id="A-2",
        placedAt=at(3),
        lineItems=digital,
        shipping="0",
        shippingAddress=address("Elsewhere 9"),
    )
    assert later["contact"]["shippingAddress"]["line1"] == "Main St 1"
    assert later["order"]["lineItems"][0]["requiresShipping"] is False
    assert (await contact_doc(database))["shipAt"] == BASE_TIME
    # A contact whose only order is digital has no shipping address at all.
    only = await record_ok(
        api,
        external_id="B-1",
        email="bob@example.com",
        lineItems=digital,
        shipping="0",
        shippingAddress=address("X 1"),
    )
    assert only["contact"]["shippingAddress"] is None


async def test_locked_details_are_not_overwritten_by_orders(api, database):
    first = await record_ok(
        api,
        external_id="A-1",
        firstName="Ann",
        lastName="Example",
        shippingAddress=address("Main St 1"),
    )
    contact_id = first["contact"]["id"]
    edited = await api.data(
        UPDATE_CONTACT, {"id": contact_id, "input": {"lastName": "Edited", "phone": "+4930999999"}}
    )
    assert edited["contactUpdate"]["contact"]["detailsLocked"] is True
    later = await record_ok(
        api,
        external_id="A-2",
        placedAt=at(2),
        firstName="Other",
        lastName="Name",
        phone="+4930555555",
        shippingAddress=address("New St 2"),
    )
    contact = later["contact"]
    assert (contact["firstName"], contact["lastName"], contact["phone"]) == (
        "Ann",
        "Edited",
        "+4930999999",
    )
    assert contact["shippingAddress"]["line1"] == "Main St 1"
    assert contact["orderCount"] == 2 and contact["totalSpent"]["amount"] == "59.80"
    assert contact["lastOrderAt"] == at(2)
    assert kinds(await contact_doc(database)).count("ORDER_PLACED") == 2
    # Unlocked, the next order syncs again.
    await api.data(UNLOCK_CONTACT, {"id": contact_id})
    synced = await record_ok(
        api,
        external_id="A-3",
        placedAt=at(3),
        lastName="Synced",
        shippingAddress=address("Third St 3"),
    )
    assert synced["contact"]["lastName"] == "Synced"
    assert synced["contact"]["shippingAddress"]["line1"] == "Third St 3"
    assert (await contact_doc(database))["nameKey"] == "ann synced"


async def test_an_order_on_a_long_history_moves_old_entries_to_the_archive(api, database):
    now = dt.datetime.now(dt.UTC)
    old = [
        activity.entry("NOTE", text=f"n{i}", at=now - dt.timedelta(days=1, minutes=i))
        for i in range(300)
    ]
    await database.contacts.insert_one(
        new_contact(SHOP, "ann@example.com", "ann@example.com", "CUSTOMER", {}, now, entries=old)
    )
    await record_ok(api, placedAt=now.isoformat())
    doc = await contact_doc(database)
    assert doc["activityCount"] == 301
    assert doc["activityEmbedded"] == len(doc["activity"]) < 301
    assert newest_first(doc)[0]["kind"] == "ORDER_PLACED"
    archived = await database.activity_archive.find(
        {"shopId": SHOP, "contactId": doc["_id"]}
    ).to_list()
    assert sum(len(bucket["entries"]) for bucket in archived) == 301 - doc["activityEmbedded"]


async def test_has_account_follows_the_order_flag(api):
    assert (await record_ok(api, external_id="A-1", hasAccount=True))["contact"][
        "hasAccount"
    ] is True
    assert (await record_ok(api, external_id="A-2", placedAt=at(1)))["contact"][
        "hasAccount"
    ] is True  # no flag: unchanged
    assert (await record_ok(api, external_id="A-3", placedAt=at(2), hasAccount=False))["contact"][
        "hasAccount"
    ] is False
    # An older order's flag does not override the newest order's.
    assert (await record_ok(api, external_id="A-0", placedAt=at(-3), hasAccount=True))["contact"][
        "hasAccount"
    ] is False


async def test_accepting_marketing_at_checkout_subscribes(api, database):
    result = await record_ok(api, acceptsMarketing=True, placedAt=at(0))
    consent = result["contact"]["consent"]
    assert consent["state"] == "SUBSCRIBED"
    assert consent["source"] == "CHECKOUT" and consent["optInLevel"] == "SINGLE_OPT_IN"
    assert consent["updatedAt"] == at(0)
    assert consent["history"] == [
        {
            "state": "SUBSCRIBED",
            "source": "CHECKOUT",
            "optInLevel": "SINGLE_OPT_IN",
            "evidence": "A-1",
            "at": at(0),
        }
    ]
    # A replay records nothing more.
    again = await record_ok(api, acceptsMarketing=True)
    assert len(again["contact"]["consent"]["history"]) == 1
    # false or absent records nothing.
    for external_id, flag in (("B-1", False), ("B-2", None)):
        other = await record_ok(
            api, external_id=external_id, email="bob@example.com", acceptsMarketing=flag
        )
        assert other["contact"]["consent"] == {
            "state": "NOT_SUBSCRIBED",
            "optInLevel": None,
            "source": None,
            "updatedAt": None,
            "history": [],
        }


# ---------------------------------------------------------------- drafts


async def test_a_draft_order_converts_a_lead_and_does_not_count(api, as_role, database):
    await record_ok(api, external_id="X-1", email="first@example.com")  # the shop now has EUR
    lead = (await api.data(CREATE_CONTACT, {"input": {"email": "lead@example.com"}}))[
        "contactCreate"
    ]["contact"]
    draft_input = {
        "lineItems": [{"title": "Custom cake", "quantity": 1, "unitPrice": "45.00"}],
        "shipping": "5",
    }
    result = (await as_role("STAFF").data(DRAFT, {"contactId": lead["id"], "input": draft_input}))[
        "draftOrderCreate"
    ]
    assert result["userErrors"] == []
    order = result["order"]
    assert order["status"] == "DRAFT" and order["externalId"] is None and order["placedAt"] is None
    assert order["email"] == "lead@example.com" and order["contact"]["id"] == lead["id"]
    assert order["total"] == {"amount": "50.00", "currencyCode": "EUR"}
    assert result["contact"] == {"kind": "CUSTOMER", "orderCount": 0, "totalSpent": {"amount": "0"}}
    doc = await contact_doc(database, "lead@example.com")
    assert sorted(kinds(doc)) == ["CONTACT_CREATED", "CONVERTED_TO_CUSTOMER", "DRAFT_ORDER_CREATED"]
    created = next(e for e in doc["activity"] if e["kind"] == "DRAFT_ORDER_CREATED")
    assert created["author"] == "Staff Person" and created["orderId"] == decode_id(
        order["id"], "Order"
    )
    # Drafts have no externalId from the shop: each is keyed by its own id in the unique index.
    second = (await api.data(DRAFT, {"contactId": lead["id"], "input": draft_input}))[
        "draftOrderCreate"
    ]
    assert second["userErrors"] == [] and second["contact"]["orderCount"] == 0
    assert (
        kinds(await contact_doc(database, "lead@example.com")).count("CONVERTED_TO_CUSTOMER") == 1
    )
    stored = await database.orders.find_one({"_id": decode_id(order["id"], "Order")})
    assert stored["externalId"] == stored["_id"]  # an ObjectId: no shop's id (a string) names it
    # Canceling a draft logs it and still counts nothing.
    canceled = (await api.data(CANCEL, {"id": order["id"]}))["orderCancel"]
    assert canceled["order"]["status"] == "CANCELED" and canceled["contact"]["orderCount"] == 0
    for role in ("READER", "INGEST"):
        body = await as_role(role).gql(DRAFT, {"contactId": lead["id"], "input": draft_input})
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_drafts_of_an_earlier_version_are_keyed_so_the_plain_index_can_be_built(database):
    old = Database(database.client[f"contactgraph_drafts_{os.getpid()}"])
    await old.client.drop_database(old.db.name)
    try:
        await old.orders.create_index(
            [("shopId", 1), ("externalId", 1)],
            unique=True,
            partialFilterExpression={"externalId": {"$type": "string"}},
        )
        drafts = [{"_id": ObjectId(), "shopId": SHOP, "status": "DRAFT"} for _ in range(2)]
        placed = {"_id": ObjectId(), "shopId": SHOP, "status": "OPEN", "externalId": "A-1"}
        await old.orders.insert_many([*drafts, placed])

        assert await key_drafts(old) == 2
        await ensure_indexes(old)

        spec = (await old.orders.index_information())["shopId_1_externalId_1"]
        assert spec["unique"] and "partialFilterExpression" not in spec
        keys = {o["_id"]: o["externalId"] async for o in old.orders.find({})}
        assert keys == {**{d["_id"]: d["_id"] for d in drafts}, placed["_id"]: "A-1"}
        assert await key_drafts(old) == 0  # run again: nothing to do
    finally:
        await old.client.drop_database(old.db.name)


async def test_draft_order_input_is_checked(api, database):
    lead = (await api.data(CREATE_CONTACT, {"input": {"email": "lead@example.com"}}))[
        "contactCreate"
    ]["contact"]
    lines = [{"title": "Cake", "quantity": 1, "unitPrice": "45.00"}]
    cases = [
        (
            {
                "contactId": encode_id("Contact", ObjectId()),
                "input": {"lineItems": lines, "currencyCode": "EUR"},
            },
            ["contactId"],
            "NOT_FOUND",
        ),
        (
            {"contactId": lead["id"], "input": {"lineItems": lines}},
            ["input", "currencyCode"],
            "REQUIRED",
        ),  # shop has no currency yet
        (
            {"contactId": lead["id"], "input": {"lineItems": [], "currencyCode": "EUR"}},
            ["input", "lineItems"],
            "REQUIRED",
        ),
        (
            {
                "contactId": lead["id"],
                "input": {"lineItems": lines, "currencyCode": "EUR", "discount": "99"},
            },
            ["input", "discount"],
            "INVALID",
        ),
        (
            {"contactId": lead["id"], "input": {"lineItems": lines, "currencyCode": "usd"}},
            ["input", "currencyCode"],
            "INVALID",
        ),
    ]
    for variables, field, code in cases:
        result = (await api.data(DRAFT, variables))["draftOrderCreate"]
        assert [(e["field"], e["code"]) for e in result["userErrors"]] == [(field, code)], variables
    assert await database.orders.count_documents({}) == 0
    assert (await contact_doc(database, "lead@example.com"))["kind"] == "LEAD"
    # A draft's currency can give the shop its currency; then others are refused.
    ok = (
        await api.data(
            DRAFT, {"contactId": lead["id"], "input": {"lineItems": lines, "currencyCode": "GBP"}}
        )
    )["draftOrderCreate"]
    assert ok["order"]["total"]["currencyCode"] == "GBP"
    refused = (
        await api.data(
            DRAFT, {"contactId": lead["id"], "input": {"lineItems": lines, "currencyCode": "EUR"}}
        )
    )["draftOrderCreate"]
    assert refused["userErrors"][0]["code"] == "INVALID"


# ---------------------------------------------------------------- reading


async def test_contact_orders_are_newest_first_with_cursor_paging(api, database):
    for day in range(5):
        await record_ok(api, external_id=f"O-{day}", placedAt=at(day))
    await record_ok(api, external_id="C-9", placedAt=at(9), status="CANCELED")
    contact_id = (await record_ok(api, external_id="O-0"))["contact"]["id"]
    lead_draft = {"lineItems": [{"title": "Cake", "quantity": 1, "unitPrice": "1"}]}
    await api.data(DRAFT, {"contactId": contact_id, "input": lead_draft})

    async def page(**variables: object) -> dict:
        return (await api.data(CONTACT_ORDERS, {"id": contact_id, **variables}))["contact"][
            "orders"
        ]

    first = await page(first=2)
    assert [n["externalId"] for n in first["nodes"]] == ["O-4", "O-3"]
    assert (
        first["pageInfo"]["hasNextPage"] is True and first["pageInfo"]["hasPreviousPage"] is False
    )
    assert first["totalCount"] == 6  # 5 placed + the draft; the canceled one hidden
    second = await page(first=2, after=first["pageInfo"]["endCursor"])
    assert [n["externalId"] for n in second["nodes"]] == ["O-2", "O-1"]
    assert second["pageInfo"]["hasPreviousPage"] is True
    third = await page(first=2, after=second["pageInfo"]["endCursor"])
    assert [(n["externalId"], n["status"]) for n in third["nodes"]] == [
        ("O-0", "OPEN"),
        (None, "DRAFT"),
    ]
    assert third["pageInfo"]["hasNextPage"] is False
    everything = await page(canceled=True)
    assert [n["externalId"] for n in everything["nodes"]] == [
        "C-9",
        "O-4",
        "O-3",
        "O-2",
        "O-1",
        "O-0",
        None,
    ]
    assert everything["totalCount"] == 7
    no_drafts = await page(drafts=False)
    assert [n["externalId"] for n in no_drafts["nodes"]] == ["O-4", "O-3", "O-2", "O-1", "O-0"]
    assert no_drafts["totalCount"] == 5
    assert first["edges"][0]["cursor"] == first["pageInfo"]["startCursor"]
    for bad in ({"first": 0}, {"first": 251}, {"after": "garbage"}):
        body = await api.gql(CONTACT_ORDERS, {"id": contact_id, **bad})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", bad


async def test_order_by_id_and_node(api, http, keys):
    recorded = await record_ok(api)
    order_id = recorded["order"]["id"]
    query = "query($id: ID!) { order(id: $id) { id externalId contact { email orderCount } } }"
    found = (await api.data(query, {"id": order_id}))["order"]
    assert found == {
        "id": order_id,
        "externalId": "A-1",
        "contact": {"email": "ann@example.com", "orderCount": 1},
    }
    node = await api.data(
        "query($id: ID!) { node(id: $id) { id ... on Order { total { amount } } } }",
        {"id": order_id},
    )
    assert node["node"] == {"id": order_id, "total": {"amount": "29.90"}}
    other = Api(http, keys["OTHER"])
    assert (await other.data(query, {"id": order_id}))["order"] is None
    assert (await api.data(query, {"id": encode_id("Order", ObjectId())}))["order"] is None
    assert (await api.data(query, {"id": recorded["contact"]["id"]}))["order"] is None


async def test_an_order_outlives_its_deleted_contact(api, database):
    recorded = await record_ok(api)
    deleted = await api.data(
        "mutation($ids: [ID!]!) { contactsDelete(ids: $ids) { deletedIds } }",
        {"ids": [recorded["contact"]["id"]]},
    )
    assert deleted["contactsDelete"]["deletedIds"] == [recorded["contact"]["id"]]
    query = "query($id: ID!) { order(id: $id) { externalId contact { id } } }"
    assert (await api.data(query, {"id": recorded["order"]["id"]}))["order"] == {
        "externalId": "A-1",
        "contact": None,
    }
    # A replay of the orphaned order does not bring the contact back.
    again = await record_ok(api)
    assert again["contact"] is None
    assert await counts(database) == (1, 0)


async def test_roles_that_may_record_orders(as_role, database):
    for role in ("STAFF", "ADMIN"):
        result = await record_ok(as_role(role), external_id=f"R-{role}")
        assert result["order"]["externalId"] == f"R-{role}"
    # INGEST reads back what it may: the order's own fields and the contact's id.
    ingest = await as_role("INGEST").data(
        "mutation($input: OrderInput!) { orderRecord(input: $input) {"
        " order { externalId status } contact { id } userErrors { code } } }",
        {"input": order_input(external_id="R-INGEST")},
    )
    assert ingest["orderRecord"]["order"] == {"externalId": "R-INGEST", "status": "OPEN"}
    assert ingest["orderRecord"]["contact"]["id"] and ingest["orderRecord"]["userErrors"] == []
    for role in ("READER", "PUBLIC"):
        body = await as_role(role).gql(RECORD, {"input": order_input(external_id=f"R-{role}")})
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # INGEST records orders and nothing else.
    body = await as_role("INGEST").gql("{ contacts(first: 1) { nodes { id } } }")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await database.orders.count_documents({"shopId": SHOP}) == 3


# ---------------------------------------------------------------- cost


async def _contacts_with_orders(database, n: int) -> None:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    docs = [
        new_contact(
            SHOP,
            f"p{i}@example.com",
            f"p{i}@example.com",
            "LEAD",
            {},
            now - dt.timedelta(seconds=i),
            entries=[activity.entry("CONTACT_CREATED", at=now)],
        )
        for i in range(n)
    ]
    await database.contacts.insert_many(docs)
    await seed_orders(database, SHOP, docs, 3, random.Random(7))


PAGE = """
query($n: Int!) {
  contacts(first: $n) { nodes { email orders(first: 5) { nodes { total { amount } } } } }
}
"""


async def test_a_page_of_contacts_with_orders_costs_the_same_for_5_and_50(api, database, commands):
    # More than 101 contacts: a page past the driver's default first batch must not add a getMore.
    await _contacts_with_orders(database, 110)
    await api.data("{ __typename }")  # the key's first request also opens its cost bucket
    measured = {}
    for n in (5, 50, 110):
        commands.reset()
        data = await api.data(PAGE, {"n": n})
        measured[n] = list(commands.names)
        nodes = data["contacts"]["nodes"]
        assert len(nodes) == n
        assert all(1 <= len(c["orders"]["nodes"]) <= 5 for c in nodes)
    commands.reset()
    await api.data("{ __typename }")
    baseline = commands.count  # what authenticating a request costs
    print(
        f"contacts+orders page: {len(measured[5])} commands (first 5), "
        f"{len(measured[50])} (first 50), {len(measured[110])} (first 110); auth {baseline}"
    )
    assert measured[5] == measured[50] == measured[110]
    assert len(measured[50]) - baseline <= 3
    assert measured[50].count("aggregate") == 1


async def test_recording_an_order_is_one_transaction_of_a_few_commands(api, database, commands):
    await record_ok(api, external_id="W-0", email="warm@example.com")  # the shop gets its currency
    commands.reset()
    await api.data("{ __typename }")
    auth = list(commands.calls)
    sent = {}
    for label, email, external_id in (
        ("new contact", "new@example.com", "N-1"),
        ("known contact", "new@example.com", "N-2"),
        ("replay", "new@example.com", "N-2"),
    ):
        commands.reset()
        await record_ok(
            api,
            external_id=external_id,
            email=email,
            placedAt=at(1 if external_id == "N-2" else 0),
            firstName="Nia",
        )
        assert commands.calls[: len(auth)] == auth
        sent[label] = commands.calls[len(auth) :]
    print(f"commands per recorded order (auth {len(auth)} not included): {sent}")
    look_ups = [("find", "orders"), ("find", "contacts")]
    commit = ("commitTransaction", 1)
    # A new contact is counted and announced (CONTACT_CREATED) in the same transaction.
    counted_and_announced = [
        ("insert", "contact_counts"),
        ("insert", "events"),
        ("find", "webhook_endpoints"),
    ]
    assert sent["new contact"] == [
        *look_ups,
        ("insert", "orders"),
        ("insert", "contacts"),
        *counted_and_announced,
        commit,
    ]
    # The contact as written is not read back in the transaction: the answer reads it after.
    answer = ("find", "contacts")
    assert sent["known contact"] == [
        *look_ups,
        ("insert", "orders"),
        ("update", "contacts"),
        commit,
        answer,
    ]
    assert sent["replay"] == [("find", "orders"), commit, answer]


# ---------------------------------------------------------------- seeding


async def test_seeded_orders_and_statistics_agree(database):
    await ensure_shop(database, SHOP)
    written = await seed_shop(database, SHOP, 30, orders_per_contact=4)
    assert (written.contacts, written.orders, written.skipped) == (30, 120, 0)
    assert await database.orders.count_documents({"shopId": SHOP}) == 120
    assert (await database.shops.find_one({"_id": SHOP}))["currency"] == "EUR"
    derived = {
        row["_id"]: row
        for row in await (
            await database.orders.aggregate(
                [
                    {"$match": {"shopId": SHOP, "status": {"$in": ["OPEN", "FULFILLED"]}}},
                    {
                        "$group": {
                            "_id": "$contactId",
                            "n": {"$sum": 1},
                            "sum": {"$sum": "$total"},
                            "first": {"$min": "$placedAt"},
                            "last": {"$max": "$placedAt"},
                        }
                    },
                ]
            )
        ).to_list()
    }
    async for contact in database.contacts.find({"shopId": SHOP}):
        row = derived.get(
            contact["_id"], {"n": 0, "sum": Decimal128("0"), "first": None, "last": None}
        )
        assert contact["kind"] == "CUSTOMER"
        assert contact["orderCount"] == row["n"]
        assert contact["totalSpent"].to_decimal() == row["sum"].to_decimal()
        assert (contact["firstOrderAt"], contact["lastOrderAt"]) == (row["first"], row["last"])
        assert contact["activityCount"] == len(contact["activity"]) >= 5


async def test_several_orders_in_one_request_each_see_the_history_so_far(api):
    query = """
    fragment History on OrderPayload {
      contact { orderCount orders { totalCount nodes { externalId } } }
    }
    mutation($a: OrderInput!, $b: OrderInput!) {
      a: orderRecord(input: $a) { ...History }
      b: orderRecord(input: $b) { ...History }
    }
    """
    data = await api.data(query, {"a": order_input("M-1"), "b": order_input("M-2", placedAt=at(1))})
    assert data["a"]["contact"]["orders"] == {"totalCount": 1, "nodes": [{"externalId": "M-1"}]}
    assert data["b"]["contact"]["orderCount"] == 2
    assert data["b"]["contact"]["orders"] == {
        "totalCount": 2,
        "nodes": [{"externalId": "M-2"}, {"externalId": "M-1"}],
    }
