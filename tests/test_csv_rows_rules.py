"""CSV cell rules to the edge: what a spreadsheet shows, and what the import reads back.

tests/test_export.py and tests/test_import.py tell the story through the
endpoint and the command; these pin each cell rule on its own, without a
database: every character that makes a spreadsheet evaluate a cell, the exact
text of amounts and times, the defaults of an empty contact, the header, and
the laws that make an exported file importable again (restore ∘ neutralize,
parse ∘ print for labels and one-column addresses).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.csv_rows import (
    COLUMNS,
    address_columns,
    address_text,
    average_text,
    contact_row,
    csv_text,
    datetime_text,
    decimal_text,
    header_text,
    labels_text,
    neutralize,
    parse_address_text,
    parse_labels_text,
    restore,
)

# --- formulas --------------------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", "'"])
def test_a_cell_starting_with_a_formula_character_or_apostrophe_gets_an_apostrophe(
    start: str,
) -> None:
    assert neutralize(start + "SUM(A1:A9)") == "'" + start + "SUM(A1:A9)"
    assert neutralize(start) == "'" + start


@pytest.mark.parametrize("cell", ["", "Ann", " =1", "a=b", "1+1", "\n=1", '"=1"', "O'Brien"])
def test_a_cell_that_is_no_formula_is_written_as_it_is(cell: str) -> None:
    assert neutralize(cell) == cell


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("'=1", "=1"),
        ("'+", "+"),
        ("'-5", "-5"),
        ("'@me", "@me"),
        ("'\tx", "\tx"),
        ("'\rx", "\rx"),
        ("''quoted'", "'quoted'"),
        ("''", "'"),
    ],
)
def test_reading_a_neutralized_cell_drops_exactly_one_apostrophe(cell: str, value: str) -> None:
    assert restore(cell) == value


@pytest.mark.parametrize("cell", ["", "'", "'Brien", "' =1", "O'Brien", "=1", "x'=1"])
def test_an_apostrophe_not_followed_by_an_escaped_character_is_part_of_the_value(cell: str) -> None:
    # typed by hand in a spreadsheet ("'Brien"), or a value that was never neutralized
    assert restore(cell) == cell


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_every_string_survives_neutralize_then_restore(value: str) -> None:
    cell = neutralize(value)
    assert restore(cell) == value
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


# --- amounts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal128("1.50"), "1.50"),
        (Decimal128("1E+3"), "1000"),
        (Decimal128("-0.000001"), "-0.000001"),
        (Decimal("12345678.9"), "12345678.9"),
        (Decimal("0"), "0"),
        (7, "7"),
        ("19.99", "19.99"),
    ],
)
def test_an_amount_is_plain_decimal_text_with_every_stored_digit(value: Any, text: str) -> None:
    assert decimal_text(value) == text


def test_no_amount_is_an_empty_cell() -> None:
    assert decimal_text(None) == ""


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, min_value=-(10**9), max_value=10**9
    )
)
def test_an_amount_round_trips_exactly_through_its_text(value: Decimal) -> None:
    text = decimal_text(Decimal128(value))
    assert Decimal(text) == value
    assert "e" not in text.lower() and "," not in text


@pytest.mark.parametrize(
    ("spent", "count", "text"),
    [
        (Decimal128("100.00"), 3, "33.33"),
        (Decimal128("200.00"), 3, "66.67"),
        (Decimal128("0.25"), 2, "0.13"),  # half up, not to even
        (Decimal128("0.35"), 2, "0.18"),
        (Decimal("10"), 4, "2.50"),
        ("9", 2, "4.50"),
        (Decimal128("0"), 1, "0.00"),
        (None, 2, "0.00"),
        (Decimal128("-1.005"), 1, "-1.01"),
    ],
)
def test_the_average_order_value_is_rounded_half_up_to_cents(
    spent: Any, count: int, text: str
) -> None:
    assert average_text(spent, count) == text


@pytest.mark.parametrize("count", [0, None])
def test_no_orders_have_no_average(count: Any) -> None:
    assert average_text(Decimal128("10.00"), count) == ""


# --- times -----------------------------------------------------------------


@pytest.fixture
def server_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The server's clock runs five and a half hours ahead of UTC (no tz database needed)."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("server_zone")
def test_a_time_is_utc_to_the_millisecond_whatever_the_servers_zone() -> None:
    naive = dt.datetime(2026, 1, 2, 3, 4, 5, 678901)  # as PyMongo reads a stored date: UTC
    assert datetime_text(naive) == "2026-01-02T03:04:05.678+00:00"
    aware = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert datetime_text(aware) == "2026-01-02T01:04:05.678+00:00"
    assert datetime_text(dt.datetime(2026, 1, 2, tzinfo=dt.UTC)) == "2026-01-02T00:00:00.000+00:00"


def test_no_time_is_an_empty_cell() -> None:
    assert datetime_text(None) == ""


# --- one-column addresses --------------------------------------------------

FULL = {
    "name": "Ann Lee",
    "company": "Lee Ltd",
    "line1": "10 Downing Street",
    "line2": "Flat 2",
    "postalCode": "SW1A 2AA",
    "city": "London",
    "region": "Greater London",
    "countryCode": "GB",
    "phone": "+44 20 7946 0000",
}


def test_an_address_on_one_line_leaves_out_name_company_phone_and_what_is_missing() -> None:
    assert address_text(FULL) == "10 Downing Street, Flat 2, SW1A 2AA London, Greater London, GB"
    assert address_text({"line1": "1 Main St", "city": "Springfield"}) == "1 Main St, Springfield"
    assert address_text({"line1": "1 Main St", "postalCode": "12345"}) == "1 Main St, 12345"
    assert address_text({"line1": "1 Main St", "line2": None, "countryCode": "US"}) == (
        "1 Main St, US"
    )
    assert address_text({"name": "Ann", "phone": "+1"}) == ""


@pytest.mark.parametrize("address", [None, {}])
def test_no_address_is_an_empty_cell(address: Any) -> None:
    assert address_text(address) == ""


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            "10 Downing Street, Flat 2, SW1A 2AA London, Greater London, gb",
            {
                "line1": "10 Downing Street",
                "line2": "Flat 2",
                "postalCode": "SW1A 2AA",
                "city": "London",
                "region": "Greater London",
                "countryCode": "GB",
            },
        ),
        (
            "Damrak 1\nBack door, 1012 AB Amsterdam, North Holland, Randstad, NL",
            {
                "line1": "Damrak 1",
                "line2": "Back door",
                "postalCode": "1012 AB",
                "city": "Amsterdam",
                "region": "North Holland, Randstad",
                "countryCode": "NL",
            },
        ),
        # the last part starting with a postal code is the town; an earlier one is the second line
        (
            "1 Main St, 12 Side Road, 62701 Springfield, US",
            {
                "line1": "1 Main St",
                "line2": "12 Side Road",
                "postalCode": "62701",
                "city": "Springfield",
                "countryCode": "US",
            },
        ),
        # the town right after the street line
        (
            "1 Main St, 62701 Springfield",
            {"line1": "1 Main St", "postalCode": "62701", "city": "Springfield"},
        ),
        # no postal code: the last part is the city, what lies between is the second line
        (
            "1 Main St, Unit B, Rear, Springfield",
            {"line1": "1 Main St", "line2": "Unit B, Rear", "city": "Springfield"},
        ),
        ("1 Main St, Springfield", {"line1": "1 Main St", "city": "Springfield"}),
        ("1 Main St, us", {"line1": "1 Main St", "countryCode": "US"}),
        ("  1 Main St  ,, \n", {"line1": "1 Main St"}),
        # a lone two-letter part is a street line, not a country
        ("US", {"line1": "US"}),
        # three letters are no country code
        ("1 Main St, USA", {"line1": "1 Main St", "city": "USA"}),
    ],
)
def test_a_one_column_address_is_read_part_by_part(text: str, parts: dict[str, str]) -> None:
    assert parse_address_text(text) == parts


@pytest.mark.parametrize("text", ["", "   ", ", ,\n"])
def test_an_empty_one_column_address_has_no_parts(text: str) -> None:
    assert parse_address_text(text) == {}


words = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=8
)
addresses = st.fixed_dictionaries(
    {
        "line1": st.builds(lambda n, w: f"{n} {w}", st.integers(1, 999), words),
        "city": words,
    },
    optional={
        "line2": st.builds(lambda w, n: f"{w} {n}", words, st.integers(1, 99)),
        "postalCode": st.from_regex(r"[0-9]{4,5}( [A-Z]{2})?", fullmatch=True),
        "region": st.builds(lambda a, b: f"{a} {b}", words, words),
        "countryCode": st.from_regex(r"[A-Z]{2}", fullmatch=True),
    },
)


@settings(max_examples=200, deadline=None)
@given(addresses)
def test_a_one_column_address_reads_back_as_written(address: dict[str, str]) -> None:
    if "postalCode" not in address and "region" in address:
        # without a postal code the region cannot be told from the city; such files come from hand
        address = {k: v for k, v in address.items() if k != "region"}
    assert parse_address_text(address_text(address)) == address


# --- labels ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "text"),
    [
        (["VIP", "Newsletter"], "VIP, Newsletter"),
        (["Paris, France", "VIP"], '"Paris, France", VIP'),
        (['12" vinyl'], '"12"" vinyl"'),
        (["it's"], "it's"),
        ([], ""),
    ],
)
def test_labels_are_joined_by_comma_space_and_quoted_only_when_needed(
    labels: list[str], text: str
) -> None:
    assert labels_text(labels) == text
    assert parse_labels_text(text) == labels


def test_labels_typed_by_hand_are_read_with_or_without_spaces() -> None:
    assert parse_labels_text("VIP,Newsletter") == ["VIP", "Newsletter"]
    assert parse_labels_text("VIP,   Newsletter") == ["VIP", "Newsletter"]


def test_a_cell_too_long_for_csv_is_still_split_at_its_commas() -> None:
    # the label check then refuses the long one by name instead of the import failing
    huge = "x" * 200_000
    assert parse_labels_text(huge + ",VIP") == [huge, "VIP"]


label = (
    st.text(alphabet=st.characters(categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=20)
    .map(lambda raw: " ".join(raw.split()))
    .filter(bool)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(label, max_size=6))
def test_labels_read_back_as_written(labels: list[str]) -> None:
    cell = neutralize(labels_text(labels))
    assert parse_labels_text(restore(cell)) == labels


# --- rows and the header ---------------------------------------------------


def test_the_header_names_every_column_in_order() -> None:
    assert header_text() == ",".join(COLUMNS) + "\r\n"
    assert COLUMNS[13:22] == address_columns("Shipping")
    assert address_columns("Billing") == (
        "Billing Name",
        "Billing Company",
        "Billing Address 1",
        "Billing Address 2",
        "Billing Postal Code",
        "Billing City",
        "Billing Region",
        "Billing Country Code",
        "Billing Phone",
    )
    assert header_text().startswith(
        "Type,Account,First Name,Last Name,Email,Phone,Company,Total Orders,Total Spent,"
        "Average Order Value,Currency,Last Order Date,Customer Since,Shipping Name,"
    )
    assert header_text().endswith(
        "Billing Phone,Labels,Marketing State,Created At,Active Subscriptions,Member\r\n"
    )


def test_csv_text_quotes_only_cells_holding_a_comma_quote_or_line_break() -> None:
    rows = [["a", "b,c", 'say "hi"', "two\nlines", "cr\r", ""], ["x"]]
    assert csv_text(rows) == 'a,"b,c","say ""hi""","two\nlines","cr\r",\r\nx\r\n'
    assert list(csv.reader(io.StringIO(csv_text(rows), newline=""))) == rows


def test_csv_text_of_no_rows_is_empty() -> None:
    assert csv_text([]) == ""


def cells(row: list[str]) -> dict[str, str]:
    assert len(row) == len(COLUMNS)
    return dict(zip(COLUMNS, row, strict=True))


def test_a_full_contact_fills_every_column() -> None:
    doc = {
        "kind": "CUSTOMER",
        "hasAccount": True,
        "firstName": "Ann",
        "lastName": "Lee",
        "email": "ann@example.com",
        "phone": "+44 20 7946 0001",
        "company": "Lee Ltd",
        "orderCount": 3,
        "totalSpent": Decimal128("100.00"),
        "lastOrderAt": dt.datetime(2026, 2, 3, 4, 5, 6, 7000),
        "firstOrderAt": dt.datetime(2025, 1, 1),
        "shippingAddress": FULL,
        "billingAddress": {**FULL, "line1": "1 Billing Way", "line2": None},
        "labels": ["VIP", "Paris, France"],
        "consent": {"state": "SUBSCRIBED"},
        "createdAt": dt.datetime(2024, 12, 31, 23, 59, 59, 999999),
        "activeSubscriptionCount": 2,
        "isMember": True,
    }
    row = cells(contact_row(doc, "EUR"))
    assert row == {
        "Type": "CUSTOMER",
        "Account": "yes",
        "First Name": "Ann",
        "Last Name": "Lee",
        "Email": "ann@example.com",
        "Phone": "'+44 20 7946 0001",
        "Company": "Lee Ltd",
        "Total Orders": "3",
        "Total Spent": "100.00",
        "Average Order Value": "33.33",
        "Currency": "EUR",
        "Last Order Date": "2026-02-03T04:05:06.007+00:00",
        "Customer Since": "2025-01-01T00:00:00.000+00:00",
        "Shipping Name": "Ann Lee",
        "Shipping Company": "Lee Ltd",
        "Shipping Address 1": "10 Downing Street",
        "Shipping Address 2": "Flat 2",
        "Shipping Postal Code": "SW1A 2AA",
        "Shipping City": "London",
        "Shipping Region": "Greater London",
        "Shipping Country Code": "GB",
        "Shipping Phone": "'+44 20 7946 0000",
        "Billing Name": "Ann Lee",
        "Billing Company": "Lee Ltd",
        "Billing Address 1": "1 Billing Way",
        "Billing Address 2": "",
        "Billing Postal Code": "SW1A 2AA",
        "Billing City": "London",
        "Billing Region": "Greater London",
        "Billing Country Code": "GB",
        "Billing Phone": "'+44 20 7946 0000",
        "Labels": 'VIP, "Paris, France"',
        "Marketing State": "SUBSCRIBED",
        "Created At": "2024-12-31T23:59:59.999+00:00",
        "Active Subscriptions": "2",
        "Member": "yes",
    }


def test_an_empty_contact_has_its_defaults() -> None:
    row = cells(contact_row({}, None))
    assert row["Account"] == "no"
    assert row["Total Orders"] == "0"
    assert row["Total Spent"] == "0"
    assert row["Average Order Value"] == ""
    assert row["Marketing State"] == "NOT_SUBSCRIBED"
    assert row["Active Subscriptions"] == "0"
    assert row["Member"] == "no"
    others = {
        k: v
        for k, v in row.items()
        if k
        not in {
            "Account",
            "Total Orders",
            "Total Spent",
            "Marketing State",
            "Active Subscriptions",
            "Member",
        }
    }
    assert set(others.values()) == {""}


def test_null_fields_read_like_missing_ones() -> None:
    doc: dict[str, Any] = dict.fromkeys(
        [
            "kind",
            "hasAccount",
            "firstName",
            "lastName",
            "email",
            "phone",
            "company",
            "orderCount",
            "totalSpent",
            "lastOrderAt",
            "firstOrderAt",
            "shippingAddress",
            "billingAddress",
            "labels",
            "consent",
            "createdAt",
            "activeSubscriptionCount",
            "isMember",
        ]
    )
    assert contact_row(doc, None) == contact_row({}, None)
    assert (
        cells(contact_row({"consent": {"state": None}}, None))["Marketing State"]
        == "NOT_SUBSCRIBED"
    )


def test_orders_without_a_total_spent_nothing() -> None:
    row = cells(contact_row({"orderCount": 2}, "USD"))
    assert (row["Total Orders"], row["Total Spent"], row["Average Order Value"]) == (
        "2",
        "0",
        "0.00",
    )
    assert row["Currency"] == "USD"


def test_only_a_stored_true_makes_a_member() -> None:
    # isMember is written by the subscription rules as a boolean; anything else is not membership
    assert cells(contact_row({"isMember": 1}, None))["Member"] == "no"
    assert cells(contact_row({"isMember": "yes"}, None))["Member"] == "no"
    assert cells(contact_row({"isMember": False}, None))["Member"] == "no"
    assert cells(contact_row({"hasAccount": False}, None))["Account"] == "no"


def test_every_cell_of_a_row_is_neutralized() -> None:
    doc = {
        "firstName": '=HYPERLINK("http://x")',
        "lastName": "@SUM(1)",
        "company": "-2+3",
        "shippingAddress": {"line1": "+1 Street", "city": "\tTab"},
        "billingAddress": {"region": "'quoted"},
        "labels": ["=evil"],
    }
    row = cells(contact_row(doc, None))
    assert row["First Name"] == '\'=HYPERLINK("http://x")'
    assert row["Last Name"] == "'@SUM(1)"
    assert row["Company"] == "'-2+3"
    assert row["Shipping Address 1"] == "'+1 Street"
    assert row["Shipping City"] == "'\tTab"
    assert row["Billing Region"] == "''quoted"
    assert row["Labels"] == "'=evil"
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in row.values())


@settings(max_examples=100, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "firstName": st.text(max_size=10),
            "company": st.text(max_size=10),
            "labels": st.lists(label, max_size=3),
            "shippingAddress": st.fixed_dictionaries({}, optional={"line1": st.text(max_size=10)}),
        },
    )
)
def test_a_row_written_and_read_back_gives_the_stored_values(doc: dict[str, Any]) -> None:
    text = csv_text([contact_row(doc, None)])
    [read] = list(csv.reader(io.StringIO(text, newline="")))
    row = cells([restore(c) for c in read])
    assert row["First Name"] == (doc.get("firstName") or "")
    assert row["Company"] == (doc.get("company") or "")
    assert row["Shipping Address 1"] == (doc.get("shippingAddress", {}).get("line1") or "")
    assert parse_labels_text(row["Labels"]) == doc.get("labels", [])
