"""Contact filters as JSON: what a segment stores and what the CSV export's `filter` parameter takes.

The JSON form is the `ContactFilter` input exactly as a client writes it
(camelCase names, decimals as strings, date-times as ISO-8601 strings), so
a saved segment shows its filter the way it was given and a filter can be
copied from a GraphQL call into an export URL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bson import Decimal128

from loaders.contacts import ContactFilterSpec
from resolvers.consent import STATES
from resolvers.validation import LABEL_MAX, parse_decimal

KINDS = ("CUSTOMER", "LEAD")
MAX_FILTER_LABELS = 250
MAX_ORDER_COUNT = 2**31 - 1
MAX_AMOUNT = Decimal(10) ** 15


class FilterError(ValueError):
    """A filter that cannot be used; `field` is the camelCase name of the culprit (None: the whole)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _labels(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FilterError(name, f"`{name}` must be a list of label names.")
    return value


def _amount(name: str, value: Any) -> Decimal:
    try:
        return parse_decimal(value)
    except ValueError:
        raise FilterError(name, f'`{name}` must be a decimal amount such as "19.90".') from None


def _count(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise FilterError(name, f"`{name}` must be a whole number.")
    return value


def parse_datetime(name: str, value: Any) -> dt.datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise FilterError(name, f"`{name}` must be an ISO-8601 date-time with a UTC offset.")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise FilterError(name, f"`{name}` is not an ISO-8601 date-time.") from None
    if parsed.tzinfo is None:
        raise FilterError(name, f"`{name}` has no UTC offset (add 'Z' or '+01:00').")
    # MongoDB keeps milliseconds: what is compared is what was sent.
    return parsed.astimezone(dt.UTC).replace(microsecond=parsed.microsecond // 1000 * 1000)


def _choice(options: tuple[str, ...]) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        if value not in options:
            raise FilterError(name, f"`{name}` must be one of {', '.join(options)}.")
        return str(value)

    return parse


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FilterError(name, f"`{name}` must be true or false.")
    return value


@dataclass(frozen=True)
class _Field:
    attr: str
    parse: Callable[[str, Any], Any]
    dump: Callable[[Any], Any] = lambda v: v


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


# camelCase JSON name -> ContactFilterSpec attribute, parser, and JSON writer.
FIELDS: dict[str, _Field] = {
    "kind": _Field("kind", _choice(KINDS)),
    "labelsAny": _Field("labels_any", _labels),
    "labelsAll": _Field("labels_all", _labels),
    "labelsNone": _Field("labels_none", _labels),
    "totalSpentMin": _Field("total_spent_min", _amount, _decimal_text),
    "totalSpentMax": _Field("total_spent_max", _amount, _decimal_text),
    "orderCountMin": _Field("order_count_min", _count),
    "orderCountMax": _Field("order_count_max", _count),
    "lastOrderAfter": _Field("last_order_after", parse_datetime, _iso),
    "lastOrderBefore": _Field("last_order_before", parse_datetime, _iso),
    "createdAfter": _Field("created_after", parse_datetime, _iso),
    "createdBefore": _Field("created_before", parse_datetime, _iso),
    "marketingState": _Field("marketing_state", _choice(STATES)),
    "hasAccount": _Field("has_account", _flag),
    "hasActiveSubscription": _Field("has_active_subscription", _flag),
    "isMember": _Field("is_member", _flag),
}
SEGMENT_FIELD = "segment"


def _comparable(amount: Decimal) -> bool:
    """Whether MongoDB can hold the amount exactly (Decimal128 keeps 34 significant digits)."""
    try:
        Decimal128(amount)
    except ArithmeticError:
        return False
    return True


def check_spec(spec: ContactFilterSpec) -> None:
    """Bounds every usable filter keeps; FilterError naming the first field out of bounds."""
    for name in ("labelsAny", "labelsAll", "labelsNone"):
        values = getattr(spec, FIELDS[name].attr) or []
        if len(values) > MAX_FILTER_LABELS:
            raise FilterError(name, f"A label filter takes at most {MAX_FILTER_LABELS} labels.")
        if any(len(v) > LABEL_MAX for v in values):
            raise FilterError(name, f"A label is at most {LABEL_MAX} characters.")
    for name in ("totalSpentMin", "totalSpentMax"):
        amount = getattr(spec, FIELDS[name].attr)
        if amount is not None and (not amount.is_finite() or abs(amount) >= MAX_AMOUNT):
            raise FilterError(name, "totalSpent bounds must be finite amounts.")
        if amount is not None and not _comparable(amount):
            raise FilterError(name, "totalSpent bounds have at most 34 significant digits.")
    for name in ("orderCountMin", "orderCountMax"):
        count = getattr(spec, FIELDS[name].attr)
        if count is not None and not 0 <= count <= MAX_ORDER_COUNT:
            raise FilterError(name, f"orderCount bounds must be between 0 and {MAX_ORDER_COUNT}.")


def spec_from_json(data: Any) -> tuple[ContactFilterSpec, Any]:
    """(filter, the `segment` reference or None) from the JSON form; FilterError for anything else.

    Unknown names are refused rather than ignored: a misspelt condition
    would otherwise silently select more people than meant.
    """
    if not isinstance(data, dict):
        raise FilterError(None, 'A filter is a JSON object such as {"kind": "CUSTOMER"}.')
    spec = ContactFilterSpec()
    segment = None
    for name, value in data.items():
        if value is None:
            continue
        if name == SEGMENT_FIELD:
            if not isinstance(value, str):
                raise FilterError(name, "`segment` must be a segment id.")
            segment = value
            continue
        known = FIELDS.get(name)
        if known is None:
            raise FilterError(
                name,
                f"Unknown filter field `{name}`; known: {', '.join([*FIELDS, SEGMENT_FIELD])}.",
            )
        setattr(spec, known.attr, known.parse(name, value))
    check_spec(spec)
    return spec, segment


def spec_to_json(spec: ContactFilterSpec) -> dict[str, Any]:
    """The JSON form of a filter: only the conditions it sets."""
    out: dict[str, Any] = {}
    for name, known in FIELDS.items():
        value = getattr(spec, known.attr)
        if value is not None:
            out[name] = known.dump(value)
    return out
