"""How an order is stored and shown in its contact's log, to the field.

tests/test_orders.py reads orders back through the API; these pin the
stored shape underneath: money as exact Decimal128 (never a float, never
rounded), the shop's own id as a string and a draft's as its own ObjectId
(never shown as the shop's), the order's label in the log, and the entries a
reported order logs.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from conftest import SHOP

from resolvers import activity
from resolvers.order_docs import (
    d128,
    decimal,
    draft_doc,
    money_fields,
    order_doc,
    order_label,
    placed_entries,
    shop_external_id,
)
from resolvers.order_input import Amounts, CheckedDraft, CheckedOrder

PLACED = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
AT = dt.datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=dt.UTC)
SHOP_TIME = dt.datetime(2026, 1, 5, 9, 1, tzinfo=dt.UTC)
ADDRESS = {"line1": "1 Main St", "city": "Springfield"}
BILLING = {"line1": "2 Side St", "city": "Shelbyville"}

MUG = {"title": "Mug", "sku": "MUG-1", "quantity": 3, "unitPrice": Decimal("0.10"),
       "total": Decimal("0.30"), "requiresShipping": True}  # fmt: skip
CARD = {"title": "Gift card", "sku": None, "quantity": 1, "unitPrice": Decimal("19.99"),
        "total": Decimal("19.99"), "requiresShipping": False}  # fmt: skip


def amounts(currency: str | None = "EUR") -> Amounts:
    return Amounts(
        currency=currency,
        lines=[MUG, CARD],
        subtotal=Decimal("20.29"),
        shipping=Decimal("4.90"),
        tax=Decimal("3.86"),
        discount=Decimal("2.00"),
        total=Decimal("27.05"),
    )


STORED_MONEY = {
    "currency": "EUR",
    "subtotal": Decimal128("20.29"),
    "shipping": Decimal128("4.90"),
    "tax": Decimal128("3.86"),
    "discount": Decimal128("2.00"),
    "total": Decimal128("27.05"),
    "lineItems": [
        {**MUG, "unitPrice": Decimal128("0.10"), "total": Decimal128("0.30")},
        {**CARD, "unitPrice": Decimal128("19.99"), "total": Decimal128("19.99")},
    ],
}


def checked(**changes: Any) -> CheckedOrder:
    fields: dict[str, Any] = {
        "external_id": "A-1001",
        "email": "Ann@Example.com",
        "email_key": "ann@example.com",
        "status": "OPEN",
        "number": "#1001",
        "first_name": "Ann",
        "last_name": "Lee",
        "phone": "+15551234567",
        "placed_at": PLACED,
        "amounts": amounts(),
        "refunded": Decimal("1.50"),
        "shipping_address": ADDRESS,
        "billing_address": BILLING,
        "accepts_marketing": True,
        "has_account": False,
        "updated_at": SHOP_TIME,
    }
    return CheckedOrder(**{**fields, **changes})


# -- money -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0", "0.00", "19.99", "-19.99", "1234567890123.4567", "1E+3"])
def test_money_is_stored_as_the_exact_decimal(text):
    stored = d128(Decimal(text))
    assert stored == Decimal128(text) and str(stored) == text
    assert decimal(stored) == Decimal(text) and str(decimal(stored)) == text


@pytest.mark.parametrize(
    ("value", "read"),
    [
        (Decimal128("2.50"), "2.50"),
        (Decimal("2.50"), "2.50"),
        ("2.50", "2.50"),
        (7, "7"),
        (None, "0"),
        (0, "0"),
    ],
)
def test_stored_money_reads_as_a_decimal_and_nothing_as_zero(value, read):
    got = decimal(value)
    assert isinstance(got, Decimal) and str(got) == read


def test_the_money_fields_are_decimals_and_the_refund_is_kept():
    assert money_fields(amounts(), Decimal("1.50")) == {
        **STORED_MONEY,
        "refunded": Decimal128("1.50"),
    }


# -- a reported order ---------------------------------------------------------------


def test_a_reported_order_is_stored_with_the_shops_id_and_times():
    contact_id = ObjectId()
    doc = order_doc(SHOP, checked(), contact_id, AT)
    assert isinstance(doc["_id"], ObjectId)
    assert doc == {
        "_id": doc["_id"],
        "shopId": SHOP,
        "externalId": "A-1001",
        "number": "#1001",
        "status": "OPEN",
        "email": "Ann@Example.com",
        "emailKey": "ann@example.com",
        "contactId": contact_id,
        "firstName": "Ann",
        "lastName": "Lee",
        "phone": "+15551234567",
        "placedAt": PLACED,
        "createdAt": AT,
        "updatedAt": AT,
        **STORED_MONEY,
        "refunded": Decimal128("1.50"),
        "shippingAddress": ADDRESS,
        "billingAddress": BILLING,
        "acceptsMarketing": True,
        "hasAccount": False,
        "shopUpdatedAt": SHOP_TIME,
    }


def test_a_reported_order_without_a_refund_has_refunded_nothing():
    doc = order_doc(SHOP, checked(refunded=None, updated_at=None), ObjectId(), AT)
    assert doc["refunded"] == Decimal128("0")
    assert doc["shopUpdatedAt"] is None
    assert order_doc(SHOP, checked(), ObjectId(), AT)["_id"] != doc["_id"]


# -- a draft ------------------------------------------------------------------------


def test_a_draft_carries_the_contacts_details_and_its_own_id_as_its_key():
    contact = {
        "_id": ObjectId(),
        "email": "Ann@Example.com",
        "emailKey": "ann@example.com",
        "firstName": "Ann",
        "lastName": "Lee",
        "phone": "+15551234567",
    }
    doc = draft_doc(SHOP, contact, CheckedDraft(amounts(), None, ADDRESS), "Sam Staff", AT)
    assert isinstance(doc["_id"], ObjectId)
    assert doc == {
        "_id": doc["_id"],
        "shopId": SHOP,
        "externalId": doc["_id"],
        "number": None,
        "status": "DRAFT",
        "email": "Ann@Example.com",
        "emailKey": "ann@example.com",
        "contactId": contact["_id"],
        "firstName": "Ann",
        "lastName": "Lee",
        "phone": "+15551234567",
        "placedAt": None,
        "createdAt": AT,
        "updatedAt": AT,
        **STORED_MONEY,
        "refunded": Decimal128("0"),
        "shippingAddress": ADDRESS,
        "billingAddress": None,
        "acceptsMarketing": None,
        "hasAccount": None,
        "createdBy": "Sam Staff",
    }


def test_a_draft_for_a_contact_without_a_name_or_phone_has_none():
    contact = {"_id": ObjectId(), "email": "a@example.com", "emailKey": "a@example.com"}
    doc = draft_doc(SHOP, contact, CheckedDraft(amounts(), "EUR", None), "Sam Staff", AT)
    assert (doc["firstName"], doc["lastName"], doc["phone"]) == (None, None, None)
    assert doc["shippingAddress"] is None


@pytest.mark.parametrize(
    ("external_id", "shown"),
    [("A-1001", "A-1001"), ("", ""), (ObjectId(), None), (None, None)],
)
def test_only_a_string_key_is_the_shops_own_id(external_id, shown):
    assert shop_external_id({"externalId": external_id}) == shown
    assert shop_external_id({}) is None


# -- the log --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "label"),
    [
        ({"number": "#1001", "externalId": "A-1001", "total": Decimal128("27.05"), "currency": "EUR"},
         "Order #1001: 27.05 EUR"),
        ({"number": None, "externalId": "A-1001", "total": Decimal128("27.05"), "currency": "EUR"},
         "Order A-1001: 27.05 EUR"),
        ({"number": "", "externalId": ObjectId(), "total": Decimal128("0.50"), "currency": "USD"},
         "Order draft: 0.50 USD"),
        ({"externalId": "A-7", "total": Decimal128("3"), "currency": None}, "Order A-7: 3"),
        ({"externalId": "A-7", "total": Decimal128("-3.00")}, "Order A-7: -3.00"),
    ],
)  # fmt: skip
def test_an_order_is_labelled_by_its_number_else_the_shops_id_with_its_total(order, label):
    assert order_label(order) == label


def test_a_reported_order_logs_its_placement_at_its_placement_time():
    doc = order_doc(SHOP, checked(), ObjectId(), AT)
    [placed] = placed_entries(doc)
    assert placed == {
        "_id": placed["_id"],
        "kind": "ORDER_PLACED",
        "at": PLACED,
        "text": "Order #1001: 27.05 EUR",
        "orderId": doc["_id"],
    }


def test_an_order_reported_canceled_logs_its_placement_then_its_cancel_now(monkeypatch):
    monkeypatch.setattr(activity, "now", lambda: AT)
    doc = order_doc(SHOP, checked(status="CANCELED", number=None), ObjectId(), AT)
    placed, canceled = placed_entries(doc)
    assert placed == {
        "_id": placed["_id"],
        "kind": "ORDER_PLACED",
        "at": PLACED,
        "text": "Order A-1001: 27.05 EUR",
        "orderId": doc["_id"],
    }
    assert canceled == {
        "_id": canceled["_id"],
        "kind": "ORDER_CANCELED",
        "at": AT,
        "text": "Order A-1001: 27.05 EUR",
        "orderId": doc["_id"],
    }
    assert placed["_id"] != canceled["_id"]


@pytest.mark.parametrize("status", ["OPEN", "FULFILLED"])
def test_an_order_reported_open_or_fulfilled_logs_no_cancel(status):
    assert [
        e["kind"] for e in placed_entries(order_doc(SHOP, checked(status=status), ObjectId(), AT))
    ] == ["ORDER_PLACED"]
