"""Contacts as CSV rows: the columns, how each value is written, and how it is read back.

Shared by the export endpoint, `contactgraph export` and `contactgraph import`.
Cells are safe to open in a spreadsheet: a cell that a spreadsheet would
take for a formula (OWASP "CSV injection": it starts with `=`, `+`, `-`,
`@`, a tab or a carriage return) gets a leading apostrophe. A cell that
already starts with an apostrophe gets one too, so reading back is exact:
`restore(neutralize(v)) == v` for every string.

Every stored value has a cell of its own (an address is one column per
part, labels are quoted where they hold a comma), so an export imported
again changes nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bson import Decimal128

# (stored key, column suffix) of an address's parts, in the order written.
ADDRESS_PARTS: tuple[tuple[str, str], ...] = (
    ("name", "Name"),
    ("company", "Company"),
    ("line1", "Address 1"),
    ("line2", "Address 2"),
    ("postalCode", "Postal Code"),
    ("city", "City"),
    ("region", "Region"),
    ("countryCode", "Country Code"),
    ("phone", "Phone"),
)
# (stored key, column prefix) of the two addresses.
ADDRESSES: tuple[tuple[str, str], ...] = (
    ("shippingAddress", "Shipping"),
    ("billingAddress", "Billing"),
)


def address_columns(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix} {suffix}" for _, suffix in ADDRESS_PARTS)


COLUMNS: tuple[str, ...] = (
    "Type",
    "Account",
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Company",
    "Total Orders",
    "Total Spent",
    "Average Order Value",
    "Currency",
    "Last Order Date",
    "Customer Since",
    *address_columns("Shipping"),
    *address_columns("Billing"),
    "Labels",
    "Marketing State",
    "Created At",
    "Active Subscriptions",
    "Member",
)

# What a row needs; never the activity log (notes are never exported) or search terms.
EXPORT_PROJECTION = {
    "kind": 1,
    "hasAccount": 1,
    "firstName": 1,
    "lastName": 1,
    "email": 1,
    "phone": 1,
    "company": 1,
    "orderCount": 1,
    "totalSpent": 1,
    "lastOrderAt": 1,
    "firstOrderAt": 1,
    "shippingAddress": 1,
    "billingAddress": 1,
    "labels": 1,
    "consent.state": 1,
    "createdAt": 1,
    "activeSubscriptionCount": 1,
    "isMember": 1,
}

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED_STARTS = (*FORMULA_STARTS, "'")
LABEL_SEPARATOR = ", "
YES, NO = "yes", "no"
_CENTS = Decimal("0.01")


def neutralize(cell: str) -> str:
    """The cell as a spreadsheet will show it rather than evaluate it."""
    return "'" + cell if cell.startswith(_ESCAPED_STARTS) else cell


def restore(cell: str) -> str:
    """The value a neutralized cell stands for."""
    if len(cell) >= 2 and cell[0] == "'" and cell[1] in _ESCAPED_STARTS:
        return cell[1:]
    return cell


def decimal_text(value: Any) -> str:
    """A plain decimal: a dot, no thousands separator, no exponent."""
    if isinstance(value, Decimal128):
        value = value.to_decimal()
    if value is None:
        return ""
    return format(Decimal(value), "f")


def datetime_text(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def address_text(address: dict[str, Any] | None) -> str:
    """One line: `line1, line2, postal code city, region, country code`, leaving out what is missing.

    The one-column address of files written before the parts had columns
    of their own; still read by the import (`parse_address_text`).
    """
    if not address:
        return ""
    town = " ".join(p for p in (address.get("postalCode"), address.get("city")) if p)
    parts = (
        address.get("line1"),
        address.get("line2"),
        town,
        address.get("region"),
        address.get("countryCode"),
    )
    return ", ".join(p for p in parts if p)


# A postal code is one or more tokens, the first holding a digit, the others a
# digit too or two capitals ("SW1A 2AA", "1012 AB"); the city follows.
_POSTAL_TOWN = re.compile(r"(?P<postal>\S*\d\S*(?:\s+(?:\S*\d\S*|[A-Z]{2}))*)\s+(?P<city>\D.*)")


def parse_address_text(text: str) -> dict[str, str]:
    """The parts of an address written by `address_text` (or typed in the same order).

    The first part is the street line; a trailing two-letter part is the
    country; the last part that starts with a postal code (a token holding
    a digit) is `postal code city` (what follows it is the region); without one, the
    last part is the city. Whatever remains between is the second line.
    """
    parts = [p.strip() for p in re.split(r"[,\n]", text) if p.strip()]
    out: dict[str, str] = {}
    if not parts:
        return out
    if len(parts) > 1 and re.fullmatch(r"[A-Za-z]{2}", parts[-1]):
        out["countryCode"] = parts.pop().upper()
    out["line1"] = parts.pop(0)
    rest = parts
    town_at = next(
        (i for i in range(len(rest) - 1, -1, -1) if _POSTAL_TOWN.fullmatch(rest[i])), None
    )
    if town_at is not None:
        found = _POSTAL_TOWN.fullmatch(rest[town_at])
        assert found is not None
        out["postalCode"], out["city"] = found["postal"], found["city"]
        if rest[town_at + 1 :]:
            out["region"] = ", ".join(rest[town_at + 1 :])
        middle = rest[:town_at]
    elif rest:
        out["city"] = rest[-1]
        middle = rest[:-1]
    else:
        middle = []
    if middle:
        out["line2"] = ", ".join(middle)
    return out


def labels_text(labels: Iterable[str]) -> str:
    """Labels joined by ", "; one holding a comma or a quote is quoted as in CSV."""
    return LABEL_SEPARATOR.join(
        '"' + label.replace('"', '""') + '"' if "," in label or '"' in label else label
        for label in labels
    )


def parse_labels_text(text: str) -> list[str]:
    """The labels of a cell written by `labels_text` (or typed as `VIP, Newsletter`)."""
    try:
        return next(csv.reader([text], skipinitialspace=True), [])
    except csv.Error:  # a line break: not a label, and the label check says so
        return text.split(",")


def average_text(spent: Any, count: int) -> str:
    if not count:
        return ""
    total = spent.to_decimal() if isinstance(spent, Decimal128) else Decimal(spent or 0)
    return decimal_text((total / count).quantize(_CENTS, ROUND_HALF_UP))


def contact_row(doc: dict[str, Any], currency: str | None) -> list[str]:
    """The cells of one contact, in COLUMNS order, neutralized."""
    shipping = doc.get("shippingAddress") or {}
    billing = doc.get("billingAddress") or {}
    count = doc.get("orderCount") or 0
    spent = doc.get("totalSpent")
    cells = [
        doc.get("kind") or "",
        YES if doc.get("hasAccount") else NO,
        doc.get("firstName") or "",
        doc.get("lastName") or "",
        doc.get("email") or "",
        doc.get("phone") or "",
        doc.get("company") or "",
        str(count),
        decimal_text(spent if spent is not None else Decimal(0)),
        average_text(spent, count),
        currency or "",
        datetime_text(doc.get("lastOrderAt")),
        datetime_text(doc.get("firstOrderAt")),
        *(shipping.get(key) or "" for key, _ in ADDRESS_PARTS),
        *(billing.get(key) or "" for key, _ in ADDRESS_PARTS),
        labels_text(doc.get("labels") or []),
        (doc.get("consent") or {}).get("state") or "NOT_SUBSCRIBED",
        datetime_text(doc.get("createdAt")),
        str(doc.get("activeSubscriptionCount") or 0),
        YES if doc.get("isMember") is True else NO,
    ]
    return [neutralize(c) for c in cells]


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    """RFC 4180: comma-separated, CRLF line ends, fields quoted when they hold `,`, `"` or a line break."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerows(rows)
    return buffer.getvalue()


def header_text() -> str:
    return csv_text([COLUMNS])
