"""What a shop reports about a subscription or membership, checked: every problem at once.

The shop owns billing; contactgraph records what it is told. A report is
checked like an order report (resolvers/order_input.py): the same e-mail,
name, external id and money rules, the currency must be the shop's (settled
when recording), and times may not lie in the future beyond the clock drift
orders are allowed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from resolvers.errors import Field, Refused
from resolvers.order_input import EXTERNAL_ID_MAX, FUTURE_TOLERANCE, check_currency
from resolvers.validation import NAME_MAX, Checker

KINDS = ("PRODUCT", "MEMBERSHIP")
STATUSES = ("ACTIVE", "PAUSED", "PAST_DUE", "CANCELED", "EXPIRED")
ENDED = ("CANCELED", "EXPIRED")
# Not ended: the customer still has the subscription (`activeSubscriptionCount`).
CURRENT = ("ACTIVE", "PAUSED", "PAST_DUE")
# A member has a membership in one of these (the contract's `isMember`).
MEMBER = ("ACTIVE", "PAUSED")
INTERVALS = ("DAY", "WEEK", "MONTH", "YEAR")

TITLE_MAX = 500  # as an order line's title
QUANTITY_MAX = 10_000
INTERVAL_COUNT_MAX = 365
# No web shop sold subscriptions before the Unix epoch: an earlier start is a broken clock or a typo.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# The next charge of a long interval may be years away, but not beyond this.
NEXT_BILLING_AHEAD = dt.timedelta(days=366 * 10)


@dataclass
class SubscriptionData:
    """What the shop reports about one subscription contract, as plain values."""

    external_id: str | None
    email: str | None
    status: str | None
    title: str | None
    price: Decimal | None
    currency_code: str | None
    interval: str | None
    started_at: dt.datetime | None
    kind: str | None = "PRODUCT"
    quantity: int | None = 1
    interval_count: int | None = 1
    first_name: str | None = None
    last_name: str | None = None
    next_billing_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None  # when the shop last changed the contract


@dataclass
class CheckedSubscription:
    external_id: str
    email: str
    email_key: str
    first_name: str | None
    last_name: str | None
    kind: str
    status: str
    title: str
    quantity: int
    price: Decimal
    currency: str
    interval: str
    interval_count: int
    started_at: dt.datetime
    next_billing_at: dt.datetime | None
    ended_at: dt.datetime | None
    updated_at: dt.datetime | None


def _ms(value: dt.datetime | None) -> dt.datetime | None:
    """MongoDB keeps milliseconds: what is compared with a stored time is what it stores."""
    return None if value is None else value.replace(microsecond=value.microsecond // 1000 * 1000)


def _whole(
    check: Checker, field: Field, value: int | None, low: int, high: int, label: str
) -> int | None:
    if value is None:
        return low  # the input's default
    if isinstance(value, bool) or not low <= value <= high:
        check.add(field, f"{label} must be between {low} and {high}.", "INVALID")
        return None
    return value


def _choice(
    check: Checker, field: Field, value: str | None, options: tuple[str, ...]
) -> str | None:
    if value is None:
        check.add(field, f"{field[-1]} is required.", "REQUIRED")
        return None
    if value not in options:
        check.add(field, f"{field[-1]} must be one of {', '.join(options)}.", "INVALID")
        return None
    return value


def check_subscription(data: SubscriptionData, at: dt.datetime) -> CheckedSubscription:
    """Validate everything the shop sent; Refused with every problem at once, nothing written."""
    check = Checker()
    p: Field = ("input",)
    latest = at + FUTURE_TOLERANCE
    external_id = check.text((*p, "externalId"), data.external_id, EXTERNAL_ID_MAX, required=True)
    email = check.email((*p, "email"), data.email, required=True)
    first_name = check.text((*p, "firstName"), data.first_name, NAME_MAX)
    last_name = check.text((*p, "lastName"), data.last_name, NAME_MAX)
    kind = _choice(check, (*p, "kind"), data.kind or "PRODUCT", KINDS)
    status = _choice(check, (*p, "status"), data.status, STATUSES)
    interval = _choice(check, (*p, "interval"), data.interval, INTERVALS)
    title = check.text((*p, "title"), data.title, TITLE_MAX, required=True)
    quantity = _whole(check, (*p, "quantity"), data.quantity, 1, QUANTITY_MAX, "Quantity")
    interval_count = _whole(
        check, (*p, "intervalCount"), data.interval_count, 1, INTERVAL_COUNT_MAX, "Interval count"
    )
    price = check.money((*p, "price"), data.price, required=True)
    if price is not None and price <= 0:
        check.add((*p, "price"), "Price must be greater than zero.", "INVALID")
        price = None
    currency = check_currency(check, (*p, "currencyCode"), data.currency_code, required=True)

    started_at = _ms(data.started_at)
    if started_at is None:
        check.add((*p, "startedAt"), "startedAt is required.", "REQUIRED")
    elif started_at > latest:
        check.add((*p, "startedAt"), "A subscription cannot start in the future.", "INVALID")
        started_at = None
    elif started_at < EARLIEST:
        check.add((*p, "startedAt"), "startedAt is before 1970.", "INVALID")
        started_at = None
    next_billing_at = _ms(data.next_billing_at)
    if next_billing_at is not None:
        if next_billing_at > at + NEXT_BILLING_AHEAD:
            check.add(
                (*p, "nextBillingAt"), "nextBillingAt is more than 10 years ahead.", "INVALID"
            )
        elif started_at is not None and next_billing_at < started_at:
            check.add(
                (*p, "nextBillingAt"),
                "nextBillingAt is before the subscription started.",
                "INVALID",
            )
    ended_at = _ms(data.ended_at)
    if ended_at is not None:
        if status is not None and status not in ENDED:
            check.add(
                (*p, "endedAt"),
                "Only a CANCELED or EXPIRED subscription has ended: leave endedAt out.",
                "INVALID",
            )
        elif ended_at > latest:
            check.add((*p, "endedAt"), "A subscription cannot end in the future.", "INVALID")
        elif started_at is not None and ended_at < started_at:
            check.add((*p, "endedAt"), "endedAt is before the subscription started.", "INVALID")
    # A time far ahead would hold back every later report of the contract.
    if data.updated_at is not None and data.updated_at > latest:
        check.add((*p, "updatedAt"), "A subscription cannot be changed in the future.", "INVALID")
    if not check.ok:
        raise Refused(check.problems)
    assert external_id is not None and email is not None and kind is not None
    assert status is not None and interval is not None and title is not None
    assert quantity is not None and interval_count is not None and price is not None
    assert currency is not None and started_at is not None
    return CheckedSubscription(
        external_id=external_id,
        email=email[0],
        email_key=email[1],
        first_name=first_name,
        last_name=last_name,
        kind=kind,
        status=status,
        title=title,
        quantity=quantity,
        price=price,
        currency=currency,
        interval=interval,
        interval_count=interval_count,
        started_at=started_at,
        next_billing_at=next_billing_at,
        ended_at=ended_at,
        updated_at=_ms(data.updated_at),
    )
