"""What a shop reports about an order, checked to the edge: the exact problems, bounds and amounts.

tests/test_orders.py tells the story of orderRecord and drafts through the
API; these pin the rules themselves: every problem's field, message and
code, each bound on both sides, and the exact amounts a checked order
carries into storage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from resolvers.errors import Refused
from resolvers.order_input import (
    DraftData,
    LineItemData,
    OrderData,
    check_draft,
    check_order,
)

AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
FIVE_MINUTES = dt.timedelta(minutes=5)
TICK = dt.timedelta(microseconds=1)


def line(title: str | None = "Mug", quantity: Any = 1, price: str | None = "10", **more: Any):
    return LineItemData(title, quantity, None if price is None else Decimal(price), **more)


def order(**changes: Any) -> OrderData:
    data = OrderData(
        external_id="ext-1", email="Ann@Example.com", currency_code="EUR", line_items=[line()]
    )
    return dataclasses.replace(data, **changes)


def draft(**changes: Any) -> DraftData:
    return dataclasses.replace(DraftData(line_items=[line()]), **changes)


def refused(call: Any, data: Any, *args: Any) -> list[tuple[Any, str, str]]:
    with pytest.raises(Refused) as refusal:
        call(data, *args)
    return [(p.field, p.message, p.code) for p in refusal.value.problems]


def test_a_checked_order_carries_exact_lines_and_totals():
    checked = check_order(
        order(
            external_id="  ext-1  ",
            number=" #1001 ",
            line_items=[
                line("Mug", 3, "2.35", sku="MUG-1"),
                line("E-book", 1, "0.10", requires_shipping=False),
            ],
            shipping=Decimal("4.90"),
            tax=Decimal("1.25"),
            discount=Decimal("0.60"),
        ),
        AT,
    )

    assert (checked.external_id, checked.number, checked.status) == ("ext-1", "#1001", "OPEN")
    assert (checked.email, checked.email_key) == ("Ann@example.com", "ann@example.com")
    assert checked.placed_at == AT
    amounts = checked.amounts
    assert amounts.lines == [
        {
            "title": "Mug",
            "sku": "MUG-1",
            "quantity": 3,
            "unitPrice": Decimal("2.35"),
            "total": Decimal("7.05"),
            "requiresShipping": True,
        },
        {
            "title": "E-book",
            "sku": None,
            "quantity": 1,
            "unitPrice": Decimal("0.10"),
            "total": Decimal("0.10"),
            "requiresShipping": False,
        },
    ]
    assert (amounts.currency, amounts.subtotal) == ("EUR", Decimal("7.15"))
    assert (amounts.shipping, amounts.tax, amounts.discount) == (
        Decimal("4.90"),
        Decimal("1.25"),
        Decimal("0.60"),
    )
    assert str(amounts.total) == "12.70"
    assert amounts.ships is True


def test_what_the_shop_leaves_out_is_stored_as_nothing():
    checked = check_order(order(shipping=None, tax=None, discount=None, status=None), AT)

    assert checked.status == "OPEN"
    assert (checked.amounts.shipping, checked.amounts.tax, checked.amounts.discount) == (0, 0, 0)
    assert checked.amounts.total == Decimal("10")
    assert (checked.number, checked.first_name, checked.last_name, checked.phone) == (
        None,
        None,
        None,
        None,
    )
    assert (checked.refunded, checked.shipping_address, checked.billing_address) == (
        None,
        None,
        None,
    )
    assert (checked.accepts_marketing, checked.has_account, checked.updated_at) == (
        False,
        None,
        None,
    )


def test_the_shops_own_answers_are_kept():
    placed = AT - dt.timedelta(days=2)
    changed = AT - dt.timedelta(days=1)

    checked = check_order(
        order(
            status="FULFILLED",
            first_name=" Ann ",
            last_name="Lee",
            placed_at=placed,
            updated_at=changed,
            accepts_marketing=True,
            has_account=False,
            refunded=Decimal("10"),
            shipping_address={"line1": "Main St 1", "countryCode": "de"},
            billing_address={"city": "Berlin"},
        ),
        AT,
    )

    assert (checked.status, checked.first_name, checked.last_name) == ("FULFILLED", "Ann", "Lee")
    assert (checked.placed_at, checked.updated_at) == (placed, changed)
    assert (checked.accepts_marketing, checked.has_account) == (True, False)
    assert checked.refunded == Decimal("10")  # the whole order back is allowed
    assert checked.shipping_address == {"line1": "Main St 1", "countryCode": "DE"}
    assert checked.billing_address == {"city": "Berlin"}


@pytest.mark.parametrize("status", ["OPEN", "FULFILLED", "CANCELED"])
def test_an_order_may_be_reported_in_each_recordable_status(status):
    assert check_order(order(status=status), AT).status == status


def test_a_draft_status_is_refused_in_a_report():
    assert refused(check_order, order(status="DRAFT"), AT) == [
        (("input", "status"), "Draft orders are made with draftOrderCreate.", "INVALID")
    ]


def test_a_total_equal_in_value_keeps_the_shops_spelling():
    checked = check_order(order(line_items=[line(price="10.5")], total=Decimal("10.50")), AT)

    assert str(checked.amounts.total) == "10.50"


def test_a_total_that_does_not_add_up_is_refused_with_both_numbers():
    data = order(
        line_items=[line(quantity=2, price="10")], shipping=Decimal("5"), total=Decimal("24.99")
    )

    assert refused(check_order, data, AT) == [
        (
            ("input", "total"),
            "Total 24.99 does not equal lines + shipping + tax - discount (25).",
            "INVALID",
        )
    ]


def test_a_refund_beyond_the_total_is_refused():
    assert refused(check_order, order(refunded=Decimal("10.0001")), AT) == [
        (("input", "refunded"), "Refunded amount is larger than the order total.", "INVALID")
    ]


def test_bad_amounts_are_named_and_not_compared_with_each_other():
    data = order(line_items=[line(price="-1")], total=Decimal("3"), refunded=Decimal("1000"))

    assert refused(check_order, data, AT) == [
        (("input", "lineItems", 0, "unitPrice"), "Unit price must not be negative.", "INVALID")
    ]


def test_other_problems_do_not_hide_a_total_that_does_not_add_up():
    data = order(email="not-an-address", total=Decimal("11"), refunded=Decimal("12"))

    assert [(f, c) for f, _, c in refused(check_order, data, AT)] == [
        (("input", "email"), "INVALID"),
        (("input", "total"), "INVALID"),
        (("input", "refunded"), "INVALID"),
    ]


def test_every_problem_is_reported_at_once():
    data = OrderData(
        external_id=" ",
        email=None,
        currency_code=None,
        line_items=[],
        number="n" * 101,
        first_name="a" * 201,
        last_name="b" * 201,
        phone="12",
        shipping=Decimal("-1"),
        tax=Decimal("NaN"),
        discount=Decimal("0.00001"),
        total=Decimal("1e12"),
        refunded=Decimal("-2"),
    )

    assert refused(check_order, data, AT) == [
        (("input", "externalId"), "External id is required.", "REQUIRED"),
        (("input", "number"), "Number is longer than 100 characters.", "TOO_LONG"),
        (("input", "email"), "Email is required.", "REQUIRED"),
        (("input", "firstName"), "First name is longer than 200 characters.", "TOO_LONG"),
        (("input", "lastName"), "Last name is longer than 200 characters.", "TOO_LONG"),
        (("input", "phone"), "Phone number is not valid.", "INVALID"),
        (("input", "currencyCode"), "Currency code is required.", "REQUIRED"),
        (("input", "lineItems"), "An order needs at least one line item.", "REQUIRED"),
        (("input", "shipping"), "Shipping must not be negative.", "INVALID"),
        (("input", "tax"), "Tax must be a finite amount.", "INVALID"),
        (("input", "discount"), "Discount has more than 4 decimal places.", "INVALID"),
        (("input", "total"), "Total is too large.", "INVALID"),
        (("input", "refunded"), "Refunded must not be negative.", "INVALID"),
    ]


def test_an_external_id_and_a_number_have_their_limits():
    assert check_order(order(external_id="e" * 200, number="n" * 100), AT).external_id == "e" * 200
    assert refused(check_order, order(external_id="e" * 201), AT) == [
        (("input", "externalId"), "External id is longer than 200 characters.", "TOO_LONG")
    ]


@pytest.mark.parametrize("code", ["eur", "EURO", "EU", "E1R"])
def test_a_currency_is_three_capital_letters(code):
    assert refused(check_order, order(currency_code=code), AT) == [
        (
            ("input", "currencyCode"),
            "Currency code must be three upper-case letters (ISO 4217), e.g. EUR.",
            "INVALID",
        )
    ]


def test_an_order_may_be_placed_up_to_five_minutes_ahead_of_the_clock():
    assert check_order(order(placed_at=AT + FIVE_MINUTES), AT).placed_at == AT + FIVE_MINUTES
    assert refused(check_order, order(placed_at=AT + FIVE_MINUTES + TICK), AT) == [
        (("input", "placedAt"), "An order cannot be placed in the future.", "INVALID")
    ]


def test_an_order_may_be_changed_up_to_five_minutes_ahead_of_the_clock():
    assert check_order(order(updated_at=AT + FIVE_MINUTES), AT).updated_at == AT + FIVE_MINUTES
    assert refused(check_order, order(updated_at=AT + FIVE_MINUTES + TICK), AT) == [
        (("input", "updatedAt"), "An order cannot be changed in the future.", "INVALID")
    ]


def test_without_a_time_an_order_is_placed_now_to_the_millisecond():
    before = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=1)
    placed = check_order(order()).placed_at
    assert before < placed <= dt.datetime.now(dt.UTC)
    assert placed.microsecond % 1000 == 0


def test_a_national_phone_is_read_in_the_shipping_country_first():
    both = {"shipping_address": {"countryCode": "DE"}, "billing_address": {"countryCode": "FR"}}
    billing_only = {"billing_address": {"countryCode": "FR"}}
    shipping_without_country = {
        "shipping_address": {"city": "Paris"},
        "billing_address": {"countryCode": "FR"},
    }

    assert check_order(order(phone="030 1234567", **both), AT).phone == "+49301234567"
    assert check_order(order(phone="01 23 45 67 89", **billing_only), AT).phone == "+33123456789"
    assert (
        check_order(order(phone="01 23 45 67 89", **shipping_without_country), AT).phone
        == "+33123456789"
    )
    assert refused(check_order, order(phone="030 1234567"), AT) == [
        (("input", "phone"), "Phone number is not valid.", "INVALID")
    ]


def test_an_order_holds_1_to_500_line_items():
    assert len(check_order(order(line_items=[line()] * 500), AT).amounts.lines) == 500
    # Too many lines: one problem, not one per line.
    assert refused(check_order, order(line_items=[line(title=None)] * 501), AT) == [
        (("input", "lineItems"), "An order has at most 500 line items.", "LIMIT_EXCEEDED")
    ]


@pytest.mark.parametrize("quantity", [1, 100_000])
def test_a_quantity_from_1_to_100000_is_taken(quantity):
    checked = check_order(order(line_items=[line(quantity=quantity, price="0.01")]), AT)

    assert checked.amounts.lines[0]["quantity"] == quantity
    assert checked.amounts.total == Decimal("0.01") * quantity


@pytest.mark.parametrize("quantity", [0, -1, 100_001, True])
def test_a_quantity_outside_1_to_100000_is_refused(quantity):
    assert refused(check_order, order(line_items=[line(quantity=quantity)]), AT) == [
        (("input", "lineItems", 0, "quantity"), "Quantity must be between 1 and 100000.", "INVALID")
    ]


def test_each_line_needs_a_title_a_quantity_and_a_price():
    lines = [line(), line(title=" ", quantity=None, price=None, sku="s" * 101)]

    assert refused(check_order, order(line_items=lines), AT) == [
        (("input", "lineItems", 1, "title"), "Title is required.", "REQUIRED"),
        (("input", "lineItems", 1, "sku"), "Sku is longer than 100 characters.", "TOO_LONG"),
        (("input", "lineItems", 1, "quantity"), "Quantity is required.", "REQUIRED"),
        (("input", "lineItems", 1, "unitPrice"), "Unit price is required.", "REQUIRED"),
    ]


def test_every_bad_line_is_named_not_only_the_first():
    lines = [line(price=None), line(), line(quantity=0)]

    assert [p[0] for p in refused(check_order, order(line_items=lines), AT)] == [
        ("input", "lineItems", 0, "unitPrice"),
        ("input", "lineItems", 2, "quantity"),
    ]


def test_a_title_has_its_limit():
    assert (
        check_order(order(line_items=[line("t" * 500)]), AT).amounts.lines[0]["title"] == "t" * 500
    )
    assert refused(check_order, order(line_items=[line("t" * 501)]), AT) == [
        (("input", "lineItems", 0, "title"), "Title is longer than 500 characters.", "TOO_LONG")
    ]


def test_one_bad_line_refuses_the_order_even_when_the_others_are_good():
    lines = [line(), line(title=None)]

    assert [p[0] for p in refused(check_order, order(line_items=lines), AT)] == [
        ("input", "lineItems", 1, "title")
    ]


def test_a_line_ships_unless_it_says_it_does_not():
    lines = [line(requires_shipping=None), line(requires_shipping=False)]

    checked = check_order(order(line_items=lines, total=Decimal("20")), AT)

    assert [d["requiresShipping"] for d in checked.amounts.lines] == [True, False]
    assert checked.amounts.ships is True
    only_digital = check_order(order(line_items=[line(requires_shipping=False)]), AT)
    assert only_digital.amounts.ships is False


def test_a_discount_may_take_the_whole_order_but_not_more():
    whole = order(shipping=Decimal("2"), tax=Decimal("1"), discount=Decimal("13"))
    assert check_order(whole, AT).amounts.total == 0
    assert refused(check_order, dataclasses.replace(whole, discount=Decimal("13.0001")), AT) == [
        (
            ("input", "discount"),
            "Discount is larger than the order's lines, shipping and tax.",
            "INVALID",
        )
    ]


def test_a_drafts_tax_is_part_of_its_total():
    checked = check_draft(draft(line_items=[line("Mug", 1, "10")], tax=Decimal("1.90")))

    assert (checked.amounts.tax, checked.amounts.total) == (Decimal("1.90"), Decimal("11.90"))


def test_a_draft_is_checked_like_an_order_without_a_shop_report():
    checked = check_draft(
        draft(
            line_items=[line("Mug", 2, "3.50")],
            shipping=Decimal("1"),
            tax=None,
            discount=Decimal("0.5"),
            shipping_address={"city": " Berlin ", "countryCode": "de"},
        )
    )

    assert checked.currency is None  # the shop's currency
    assert checked.amounts.currency is None
    assert (checked.amounts.subtotal, checked.amounts.tax, checked.amounts.total) == (
        Decimal("7.00"),
        0,
        Decimal("7.50"),
    )
    assert checked.shipping_address == {"city": "Berlin", "countryCode": "DE"}
    assert check_draft(draft(currency_code="USD")).currency == "USD"
    assert check_draft(draft(currency_code="USD")).amounts.currency == "USD"


def test_a_bad_draft_reports_every_problem():
    data = draft(
        currency_code="usd",
        line_items=[],
        discount=Decimal("-1"),
        shipping_address={"countryCode": "Germany"},
    )

    assert refused(check_draft, data) == [
        (
            ("input", "currencyCode"),
            "Currency code must be three upper-case letters (ISO 4217), e.g. EUR.",
            "INVALID",
        ),
        (("input", "lineItems"), "An order needs at least one line item.", "REQUIRED"),
        (("input", "discount"), "Discount must not be negative.", "INVALID"),
        (
            ("input", "shippingAddress", "countryCode"),
            "Country code is longer than 2 characters.",
            "TOO_LONG",
        ),
    ]


def test_a_bad_shipping_address_alone_refuses_a_draft():
    assert refused(check_draft, draft(shipping_address={"countryCode": "1x"})) == [
        (
            ("input", "shippingAddress", "countryCode"),
            "Country code must be two letters (ISO 3166-1).",
            "INVALID",
        )
    ]


def test_an_orders_bad_addresses_are_refused_by_their_own_names():
    data = order(shipping_address={"countryCode": "1x"}, billing_address={"countryCode": "2y"})

    assert refused(check_order, data, AT) == [
        (
            ("input", "shippingAddress", "countryCode"),
            "Country code must be two letters (ISO 3166-1).",
            "INVALID",
        ),
        (
            ("input", "billingAddress", "countryCode"),
            "Country code must be two letters (ISO 3166-1).",
            "INVALID",
        ),
    ]
