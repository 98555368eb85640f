"""DateTime, Decimal and JSON as the contract defines them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as PyDecimal
from typing import Any, NewType

import strawberry

from resolvers.validation import parse_decimal

UTC = dt.UTC


def serialize_datetime(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_datetime(value: Any) -> dt.datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("DateTime must be an ISO-8601 string with a UTC offset.")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 date-time.") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset (add 'Z' or '+01:00').")
    # MongoDB keeps milliseconds: truncate now so what is stored is what was sent.
    return parsed.astimezone(UTC).replace(microsecond=parsed.microsecond // 1000 * 1000)


def serialize_decimal(value: PyDecimal) -> str:
    return format(value, "f")


# Field annotations use Python's own datetime and Decimal; the schema's
# scalar_map (SCALARS) gives them the contract's names and wire formats.
DateTime = dt.datetime
Decimal = PyDecimal
JSON = NewType("JSON", object)

SCALARS: dict[object, Any] = {
    dt.datetime: strawberry.scalar(
        name="DateTime",
        description="An ISO-8601 date-time with an explicit UTC offset, e.g. 2026-01-31T12:00:00.000+00:00.",
        serialize=serialize_datetime,
        parse_value=parse_datetime,
    ),
    PyDecimal: strawberry.scalar(
        name="Decimal",
        description='An exact decimal number, sent and received as a string such as "19.90".',
        serialize=serialize_decimal,
        parse_value=parse_decimal,
    ),
    JSON: strawberry.scalar(
        name="JSON",
        description="Any JSON value.",
        serialize=lambda v: v,
        parse_value=lambda v: v,
    ),
}
