"""What a shop reports about a subscription, checked to the edge: the exact problems and bounds.

tests/test_subscription_contracts.py tells the story of subscriptionRecord
through the API; these pin the rules themselves: every problem's field,
message and code, each bound on both sides, and the exact values a checked
subscription carries into storage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from resolvers.errors import Refused
from resolvers.subscription_input import SubscriptionData, check_subscription

AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
LATEST = AT + dt.timedelta(minutes=5)  # the clock drift a shop is allowed
MS = dt.timedelta(milliseconds=1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
TEN_YEARS = dt.timedelta(days=3660)
STARTED = AT - dt.timedelta(days=30)


def subscription(**changes: Any) -> SubscriptionData:
    data = SubscriptionData(
        external_id="sub-1",
        email="Ann@Example.com",
        status="ACTIVE",
        title="Coffee club",
        price=Decimal("9.90"),
        currency_code="EUR",
        interval="MONTH",
        started_at=STARTED,
    )
    return dataclasses.replace(data, **changes)


def refused(**changes: Any) -> list[tuple[Any, str, str]]:
    with pytest.raises(Refused) as refusal:
        check_subscription(subscription(**changes), AT)
    return [(p.field, p.message, p.code) for p in refusal.value.problems]


def accepted(**changes: Any) -> Any:
    return check_subscription(subscription(**changes), AT)


def test_a_checked_subscription_carries_exactly_what_the_shop_sent():
    next_billing = AT + dt.timedelta(days=3)
    ended = AT - dt.timedelta(days=1)
    changed = AT - dt.timedelta(hours=1)

    checked = accepted(
        external_id="  sub-1  ",
        email=" Ann@Example.com ",
        first_name=" Ann ",
        last_name="Lee",
        kind="MEMBERSHIP",
        status="CANCELED",
        title=" Coffee club ",
        quantity=3,
        price=Decimal("9.90"),
        currency_code="USD",
        interval="WEEK",
        interval_count=2,
        next_billing_at=next_billing,
        ended_at=ended,
        updated_at=changed,
    )

    assert dataclasses.asdict(checked) == {
        "external_id": "sub-1",
        "email": "Ann@example.com",
        "email_key": "ann@example.com",
        "first_name": "Ann",
        "last_name": "Lee",
        "kind": "MEMBERSHIP",
        "status": "CANCELED",
        "title": "Coffee club",
        "quantity": 3,
        "price": Decimal("9.90"),
        "currency": "USD",
        "interval": "WEEK",
        "interval_count": 2,
        "started_at": STARTED,
        "next_billing_at": next_billing,
        "ended_at": ended,
        "updated_at": changed,
    }


def test_what_the_shop_leaves_out_takes_its_default_or_is_stored_as_nothing():
    checked = accepted(kind=None, quantity=None, interval_count=None)

    assert (checked.kind, checked.quantity, checked.interval_count) == ("PRODUCT", 1, 1)
    assert (checked.first_name, checked.last_name) == (None, None)
    assert (checked.next_billing_at, checked.ended_at, checked.updated_at) == (None, None, None)


def test_an_empty_kind_is_a_product():
    assert accepted(kind="").kind == "PRODUCT"


def test_times_are_kept_to_the_millisecond_as_the_database_stores_them():
    def fine(moment: dt.datetime) -> dt.datetime:
        return moment.replace(microsecond=123_456)

    checked = accepted(
        status="EXPIRED",
        started_at=fine(STARTED),
        next_billing_at=fine(AT + dt.timedelta(days=1)),
        ended_at=fine(AT - dt.timedelta(days=1)),
        updated_at=fine(AT - dt.timedelta(days=1)),
    )

    assert checked.started_at == STARTED.replace(microsecond=123_000)
    assert checked.next_billing_at == (AT + dt.timedelta(days=1)).replace(microsecond=123_000)
    assert checked.ended_at == (AT - dt.timedelta(days=1)).replace(microsecond=123_000)
    assert checked.updated_at == (AT - dt.timedelta(days=1)).replace(microsecond=123_000)


@pytest.mark.parametrize("kind", ["PRODUCT", "MEMBERSHIP"])
def test_each_kind_is_accepted(kind):
    assert accepted(kind=kind).kind == kind


@pytest.mark.parametrize("status", ["ACTIVE", "PAUSED", "PAST_DUE", "CANCELED", "EXPIRED"])
def test_each_status_is_accepted(status):
    assert accepted(status=status).status == status


@pytest.mark.parametrize("interval", ["DAY", "WEEK", "MONTH", "YEAR"])
def test_each_interval_is_accepted(interval):
    assert accepted(interval=interval).interval == interval


def test_every_problem_is_reported_at_once():
    problems = refused(
        external_id=" ",
        email=None,
        first_name="a" * 201,
        last_name="b" * 201,
        kind="GIFT",
        status=None,
        interval=None,
        title=None,
        quantity=0,
        interval_count=366,
        price=None,
        currency_code=None,
        started_at=None,
        updated_at=LATEST + MS,
    )

    assert problems == [
        (("input", "externalId"), "External id is required.", "REQUIRED"),
        (("input", "email"), "Email is required.", "REQUIRED"),
        (("input", "firstName"), "First name is longer than 200 characters.", "TOO_LONG"),
        (("input", "lastName"), "Last name is longer than 200 characters.", "TOO_LONG"),
        (("input", "kind"), "kind must be one of PRODUCT, MEMBERSHIP.", "INVALID"),
        (("input", "status"), "status is required.", "REQUIRED"),
        (("input", "interval"), "interval is required.", "REQUIRED"),
        (("input", "title"), "Title is required.", "REQUIRED"),
        (("input", "quantity"), "Quantity must be between 1 and 10000.", "INVALID"),
        (
            ("input", "intervalCount"),
            "Interval count must be between 1 and 365.",
            "INVALID",
        ),
        (("input", "price"), "Price is required.", "REQUIRED"),
        (("input", "currencyCode"), "Currency code is required.", "REQUIRED"),
        (("input", "startedAt"), "startedAt is required.", "REQUIRED"),
        (("input", "updatedAt"), "A subscription cannot be changed in the future.", "INVALID"),
    ]


def test_an_unknown_status_and_interval_are_named_with_the_choices():
    assert refused(status="active", interval="FORTNIGHT") == [
        (
            ("input", "status"),
            "status must be one of ACTIVE, PAUSED, PAST_DUE, CANCELED, EXPIRED.",
            "INVALID",
        ),
        (("input", "interval"), "interval must be one of DAY, WEEK, MONTH, YEAR.", "INVALID"),
    ]


def test_an_external_id_and_an_email_are_checked_as_in_an_order():
    assert accepted(external_id="e" * 200).external_id == "e" * 200
    assert refused(external_id="e" * 201, email="not-an-address") == [
        (("input", "externalId"), "External id is longer than 200 characters.", "TOO_LONG"),
        (
            ("input", "email"),
            "Email is not valid: An email address must have an @-sign.",
            "INVALID",
        ),
    ]


def test_names_have_their_limits():
    checked = accepted(first_name="a" * 200, last_name="b" * 200)

    assert (checked.first_name, checked.last_name) == ("a" * 200, "b" * 200)


def test_a_title_has_up_to_500_characters():
    assert accepted(title="t" * 500).title == "t" * 500
    assert refused(title="t" * 501) == [
        (("input", "title"), "Title is longer than 500 characters.", "TOO_LONG")
    ]


def test_a_blank_title_is_missing():
    assert refused(title="   ") == [(("input", "title"), "Title is required.", "REQUIRED")]


@pytest.mark.parametrize("quantity", [1, 10_000])
def test_a_quantity_from_one_to_ten_thousand_is_accepted(quantity):
    assert accepted(quantity=quantity).quantity == quantity


@pytest.mark.parametrize("quantity", [0, -1, 10_001, True])
def test_a_quantity_outside_its_bounds_is_refused(quantity):
    assert refused(quantity=quantity) == [
        (("input", "quantity"), "Quantity must be between 1 and 10000.", "INVALID")
    ]


@pytest.mark.parametrize("count", [1, 365])
def test_an_interval_count_from_one_to_365_is_accepted(count):
    assert accepted(interval_count=count).interval_count == count


@pytest.mark.parametrize("count", [0, 366, False])
def test_an_interval_count_outside_its_bounds_is_refused(count):
    assert refused(interval_count=count) == [
        (("input", "intervalCount"), "Interval count must be between 1 and 365.", "INVALID")
    ]


def test_the_smallest_price_is_accepted():
    assert accepted(price=Decimal("0.0001")).price == Decimal("0.0001")


def test_a_free_subscription_is_refused():
    assert refused(price=Decimal("0")) == [
        (("input", "price"), "Price must be greater than zero.", "INVALID")
    ]


def test_a_price_is_checked_as_money():
    assert refused(price=Decimal("-1")) == [
        (("input", "price"), "Price must not be negative.", "INVALID")
    ]


@pytest.mark.parametrize("code", ["eur", "EURO"])
def test_a_currency_is_three_capital_letters(code):
    assert refused(currency_code=code) == [
        (
            ("input", "currencyCode"),
            "Currency code must be three upper-case letters (ISO 4217), e.g. EUR.",
            "INVALID",
        )
    ]


def test_a_subscription_may_start_up_to_five_minutes_ahead_of_the_clock():
    assert accepted(started_at=LATEST).started_at == LATEST
    assert refused(started_at=LATEST + MS) == [
        (("input", "startedAt"), "A subscription cannot start in the future.", "INVALID")
    ]


def test_a_subscription_may_start_at_the_epoch_but_not_before():
    assert accepted(started_at=EPOCH).started_at == EPOCH
    assert refused(started_at=EPOCH - MS) == [
        (("input", "startedAt"), "startedAt is before 1970.", "INVALID")
    ]


def test_a_refused_start_is_not_compared_with_the_other_times():
    future = LATEST + dt.timedelta(days=1)
    ancient = EPOCH - dt.timedelta(days=1)

    assert refused(started_at=future, next_billing_at=AT, status="CANCELED", ended_at=AT) == [
        (("input", "startedAt"), "A subscription cannot start in the future.", "INVALID")
    ]
    assert refused(
        started_at=ancient,
        next_billing_at=ancient - dt.timedelta(days=1),
        status="CANCELED",
        ended_at=ancient - dt.timedelta(days=1),
    ) == [(("input", "startedAt"), "startedAt is before 1970.", "INVALID")]


def test_a_missing_start_is_not_compared_with_the_other_times():
    assert refused(started_at=None, next_billing_at=AT, status="EXPIRED", ended_at=AT) == [
        (("input", "startedAt"), "startedAt is required.", "REQUIRED")
    ]


def test_the_next_billing_may_be_ten_years_ahead_but_not_more():
    assert accepted(next_billing_at=AT + TEN_YEARS).next_billing_at == AT + TEN_YEARS
    assert refused(next_billing_at=AT + TEN_YEARS + MS) == [
        (("input", "nextBillingAt"), "nextBillingAt is more than 10 years ahead.", "INVALID")
    ]


def test_a_next_billing_far_ahead_is_not_also_compared_with_the_start():
    assert refused(started_at=LATEST + MS, next_billing_at=AT + TEN_YEARS + MS) == [
        (("input", "startedAt"), "A subscription cannot start in the future.", "INVALID"),
        (("input", "nextBillingAt"), "nextBillingAt is more than 10 years ahead.", "INVALID"),
    ]


def test_the_next_billing_may_be_at_the_start_but_not_before():
    assert accepted(next_billing_at=STARTED).next_billing_at == STARTED
    assert refused(next_billing_at=STARTED - MS) == [
        (
            ("input", "nextBillingAt"),
            "nextBillingAt is before the subscription started.",
            "INVALID",
        )
    ]


@pytest.mark.parametrize("status", ["ACTIVE", "PAUSED", "PAST_DUE"])
def test_only_an_ended_subscription_has_an_end(status):
    assert refused(status=status, ended_at=AT) == [
        (
            ("input", "endedAt"),
            "Only a CANCELED or EXPIRED subscription has ended: leave endedAt out.",
            "INVALID",
        )
    ]


@pytest.mark.parametrize("status", ["CANCELED", "EXPIRED"])
def test_an_ended_subscription_keeps_its_end(status):
    assert accepted(status=status, ended_at=AT).ended_at == AT


def test_an_end_is_not_judged_against_a_missing_or_unknown_status():
    assert refused(status=None, ended_at=AT) == [
        (("input", "status"), "status is required.", "REQUIRED")
    ]
    assert [field for field, _, _ in refused(status="ENDED", ended_at=AT)] == [("input", "status")]


def test_a_subscription_may_end_up_to_five_minutes_ahead_of_the_clock():
    assert accepted(status="CANCELED", ended_at=LATEST).ended_at == LATEST
    assert refused(status="CANCELED", ended_at=LATEST + MS) == [
        (("input", "endedAt"), "A subscription cannot end in the future.", "INVALID")
    ]


def test_a_subscription_may_end_when_it_started_but_not_before():
    assert accepted(status="EXPIRED", ended_at=STARTED).ended_at == STARTED
    assert refused(status="EXPIRED", ended_at=STARTED - MS) == [
        (("input", "endedAt"), "endedAt is before the subscription started.", "INVALID")
    ]


def test_a_change_may_be_dated_up_to_five_minutes_ahead_of_the_clock():
    assert accepted(updated_at=LATEST).updated_at == LATEST
    # Compared as sent: a microsecond late is late, though only milliseconds are stored.
    assert refused(updated_at=LATEST + dt.timedelta(microseconds=1)) == [
        (("input", "updatedAt"), "A subscription cannot be changed in the future.", "INVALID")
    ]
