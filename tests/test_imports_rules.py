"""The CSV import's rules, called directly: what a file must look like, what a row becomes, what is written.

tests/test_import.py tells the story of an import end to end; these call
the reading and checking rules without a database, and `import_contacts`
on the database with a fixed clock, for the exact messages, the exact
boundaries (the shop's 250th label, a batch of 500) and the stored
documents, including writes that meet another writer half-way.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from bson import ObjectId
from pymongo.errors import BulkWriteError, DuplicateKeyError

from resolvers import activity, contacts, events, imports, labels
from resolvers.csv_rows import COLUMNS, csv_text
from resolvers.events import contact_gid
from resolvers.imports import (
    ImportReport,
    ImportRow,
    RowProblem,
    check_row,
    import_contacts,
)

SHOP = "import-rules"
OTHER = "import-rules-other"
NOW = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
EARLIER = dt.datetime(2126, 1, 5, 9, 0, tzinfo=dt.UTC)
STATES_TEXT = "NOT_SUBSCRIBED, PENDING, SUBSCRIBED, UNSUBSCRIBED"


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (imports, activity, contacts, events, labels):
        monkeypatch.setattr(module, "now", lambda: NOW)


@pytest.fixture
async def shop(database: Any) -> Any:
    await database.shops.insert_many(
        [
            {"_id": SHOP, "name": SHOP, "labelCount": 0},
            {"_id": OTHER, "name": OTHER, "labelCount": 0},
        ]
    )
    return database


def csv_of(header: list[str], *rows: list[str]) -> str:
    return csv_text([header, *rows])


def opener(text: str) -> Callable[[], io.StringIO]:
    return lambda: io.StringIO(text, newline="")


def positions(*columns: str) -> dict[str, int]:
    return {c: i for i, c in enumerate(columns)}


def row(**cells: str) -> tuple[dict[str, int], list[str]]:
    """Header positions and cells of one row, columns named as in the file."""
    names = [name.replace("_", " ") for name in cells]
    return positions(*names), list(cells.values())


def header_problems(*cells: str) -> list[RowProblem]:
    with pytest.raises(imports._BadFile) as raised:
        imports._header(list(cells))
    return raised.value.problems


def read(text: str) -> list[tuple[int, dict[str, int], list[str]]]:
    return list(imports._records(io.StringIO(text, newline="")))


def read_problems(stream: Any) -> list[RowProblem]:
    with pytest.raises(imports._BadFile) as raised:
        list(imports._records(stream))
    return raised.value.problems


def checked(*columns: str, cells: list[str], number: int = 2) -> Any:
    return check_row(number, positions(*columns), cells)


async def run(database: Any, text: str, **options: Any) -> ImportReport:
    return await import_contacts(database, SHOP, opener(text), **options)


def summary(report: ImportReport) -> tuple[int, int, int, int, int, int, bool]:
    return (
        report.rows,
        report.created,
        report.updated,
        report.unchanged,
        report.locked,
        report.skipped,
        report.written,
    )


async def stored(database: Any, email_key: str, shop_id: str = SHOP) -> Any:
    return await database.contacts.find_one({"shopId": shop_id, "emailKey": email_key})


async def existing(database: Any, email: str, **fields: Any) -> Any:
    doc = contacts.new_contact(SHOP, email, email.lower(), "CUSTOMER", {}, EARLIER)
    doc.update(fields)
    doc.update(contacts.derived_fields(doc))
    await database.contacts.insert_one(doc)
    return doc


async def label_docs(database: Any, shop_id: str = SHOP) -> dict[str, tuple[str, int]]:
    return {
        d["key"]: (d["name"], d["contactCount"])
        for d in await database.labels.find({"shopId": shop_id}).to_list()
    }


async def label_count(database: Any, shop_id: str = SHOP) -> Any:
    return (await database.shops.find_one({"_id": shop_id}))["labelCount"]


async def given_labels(database: Any, count: int, *names: str) -> None:
    """The shop holds `count` labels, `names` among them as label documents."""
    if names:
        await database.labels.insert_many(
            [
                {
                    "shopId": SHOP,
                    "key": n.casefold(),
                    "name": n,
                    "contactCount": 0,
                    "createdAt": EARLIER,
                }
                for n in names
            ]
        )
    await database.shops.update_one({"_id": SHOP}, {"$set": {"labelCount": count}})


def entries_without_ids(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "_id"} for e in entries]


# ---------------------------------------------------------------- problems and the report


def test_a_problem_says_where_it_is_what_is_wrong_and_its_code() -> None:
    assert str(RowProblem(None, None, "The file is empty.", "REQUIRED")) == (
        "file: The file is empty. (REQUIRED)"
    )
    assert str(RowProblem(None, "Labels", "Too many.", "LIMIT_EXCEEDED")) == (
        "file, Labels: Too many. (LIMIT_EXCEEDED)"
    )
    assert str(RowProblem(7, None, "Short row.", "INVALID")) == "row 7: Short row. (INVALID)"
    assert str(RowProblem(1, "Shoe Size", "Unknown column.", "INVALID")) == (
        "row 1, Shoe Size: Unknown column. (INVALID)"
    )
    assert str(RowProblem(3, "", "Blank.", "INVALID")) == "row 3: Blank. (INVALID)"


def test_a_report_counts_each_bad_row_once_and_file_problems_not_at_all() -> None:
    report = ImportReport()
    assert (report.rows, report.created, report.updated, report.unchanged) == (0, 0, 0, 0)
    assert (report.locked, report.skipped, report.problems, report.written) == (0, 0, [], False)
    assert report.bad_rows == 0
    report.problems = [
        RowProblem(3, "Email", "a", "INVALID"),
        RowProblem(3, "Phone", "b", "INVALID"),
        RowProblem(None, "Labels", "c", "LIMIT_EXCEEDED"),
        RowProblem(5, None, "d", "INVALID"),
    ]
    assert report.bad_rows == 2
    assert ImportReport().problems is not ImportReport().problems


def test_a_bad_file_carries_its_problems_and_says_them_all() -> None:
    problems = [
        RowProblem(1, "X", "Unknown column.", "INVALID"),
        RowProblem(None, None, "E.", "REQUIRED"),
    ]
    error = imports._BadFile(problems)
    assert error.problems == problems
    assert str(error) == "row 1, X: Unknown column. (INVALID); file: E. (REQUIRED)"


# ---------------------------------------------------------------- the header


def test_the_header_maps_every_known_column_in_any_case_and_spacing_to_its_position() -> None:
    assert imports._header(["\ufeffeMail ", " FIRST NAME", "labels", "Shipping Address"]) == {
        "Email": 0,
        "First Name": 1,
        "Labels": 2,
        "Shipping Address": 3,
    }
    assert imports._header(list(COLUMNS)) == {c: i for i, c in enumerate(COLUMNS)}
    # Only a byte order mark at the very start is dropped.
    assert header_problems("Email", "\ufeffPhone") == [
        RowProblem(1, "\ufeffPhone", "Unknown column.", "INVALID")
    ]


def test_unknown_and_repeated_columns_are_each_named() -> None:
    assert header_problems("Email", "Shoe Size", " ", "email ", "Phone", "PHONE") == [
        RowProblem(1, "Shoe Size", "Unknown column.", "INVALID"),
        RowProblem(1, "column 3", "Unknown column.", "INVALID"),
        RowProblem(1, "Email", "Column appears twice.", "INVALID"),
        RowProblem(1, "Phone", "Column appears twice.", "INVALID"),
    ]
    assert header_problems("", "Email") == [RowProblem(1, "column 1", "Unknown column.", "INVALID")]


def test_the_email_column_is_required_and_missing_only_said_when_nothing_else_is_wrong() -> None:
    assert header_problems("First Name", "Last Name") == [
        RowProblem(1, "Email", "The file needs an Email column.", "REQUIRED")
    ]
    assert header_problems("First Name", "Shoe Size") == [
        RowProblem(1, "Shoe Size", "Unknown column.", "INVALID")
    ]
    assert header_problems() == [
        RowProblem(1, "Email", "The file needs an Email column.", "REQUIRED")
    ]


@pytest.mark.parametrize(
    "part", ["Address 1", "Address 2", "Postal Code", "City", "Region", "Country Code"]
)
def test_an_address_in_one_column_and_in_its_parts_is_refused(part: str) -> None:
    assert header_problems("Email", "Billing Address", f"Billing {part}") == [
        RowProblem(
            1,
            "Billing Address",
            "Give the address either as Billing Address or in its part columns "
            "(Billing Address 1, Billing City, ...), not both.",
            "INVALID",
        )
    ]
    assert header_problems("Email", f"Shipping {part}", "Shipping Address") == [
        RowProblem(
            1,
            "Shipping Address",
            "Give the address either as Shipping Address or in its part columns "
            "(Shipping Address 1, Shipping City, ...), not both.",
            "INVALID",
        )
    ]


def test_the_one_column_address_goes_with_the_name_company_and_phone_columns_and_the_other_address() -> (
    None
):
    columns = ["Email", "Shipping Address", "Shipping Name", "Shipping Company", "Shipping Phone"]
    columns += ["Billing City", "Billing Address 1"]
    assert imports._header(columns) == {c: i for i, c in enumerate(columns)}
    both = header_problems(
        "Email", "Shipping Address", "Billing Address", "Billing City", "Shipping City"
    )
    assert [(p.row, p.column) for p in both] == [(1, "Shipping Address"), (1, "Billing Address")]


# ---------------------------------------------------------------- reading the records


def test_records_are_numbered_as_lines_of_the_file_and_empty_ones_left_out() -> None:
    text = "Email,Phone\r\na@example.com,1\r\n\r\nb@example.com,2\r\nc@example.com\r\n"
    where = {"Email": 0, "Phone": 1}
    assert read(text) == [
        (2, where, ["a@example.com", "1"]),
        (4, where, ["b@example.com", "2"]),
        (5, where, ["c@example.com"]),
    ]
    assert read("Email\r\n") == []


def test_an_empty_file_is_refused_as_a_whole() -> None:
    assert read_problems(io.StringIO("")) == [
        RowProblem(None, None, "The file is empty.", "REQUIRED")
    ]


def test_a_header_problem_stops_the_reading() -> None:
    assert read_problems(io.StringIO("Email,Size\r\na@example.com,1\r\n")) == [
        RowProblem(1, "Size", "Unknown column.", "INVALID")
    ]


def test_a_quote_out_of_place_makes_the_file_unreadable() -> None:
    # Strict reading: a lenient reader would take the row as `a@example.comx`.
    assert read_problems(io.StringIO('Email\r\n"a@example.com"x\r\n', newline="")) == [
        RowProblem(None, None, "Not a readable CSV file: ',' expected after '\"'.", "INVALID")
    ]
    assert read_problems(io.StringIO('Email\r\n"a@example.com\r\n', newline="")) == [
        RowProblem(None, None, "Not a readable CSV file: unexpected end of data.", "INVALID")
    ]


def test_a_file_that_is_not_utf8_is_refused() -> None:
    stream = io.TextIOWrapper(io.BytesIO(b"Email\r\nm\xfcller@example.com\r\n"), encoding="utf-8")
    assert read_problems(stream) == [
        RowProblem(None, None, "The file is not UTF-8 text.", "INVALID")
    ]


# ---------------------------------------------------------------- checking a row


def test_a_row_becomes_the_details_it_fills_in() -> None:
    result = checked(
        "Email",
        "First Name",
        "Last Name",
        "Company",
        "Phone",
        "Labels",
        "Marketing State",
        "Type",
        cells=[
            " Ann@Example.COM ",
            "'=Ann",
            " Lee ",
            "'@Home",
            "'+49 30 1234567",
            'VIP, Newsletter, vip, "Wholesale, EU"',
            " pending ",
            "CUSTOMER",
        ],
        number=9,
    )
    assert result == ImportRow(
        9,
        "Ann@example.com",
        "ann@example.com",
        {"firstName": "=Ann", "lastName": "Lee", "company": "@Home", "phone": "+49301234567"},
        ["VIP", "Newsletter", "Wholesale, EU"],
        "PENDING",
    )


def test_a_row_with_only_an_email_fills_in_nothing() -> None:
    assert checked(
        "Email",
        "First Name",
        "Phone",
        "Labels",
        "Marketing State",
        cells=["bob@example.org", "  ", "", "", ""],
    ) == ImportRow(2, "bob@example.org", "bob@example.org", {}, [], None)
    assert checked("Email", cells=["bob@example.org"]) == ImportRow(
        2, "bob@example.org", "bob@example.org", {}, [], None
    )


def test_a_row_needs_as_many_cells_as_the_header() -> None:
    assert checked("Email", "Phone", cells=["a@example.com"], number=4) == [
        RowProblem(4, None, "The row has 1 cells; the header has 2.", "INVALID")
    ]
    assert checked("Email", cells=["a@example.com", "x"], number=5) == [
        RowProblem(5, None, "The row has 2 cells; the header has 1.", "INVALID")
    ]


def test_the_email_is_required_and_must_be_an_address() -> None:
    assert checked("Email", "First Name", cells=[" ", "Ann"], number=3) == [
        RowProblem(3, "Email", "Email is required.", "REQUIRED")
    ]
    assert checked("First Name", cells=["Ann"], number=3) == [
        RowProblem(3, "Email", "Email is required.", "REQUIRED")
    ]
    [problem] = checked("Email", cells=["not-an-email"], number=3)
    assert (problem.row, problem.column, problem.code) == (3, "Email", "INVALID")
    assert problem.message.startswith("Email is not valid: ")


@pytest.mark.parametrize(
    ("column", "key"),
    [("First Name", "firstName"), ("Last Name", "lastName"), ("Company", "company")],
)
def test_a_detail_takes_200_characters_and_not_201(column: str, key: str) -> None:
    ok = checked("Email", column, cells=["a@example.com", "x" * 200])
    assert isinstance(ok, ImportRow) and ok.details == {key: "x" * 200}
    label = column[:1] + column[1:].lower()
    assert checked("Email", column, cells=["a@example.com", "x" * 201]) == [
        RowProblem(2, column, f"{label} is longer than 200 characters.", "TOO_LONG")
    ]


def test_every_problem_of_a_row_is_reported_under_its_column() -> None:
    result = checked(
        "Email",
        "First Name",
        "Phone",
        "Labels",
        "Marketing State",
        cells=["", "Ann\x07", "12", "ok, " + "y" * 101, "maybe"],
        number=6,
    )
    assert result == [
        RowProblem(6, "Email", "Email is required.", "REQUIRED"),
        RowProblem(6, "First Name", "First name contains control characters.", "INVALID"),
        RowProblem(6, "Phone", "Phone number is not valid.", "INVALID"),
        RowProblem(6, "Labels", "A label is at most 100 characters.", "TOO_LONG"),
        RowProblem(
            6, "Marketing State", f"Marketing State must be one of {STATES_TEXT}.", "INVALID"
        ),
    ]


@pytest.mark.parametrize("state", ["NOT_SUBSCRIBED", "pending", "Subscribed", "unsubscribed"])
def test_every_marketing_state_is_read_in_any_case(state: str) -> None:
    result = checked("Email", "Marketing State", cells=["a@example.com", state])
    assert isinstance(result, ImportRow) and result.marketing_state == state.upper()


def test_a_marketing_state_that_is_none_of_them_is_refused() -> None:
    for state in ("SUBSCRIBED_", "OPTED_IN", "null"):
        assert checked("Email", "Marketing State", cells=["a@example.com", state]) == [
            RowProblem(
                2, "Marketing State", f"Marketing State must be one of {STATES_TEXT}.", "INVALID"
            )
        ]


def test_an_address_is_read_from_its_part_columns() -> None:
    columns = ["Email", *[f"Billing {s}" for s in ("Name", "Company", "Address 1", "Address 2")]]
    columns += [f"Billing {s}" for s in ("Postal Code", "City", "Region", "Country Code", "Phone")]
    cells = [
        "a@example.com",
        "Ann",
        "Lee Co",
        "Markt 1",
        "2nd floor",
        "80331",
        "München",
        "Bayern",
        "de",
        "089 123456",
    ]
    result = checked(*columns, cells=cells)
    assert isinstance(result, ImportRow)
    assert result.details == {
        "billingAddress": {
            "name": "Ann",
            "company": "Lee Co",
            "line1": "Markt 1",
            "line2": "2nd floor",
            "postalCode": "80331",
            "city": "München",
            "region": "Bayern",
            "countryCode": "DE",
            "phone": "+4989123456",
        }
    }


def test_an_address_with_every_part_empty_is_no_address() -> None:
    result = checked(
        "Email",
        "Shipping City",
        "Shipping Address",
        "Billing Name",
        cells=["a@example.com", " ", "", ""],
    )
    assert result == ImportRow(2, "a@example.com", "a@example.com", {}, [], None)


def test_an_address_part_problem_is_reported_under_the_part_column_the_person_sees() -> None:
    result = checked(
        "Email",
        "Shipping Country Code",
        "Shipping Postal Code",
        "Billing Phone",
        "Billing City",
        cells=["a@example.com", "Deutschland", "1" * 21, "nope", "Berlin"],
    )
    assert result == [
        RowProblem(
            2, "Shipping Postal Code", "Postal code is longer than 20 characters.", "TOO_LONG"
        ),
        RowProblem(
            2, "Shipping Country Code", "Country code is longer than 2 characters.", "TOO_LONG"
        ),
        RowProblem(2, "Billing Phone", "Phone number is not valid.", "INVALID"),
    ]
    result = checked("Email", "Billing Country Code", cells=["a@example.com", "D1"])
    assert result == [
        RowProblem(
            2, "Billing Country Code", "Country code must be two letters (ISO 3166-1).", "INVALID"
        )
    ]


def test_an_address_in_one_column_is_read_and_its_problems_reported_under_that_column() -> None:
    result = checked(
        "Email",
        "Shipping Address",
        "Shipping Name",
        "Billing Address",
        cells=[
            "a@example.com",
            "Hauptstraße 5, Hinterhaus, 10115 Berlin, Brandenburg, de",
            "Ann",
            "Markt 1, München",
        ],
    )
    assert isinstance(result, ImportRow)
    assert result.details == {
        "shippingAddress": {
            "name": "Ann",
            "line1": "Hauptstraße 5",
            "line2": "Hinterhaus",
            "postalCode": "10115",
            "city": "Berlin",
            "region": "Brandenburg",
            "countryCode": "DE",
        },
        "billingAddress": {"line1": "Markt 1", "city": "München"},
    }
    bad = checked(
        "Email",
        "Billing Address",
        "Billing Name",
        cells=["a@example.com", "Street 1, 123456789012345678901 Town", "n" * 201],
    )
    assert bad == [
        RowProblem(2, "Billing Name", "Name is longer than 200 characters.", "TOO_LONG"),
        RowProblem(2, "Billing Address", "Postal code is longer than 20 characters.", "TOO_LONG"),
    ]


def test_a_phone_is_read_in_the_shipping_country_else_the_billing_country() -> None:
    def phone(**cells: str) -> Any:
        result = check_row(2, *row(Email="a@example.com", Phone="0201 2345678", **cells))
        return result.details.get("phone") if isinstance(result, ImportRow) else result

    assert phone(Billing_Country_Code="DE") == "+492012345678"
    assert phone(Shipping_Country_Code="GB") == "+442012345678"
    assert phone(Shipping_Country_Code="GB", Billing_Country_Code="DE") == "+442012345678"
    assert phone(Shipping_City="London", Billing_Country_Code="DE") == "+492012345678"
    assert phone() == [RowProblem(2, "Phone", "Phone number is not valid.", "INVALID")]
    assert phone(Shipping_Country_Code="de") == "+492012345678"


def test_labels_are_trimmed_and_one_per_spelling_and_bad_ones_refused() -> None:
    result = checked("Email", "Labels", cells=["a@example.com", "  Gold ,  big   spender,GOLD"])
    assert isinstance(result, ImportRow) and result.labels == ["Gold", "big spender"]
    assert checked("Email", "Labels", cells=["a@example.com", "Gold,,Silver"]) == [
        RowProblem(2, "Labels", "A label must not be empty.", "REQUIRED")
    ]
    result = checked("Email", "Labels", cells=["a@example.com", "x" * 100])
    assert isinstance(result, ImportRow) and result.labels == ["x" * 100]


# ---------------------------------------------------------------- consent and new documents


def test_consent_from_a_file_is_recorded_as_an_import_by_its_author() -> None:
    stored_consent, logged = imports._consent_from_import("PENDING", "Importer", EARLIER)
    event = {
        "state": "PENDING",
        "optInLevel": "UNKNOWN",
        "at": EARLIER,
        "source": "IMPORT",
        "actor": "Importer",
        "evidence": "CSV import",
    }
    assert stored_consent == {
        "state": "PENDING",
        "optInLevel": "UNKNOWN",
        "at": EARLIER,
        "source": "IMPORT",
        "history": [event],
    }
    assert isinstance(logged["_id"], ObjectId)
    assert entries_without_ids([logged]) == [
        {
            "kind": "CONSENT_CHANGED",
            "at": EARLIER,
            "text": "Marketing consent: PENDING (IMPORT)",
            "author": "Importer",
        }
    ]


def test_only_a_state_other_than_not_subscribed_is_recorded() -> None:
    def state(value: str | None) -> str | None:
        return imports._consent_to_record(ImportRow(2, "a@x.io", "a@x.io", {}, [], value))

    assert [
        state(s) for s in (None, "NOT_SUBSCRIBED", "PENDING", "SUBSCRIBED", "UNSUBSCRIBED")
    ] == [
        None,
        None,
        "PENDING",
        "SUBSCRIBED",
        "UNSUBSCRIBED",
    ]


def test_a_new_lead_and_its_log_carry_one_instant_while_the_clock_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks = iter(range(100))

    def moving() -> dt.datetime:
        return NOW + dt.timedelta(seconds=next(ticks))

    for module in (imports, activity, contacts):
        monkeypatch.setattr(module, "now", moving)
    row_ = ImportRow(2, "ann@example.com", "ann@example.com", {}, [], "SUBSCRIBED")

    doc = imports._new_doc(SHOP, row_, "Importer")

    instants = {doc["createdAt"], doc["updatedAt"], doc["consent"]["at"]}
    assert instants | {entry["at"] for entry in doc["activity"]} == {NOW}


def test_a_new_lead_logs_its_creation_and_its_consent_newest_first() -> None:
    row_ = ImportRow(
        2, "Ann@example.com", "ann@example.com", {"firstName": "Ann"}, ["VIP"], "SUBSCRIBED"
    )
    doc = imports._new_doc(SHOP, row_, "Importer")
    assert (doc["shopId"], doc["email"], doc["emailKey"], doc["kind"]) == (
        SHOP,
        "Ann@example.com",
        "ann@example.com",
        "LEAD",
    )
    assert (doc["firstName"], doc["labels"], doc["labelKeys"]) == ("Ann", ["VIP"], ["vip"])
    assert (doc["createdAt"], doc["updatedAt"]) == (NOW, NOW)
    assert entries_without_ids(doc["activity"]) == [
        {
            "kind": "CONSENT_CHANGED",
            "at": NOW,
            "text": "Marketing consent: SUBSCRIBED (IMPORT)",
            "author": "Importer",
        },
        {"kind": "CONTACT_CREATED", "at": NOW, "text": "CSV import", "author": "Importer"},
    ]
    assert (doc["activityCount"], doc["activityEmbedded"]) == (2, 2)
    assert doc["consent"]["state"] == "SUBSCRIBED" and doc["consent"]["at"] == NOW
    assert doc["consent"]["history"][0]["actor"] == "Importer"

    plain = imports._new_doc(SHOP, ImportRow(2, "b@x.io", "b@x.io", {}, [], "NOT_SUBSCRIBED"), "Me")
    assert entries_without_ids(plain["activity"]) == [
        {"kind": "CONTACT_CREATED", "at": NOW, "text": "CSV import", "author": "Me"}
    ]
    assert (plain["activityCount"], plain["activityEmbedded"]) == (1, 1)
    assert plain["consent"] == {"state": "NOT_SUBSCRIBED", "history": []}
    assert plain["labels"] == [] and plain["labelKeys"] == []


# ---------------------------------------------------------------- another writer in between


Action = Callable[[Any], Awaitable[None]]


class _Cursor:
    def __init__(self, cursor: Any, after: Action, database: Any) -> None:
        self.cursor, self.after, self.database = cursor, after, database

    async def to_list(self, *args: Any) -> list[Any]:
        docs = await self.cursor.to_list(*args)
        await self.after(self.database)
        return docs


class _Collection:
    def __init__(self, real: Any, owner: Interleaved) -> None:
        self.real, self.owner = real, owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def find(self, *args: Any, **kwargs: Any) -> Any:
        cursor = self.real.find(*args, **kwargs)
        action = self.owner.take("find", kwargs)
        return _Cursor(cursor, action, self.owner.database) if action else cursor

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        doc = await self.real.find_one(*args, **kwargs)
        action = self.owner.take("find_one", kwargs)
        if action:
            await action(self.owner.database)
        return doc

    async def insert_many(self, *args: Any, **kwargs: Any) -> Any:
        self.owner.inserts += 1
        if self.owner.failures:
            raise self.owner.failures.pop(0)
        return await self.real.insert_many(*args, **kwargs)


class Interleaved:
    """The database as the import sees it, with another writer acting right after one of its reads.

    `after` runs once, right after the first read by `method` of `collection`
    outside a transaction (the import's look-ups); `failures` are raised by
    the first inserts of contacts instead of writing, as when another
    writer committed the same e-mail after the transaction's snapshot.
    """

    def __init__(
        self,
        database: Any,
        collection: str = "contacts",
        method: str = "find",
        after: Action | None = None,
        failures: Sequence[Exception] = (),
    ) -> None:
        self.database, self.collection, self.method = database, collection, method
        self.after = after
        self.failures = list(failures)
        self.inserts = 0

    def take(self, method: str, kwargs: dict[str, Any]) -> Action | None:
        if method != self.method or kwargs.get("session") is not None or self.after is None:
            return None
        action, self.after = self.after, None
        return action

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.database, name)
        return _Collection(real, self) if name == self.collection else real


def duplicate(*codes: int) -> BulkWriteError:
    errors = [{"index": i, "code": code, "errmsg": "taken"} for i, code in enumerate(codes)]
    return BulkWriteError({"writeErrors": errors, "nInserted": 0})


async def contact_events(database: Any, kind: str) -> list[dict[str, Any]]:
    return await database.events.find({"shopId": SHOP, "type": kind}).sort("timestamp").to_list()


async def leads_counted(database: Any, shop_id: str = SHOP) -> int:
    return sum(
        d.get("LEAD", 0) for d in await database.contact_counts.find({"shopId": shop_id}).to_list()
    )


async def snapshot(database: Any) -> dict[str, list[Any]]:
    return {
        name: await database.db[name].find({}).sort("_id").to_list()
        for name in ("contacts", "labels", "shops", "events", "contact_counts", "activity_archive")
    }


def fail_after(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """`imports.<name>` writes what it writes, then the transaction it is part of fails."""
    real = getattr(imports, name)

    async def failing(*args: Any, **kwargs: Any) -> None:
        await real(*args, **kwargs)
        raise RuntimeError(f"{name} failed")

    monkeypatch.setattr(imports, name, failing)


# ---------------------------------------------------------------- the first pass: checking


async def test_new_emails_become_leads_with_their_details_labels_and_consent(shop: Any) -> None:
    database = shop
    text = csv_of(
        ["Email", "First Name", "Labels", "Marketing State", "Billing Country Code", "Phone"],
        ["Ann@Example.com", "Ann", "VIP, Gold", "subscribed", "de", "030 1234567"],
        ["bob@example.org", "", "gold", "not_subscribed", "", ""],
    )

    report = await run(database, text, author="Importer")

    assert summary(report) == (2, 2, 0, 0, 0, 0, True) and report.problems == []
    ann = await stored(database, "ann@example.com")
    assert (ann["email"], ann["kind"], ann["firstName"], ann["phone"]) == (
        "Ann@example.com",
        "LEAD",
        "Ann",
        "+49301234567",
    )
    assert ann["billingAddress"] == {"countryCode": "DE"}
    assert (ann["labels"], ann["labelKeys"]) == (["VIP", "Gold"], ["vip", "gold"])
    assert (ann["createdAt"], ann["updatedAt"]) == (NOW, NOW)
    assert ann["consent"] == {
        "state": "SUBSCRIBED",
        "optInLevel": "UNKNOWN",
        "at": NOW,
        "source": "IMPORT",
        "history": [
            {
                "state": "SUBSCRIBED",
                "optInLevel": "UNKNOWN",
                "at": NOW,
                "source": "IMPORT",
                "actor": "Importer",
                "evidence": "CSV import",
            }
        ],
    }
    assert [e["kind"] for e in ann["activity"]] == ["CONSENT_CHANGED", "CONTACT_CREATED"]
    bob = await stored(database, "bob@example.org")
    assert bob["consent"] == {"state": "NOT_SUBSCRIBED", "history": []}
    assert (bob["labels"], bob["activityCount"]) == (["Gold"], 1)
    assert entries_without_ids(bob["activity"]) == [
        {"kind": "CONTACT_CREATED", "at": NOW, "text": "CSV import", "author": "Importer"}
    ]
    assert await label_docs(database) == {"vip": ("VIP", 1), "gold": ("Gold", 2)}
    assert await label_count(database) == 2
    created = await contact_events(database, "CONTACT_CREATED")
    assert sorted(e["contactId"] for e in created) == sorted([ann["_id"], bob["_id"]])
    assert await leads_counted(database) == 2


async def test_the_author_is_the_import_unless_named(shop: Any) -> None:
    await run(shop, csv_of(["Email"], ["a@example.com"]))
    doc = await stored(shop, "a@example.com")
    assert [(e["kind"], e["author"]) for e in doc["activity"]] == [
        ("CONTACT_CREATED", "CSV import")
    ]


async def test_a_repeated_email_is_reported_against_its_first_row(shop: Any) -> None:
    text = csv_of(
        ["Email", "Phone"],
        ["a@example.com", ""],
        ["b@example.com", "12"],
        ["A@EXAMPLE.com", ""],
        ["b@example.com", ""],
        ["a@example.com", ""],
    )

    report = await run(shop, text, skip_bad_rows=True)

    assert report.problems == [
        RowProblem(3, "Phone", "Phone number is not valid.", "INVALID"),
        RowProblem(4, "Email", "The same email is on row 2.", "INVALID"),
        RowProblem(6, "Email", "The same email is on row 2.", "INVALID"),
    ]
    # Row 3 was bad, so row 5 is the first good one with its address.
    assert summary(report) == (5, 2, 0, 0, 0, 3, True)
    assert await shop.contacts.count_documents({}) == 2


async def test_a_file_that_breaks_half_way_is_refused_before_its_labels_are_counted(
    shop: Any,
) -> None:
    await given_labels(shop, 250)
    text = 'Email,Labels\r\na@example.com,New\r\n"b@example.com,\r\n'

    report = await run(shop, text, skip_bad_rows=True)

    assert report.problems == [
        RowProblem(None, None, "Not a readable CSV file: unexpected end of data.", "INVALID")
    ]
    assert (report.rows, report.written) == (1, False)


@pytest.mark.parametrize(("held", "fits"), [(248, True), (249, False)])
async def test_the_shops_250th_label_is_accepted_and_the_251st_refused(
    shop: Any, held: int, fits: bool
) -> None:
    await given_labels(shop, held, "Old")
    await shop.labels.insert_one(
        {"shopId": OTHER, "key": "new1", "name": "New1", "contactCount": 0, "createdAt": EARLIER}
    )
    text = csv_of(["Email", "Labels"], ["a@example.com", "old, New1"], ["b@example.com", "new2"])
    before = await snapshot(shop)

    for dry_run in (True, False):
        report = await run(shop, text, dry_run=dry_run, skip_bad_rows=True)
        if fits:
            assert report.problems == [] and report.created == 2
        else:
            assert report.problems == [
                RowProblem(
                    None, "Labels", "A shop can have at most 250 distinct labels.", "LIMIT_EXCEEDED"
                )
            ]
            assert (report.created, report.written) == (0, False)
    if fits:
        assert await label_count(shop) == 250
        assert await label_docs(shop) == {
            "old": ("Old", 1),
            "new1": ("New1", 1),
            "new2": ("new2", 1),
        }
    else:
        assert await snapshot(shop) == before


@pytest.mark.parametrize(("labels_in_file", "fits"), [(250, True), (251, False)])
async def test_a_shop_that_never_counted_its_labels_holds_none(
    database: Any, labels_in_file: int, fits: bool
) -> None:
    names = ", ".join(f"L{i}" for i in range(labels_in_file))
    text = csv_of(["Email", "Labels"], ["a@example.com", names])
    await database.shops.insert_one({"_id": SHOP, "name": SHOP})
    for shop_id in (SHOP, "no-such-shop"):
        report = await import_contacts(database, shop_id, opener(text), dry_run=True)
        assert (report.created, bool(report.problems)) == (int(fits), not fits)
    await database.shops.update_one({"_id": SHOP}, {"$set": {"labelCount": None}})
    report = await import_contacts(database, SHOP, opener(text), dry_run=True)
    assert (report.created, bool(report.problems)) == (int(fits), not fits)


async def test_another_shop_s_labels_take_no_place_in_this_one(database: Any) -> None:
    await database.shops.insert_many(
        [
            {"_id": OTHER, "name": OTHER, "labelCount": 250},
            {"_id": SHOP, "name": SHOP, "labelCount": 0},
        ]
    )
    text = csv_of(["Email", "Labels"], ["a@example.com", "New"])

    report = await import_contacts(database, SHOP, opener(text), dry_run=True)

    assert (report.problems, report.created) == ([], 1)


async def test_labels_of_bad_rows_take_no_place_in_the_shop(shop: Any) -> None:
    await given_labels(shop, 249)
    text = csv_of(["Email", "Labels"], ["bad", "Extra"], ["a@example.com", "Kept, KEPT"])

    report = await run(shop, text, skip_bad_rows=True)

    assert (report.created, report.skipped, report.written) == (1, 1, True)
    assert [(p.row, p.column) for p in report.problems] == [(2, "Email")]
    assert await label_docs(shop) == {"kept": ("Kept", 1)}
    assert await label_count(shop) == 250


async def test_labels_taken_by_another_import_since_the_check_refuse_the_import(shop: Any) -> None:
    async def another_import(database: Any) -> None:
        await database.shops.update_one({"_id": SHOP}, {"$set": {"labelCount": 250}})
        await database.labels.insert_many(
            [
                {
                    "shopId": SHOP,
                    "key": f"x{i}",
                    "name": f"X{i}",
                    "contactCount": 1,
                    "createdAt": NOW,
                }
                for i in range(250)
            ]
        )

    racing = Interleaved(shop, "shops", "find_one", another_import)
    text = csv_of(["Email", "Labels"], ["a@example.com", "New"], ["bad", ""])

    report = await run(racing, text, skip_bad_rows=True)

    assert report.problems == [
        RowProblem(3, "Email", report.problems[0].message, "INVALID"),
        RowProblem(
            None, "Labels", "A shop can have at most 250 distinct labels.", "LIMIT_EXCEEDED"
        ),
    ]
    assert (report.created, report.written) == (0, False)
    assert await shop.contacts.count_documents({}) == 0
    assert await shop.labels.count_documents({"key": "new"}) == 0


# ---------------------------------------------------------------- refusing, skipping, dry runs


async def test_bad_rows_stop_the_import_unless_skipped(shop: Any) -> None:
    text = csv_of(
        ["Email", "Labels"], ["a@example.com", "One"], ["broken", ""], ["c@example.com", ""]
    )
    before = await snapshot(shop)

    refused = await run(shop, text)

    assert summary(refused) == (3, 0, 0, 0, 0, 0, False)
    assert [(p.row, p.column) for p in refused.problems] == [(3, "Email")]
    assert await snapshot(shop) == before

    done = await run(shop, text, skip_bad_rows=True)

    assert summary(done) == (3, 2, 0, 0, 0, 1, True)
    assert [(p.row, p.column) for p in done.problems] == [(3, "Email")]
    assert sorted(d["emailKey"] for d in await shop.contacts.find({}).to_list()) == [
        "a@example.com",
        "c@example.com",
    ]


@pytest.mark.parametrize(
    "text",
    ["Email,Size\r\na@example.com,1\r\n", "", 'Email\r\n"a@example.com\r\n', "Phone\r\n1\r\n"],
)
async def test_a_file_problem_cannot_be_skipped(shop: Any, text: str) -> None:
    for dry_run in (False, True):
        report = await run(shop, text, skip_bad_rows=True, dry_run=dry_run)
        assert len(report.problems) == 1
        assert (report.created, report.skipped, report.written) == (0, 0, False)
    assert await shop.contacts.count_documents({}) == 0


async def test_a_dry_run_counts_what_it_would_do_and_writes_nothing(shop: Any) -> None:
    await existing(shop, "free@example.com", firstName="Old")
    await existing(shop, "locked@example.com", firstName="Old", detailsLocked=True)
    await existing(shop, "same@example.com", firstName="Same", labels=["A"], labelKeys=["a"])
    await existing(shop, "labels@example.com", firstName="Same")
    await existing(shop, "consent@example.com")
    asked = {"state": "UNSUBSCRIBED", "at": EARLIER, "history": [{"at": EARLIER}]}
    await existing(shop, "asked@example.com", consent=asked)
    text = csv_of(
        ["Email", "First Name", "Labels", "Marketing State"],
        ["new@example.com", "", "Fresh", ""],
        ["free@example.com", "New", "", ""],
        ["locked@example.com", "New", "Fresh", "SUBSCRIBED"],
        ["same@example.com", "Same", "a", "NOT_SUBSCRIBED"],
        ["labels@example.com", "", "Fresh", ""],
        ["consent@example.com", "", "", "PENDING"],
        ["bad", "", "", ""],
        ["asked@example.com", "", "", "SUBSCRIBED"],
    )
    before = await snapshot(shop)

    report = await run(shop, text, dry_run=True, skip_bad_rows=True)

    assert summary(report) == (8, 1, 3, 2, 1, 1, False)
    assert await snapshot(shop) == before


# ---------------------------------------------------------------- creating


async def test_an_email_another_shop_holds_is_new_here(shop: Any) -> None:
    other = contacts.new_contact(OTHER, "a@example.com", "a@example.com", "LEAD", {}, EARLIER)
    await shop.contacts.insert_one(other)

    report = await run(shop, csv_of(["Email", "First Name"], ["a@example.com", "Ann"]))

    assert summary(report) == (1, 1, 0, 0, 0, 0, True)
    assert (await stored(shop, "a@example.com"))["firstName"] == "Ann"
    assert (await stored(shop, "a@example.com", OTHER))["firstName"] is None


async def test_a_batch_whose_counting_fails_leaves_no_contact(
    shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_after(monkeypatch, "contacts_created")

    with pytest.raises(RuntimeError, match="contacts_created failed"):
        await run(shop, csv_of(["Email"], ["a@example.com"], ["b@example.com"]))

    assert await shop.contacts.count_documents({}) == 0
    assert await shop.events.count_documents({}) == 0
    assert await shop.contact_counts.count_documents({}) == 0


async def test_an_email_created_by_another_writer_since_the_look_up_is_updated_instead(
    shop: Any,
) -> None:
    other = contacts.new_contact(OTHER, "ann@example.com", "ann@example.com", "LEAD", {}, EARLIER)
    await shop.contacts.insert_one(other)

    async def another_writer(database: Any) -> None:
        await existing(database, "ann@example.com", lastName="Lee")

    racing = Interleaved(shop, after=another_writer)
    text = csv_of(
        ["Email", "First Name", "Labels"],
        ["ann@example.com", "Ann", "Gold"],
        ["bob@example.com", "Bob", "Gold"],
    )

    report = await run(racing, text)

    assert summary(report) == (2, 1, 1, 0, 0, 0, True)
    [ann] = await shop.contacts.find({"shopId": SHOP, "emailKey": "ann@example.com"}).to_list()
    assert (ann["kind"], ann["firstName"], ann["lastName"], ann["labels"]) == (
        "CUSTOMER",
        "Ann",
        "Lee",
        ["Gold"],
    )
    assert (await stored(shop, "bob@example.com"))["firstName"] == "Bob"
    assert await leads_counted(shop) == 1
    assert await label_docs(shop) == {"gold": ("Gold", 2)}


@pytest.mark.parametrize("failures", [4, 1])
async def test_an_email_committed_by_another_writer_after_the_snapshot_is_tried_again(
    shop: Any, failures: int
) -> None:
    taken = [
        duplicate(11000) if i % 2 else DuplicateKeyError("taken", 11000) for i in range(failures)
    ]
    racing = Interleaved(shop, failures=taken)

    report = await run(racing, csv_of(["Email"], ["a@example.com"]))

    assert racing.inserts == failures + 1
    assert summary(report) == (1, 1, 0, 0, 0, 0, True)
    assert await shop.contacts.count_documents({"shopId": SHOP}) == 1


async def test_an_import_gives_up_after_five_tries(shop: Any) -> None:
    racing = Interleaved(shop, failures=[duplicate(11000) for _ in range(5)] + [duplicate(11000)])

    with pytest.raises(BulkWriteError):
        await run(racing, csv_of(["Email"], ["a@example.com"]))

    assert racing.inserts == 5
    assert await shop.contacts.count_documents({}) == 0


@pytest.mark.parametrize("codes", [(121,), (11000, 121)])
async def test_a_write_error_other_than_a_taken_email_is_not_tried_again(
    shop: Any, codes: tuple[int, ...]
) -> None:
    racing = Interleaved(shop, failures=[duplicate(*codes)])

    with pytest.raises(BulkWriteError):
        await run(racing, csv_of(["Email"], ["a@example.com"]))

    assert racing.inserts == 1
    assert await shop.contacts.count_documents({}) == 0


# ---------------------------------------------------------------- updating


async def test_an_existing_contact_takes_the_details_that_differ(shop: Any) -> None:
    await existing(shop, "zed@example.com", firstName="Zed", lastName="Other", company="Z")
    ann = await existing(
        shop, "ann@example.com", firstName="Ann", lastName="Old", company="Co", rev=3
    )
    text = csv_of(
        ["Email", "First Name", "Last Name", "Company"], ["ANN@example.com", "Ann", "New", ""]
    )

    report = await run(shop, text, author="Importer")

    assert summary(report) == (1, 0, 1, 0, 0, 0, True)
    after = await stored(shop, "ann@example.com")
    assert (after["firstName"], after["lastName"], after["company"]) == ("Ann", "New", "Co")
    assert (after["nameKey"], after["updatedAt"], after["rev"]) == ("ann new", NOW, 4)
    assert after["detailsLocked"] is False
    assert entries_without_ids(after["activity"]) == [
        {"kind": "DETAILS_UPDATED", "at": NOW, "text": "CSV import", "author": "Importer"}
    ]
    assert (after["activityCount"], after["activityEmbedded"]) == (1, 1)
    [updated] = await contact_events(shop, "CONTACT_UPDATED")
    assert (updated["contactId"], updated["data"]) == (
        ann["_id"],
        {"id": contact_gid(ann["_id"]), "lastName": "New"},
    )


async def test_details_whose_event_cannot_be_written_are_not_changed(
    shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await existing(shop, "ann@example.com", lastName="Old")

    fail_after(monkeypatch, "contact_updated")

    with pytest.raises(RuntimeError, match="contact_updated failed"):
        await run(shop, csv_of(["Email", "Last Name"], ["ann@example.com", "New"]))

    after = await stored(shop, "ann@example.com")
    assert (after["lastName"], after["activity"], after["updatedAt"]) == ("Old", [], EARLIER)
    assert await shop.events.count_documents({}) == 0


async def test_a_change_another_writer_makes_meanwhile_is_not_reported_as_the_imports(
    shop: Any,
) -> None:
    ann = await existing(shop, "ann@example.com", lastName="Old", company="Co")

    async def manual_edit(database: Any) -> None:
        await database.contacts.update_one({"_id": ann["_id"]}, {"$set": {"company": "Other"}})

    # Whenever the other writer comes in, the import's event names its own change alone.
    racing = Interleaved(shop, method="find_one", after=manual_edit)

    report = await run(racing, csv_of(["Email", "Last Name"], ["ann@example.com", "New"]))

    assert report.updated == 1
    [updated] = await contact_events(shop, "CONTACT_UPDATED")
    assert updated["data"] == {"id": contact_gid(ann["_id"]), "lastName": "New"}


async def test_the_same_details_again_change_nothing(shop: Any) -> None:
    await existing(shop, "ann@example.com", firstName="Ann", labels=["VIP"], labelKeys=["vip"])
    await existing(shop, "lock@example.com", firstName="Lo", detailsLocked=True)
    await given_labels(shop, 1, "VIP")
    before = await snapshot(shop)
    text = csv_of(
        ["Email", "First Name", "Labels", "Marketing State"],
        ["ann@example.com", "Ann", "vip", "NOT_SUBSCRIBED"],
        ["lock@example.com", "Lo", "", ""],
    )

    report = await run(shop, text)

    assert summary(report) == (2, 0, 0, 2, 0, 0, True)
    assert await snapshot(shop) == before


async def test_locked_details_stay_but_labels_and_a_first_consent_are_still_taken(
    shop: Any,
) -> None:
    lock = await existing(shop, "lock@example.com", firstName="Lo", detailsLocked=True)
    await existing(shop, "also@example.com", lastName="Al", detailsLocked=True)
    text = csv_of(
        ["Email", "First Name", "Labels", "Marketing State"],
        ["lock@example.com", "Changed", "Gold", "PENDING"],
        ["also@example.com", "New", "", ""],
    )

    report = await run(shop, text)

    assert summary(report) == (2, 0, 0, 0, 2, 0, True)
    assert (await stored(shop, "also@example.com"))["firstName"] is None
    after = await stored(shop, "lock@example.com")
    assert (after["firstName"], after["labels"], after["consent"]["state"]) == (
        "Lo",
        ["Gold"],
        "PENDING",
    )
    assert [e["kind"] for e in after["activity"]] == ["CONSENT_CHANGED"]
    assert await contact_events(shop, "CONTACT_UPDATED") == []
    assert [e["contactId"] for e in await contact_events(shop, "LABELS_CHANGED")] == [lock["_id"]]


@pytest.mark.parametrize("change", ["locked", "deleted"])
async def test_details_locked_or_the_contact_deleted_since_the_look_up_are_left(
    shop: Any, change: str
) -> None:
    ann = await existing(shop, "ann@example.com", firstName="Ann")

    async def manual_edit(database: Any) -> None:
        if change == "locked":
            await database.contacts.update_one(
                {"_id": ann["_id"]}, {"$set": {"detailsLocked": True}}
            )
        else:
            await database.contacts.delete_one({"_id": ann["_id"]})

    racing = Interleaved(shop, after=manual_edit)

    report = await run(racing, csv_of(["Email", "First Name"], ["ann@example.com", "Changed"]))

    assert summary(report) == (1, 0, 0, 0, 1, 0, True)
    after = await stored(shop, "ann@example.com")
    assert after is None or (after["firstName"], after["activity"]) == ("Ann", [])
    assert await contact_events(shop, "CONTACT_UPDATED") == []


async def _with_entries(database: Any, email: str, count: int, **fields: Any) -> Any:
    entries = [
        activity.entry("NOTE", text=f"note {i}", at=EARLIER + dt.timedelta(minutes=i))
        for i in range(count)
    ]
    return await existing(
        database, email, activity=entries, activityCount=count, activityEmbedded=count, **fields
    )


@pytest.mark.parametrize(
    ("column", "value"), [("First Name", "New"), ("Marketing State", "SUBSCRIBED")]
)
async def test_a_log_that_reaches_its_bound_is_archived(shop: Any, column: str, value: str) -> None:
    full = await _with_entries(shop, "full@example.com", activity.SPILL_AT - 1)
    short = await _with_entries(shop, "short@example.com", activity.SPILL_AT - 2)
    text = csv_of(["Email", column], ["full@example.com", value], ["short@example.com", value])

    report = await run(shop, text)

    assert report.updated == 2
    [bucket] = await shop.activity_archive.find({}).to_list()
    assert (bucket["contactId"], bucket["count"]) == (full["_id"], activity.BUCKET_SIZE)
    after = await shop.contacts.find_one({"_id": full["_id"]})
    assert (after["activityEmbedded"], after["activityArchived"], after["activityCount"]) == (
        activity.SPILL_AT - activity.BUCKET_SIZE,
        activity.BUCKET_SIZE,
        activity.SPILL_AT,
    )
    assert (await shop.contacts.find_one({"_id": short["_id"]}))[
        "activityEmbedded"
    ] == activity.SPILL_AT - 1


# ---------------------------------------------------------------- consent of existing contacts


async def test_a_contact_never_asked_takes_the_files_consent(shop: Any) -> None:
    ann = await existing(shop, "ann@example.com", firstName="Ann", detailsLocked=True)
    bare = await existing(shop, "bare@example.com")
    await shop.contacts.update_one({"_id": bare["_id"]}, {"$unset": {"consent": ""}})
    text = csv_of(
        ["Email", "Marketing State"],
        ["ann@example.com", "Subscribed"],
        ["bare@example.com", "pending"],
    )

    report = await run(shop, text, author="Importer")

    assert summary(report) == (2, 0, 2, 0, 0, 0, True)
    after = await stored(shop, "ann@example.com")
    assert after["consent"] == {
        "state": "SUBSCRIBED",
        "optInLevel": "UNKNOWN",
        "at": NOW,
        "source": "IMPORT",
        "history": [
            {
                "state": "SUBSCRIBED",
                "optInLevel": "UNKNOWN",
                "at": NOW,
                "source": "IMPORT",
                "actor": "Importer",
                "evidence": "CSV import",
            }
        ],
    }
    assert after["updatedAt"] == NOW
    assert entries_without_ids(after["activity"]) == [
        {
            "kind": "CONSENT_CHANGED",
            "at": NOW,
            "text": "Marketing consent: SUBSCRIBED (IMPORT)",
            "author": "Importer",
        }
    ]
    assert (after["activityCount"], after["activityEmbedded"]) == (1, 1)
    events_ = await contact_events(shop, "CONSENT_CHANGED")
    assert [(e["contactId"], e["data"]) for e in events_] == [
        (
            ann["_id"],
            {
                "id": contact_gid(ann["_id"]),
                "state": "SUBSCRIBED",
                "previousState": "NOT_SUBSCRIBED",
                "optInLevel": "UNKNOWN",
                "source": "IMPORT",
                "at": NOW,
            },
        ),
        (
            bare["_id"],
            {
                "id": contact_gid(bare["_id"]),
                "state": "PENDING",
                "previousState": "NOT_SUBSCRIBED",
                "optInLevel": "UNKNOWN",
                "source": "IMPORT",
                "at": NOW,
            },
        ),
    ]
    assert (await stored(shop, "bare@example.com"))["consent"]["state"] == "PENDING"


async def test_consent_given_since_the_look_up_is_not_overwritten(shop: Any) -> None:
    ann = await existing(shop, "ann@example.com")
    answer = {
        "state": "UNSUBSCRIBED",
        "at": EARLIER,
        "source": "UNSUBSCRIBE_LINK",
        "history": [{"state": "UNSUBSCRIBED", "at": EARLIER}],
    }

    async def unsubscribed(database: Any) -> None:
        await database.contacts.update_one({"_id": ann["_id"]}, {"$set": {"consent": answer}})

    racing = Interleaved(shop, after=unsubscribed)

    report = await run(
        racing, csv_of(["Email", "Marketing State"], ["ann@example.com", "SUBSCRIBED"])
    )

    assert summary(report) == (1, 0, 0, 1, 0, 0, True)
    after = await stored(shop, "ann@example.com")
    assert (after["consent"], after["activity"]) == (answer, [])
    assert await contact_events(shop, "CONSENT_CHANGED") == []


async def test_consent_whose_event_cannot_be_written_is_not_recorded(
    shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await existing(shop, "ann@example.com")

    fail_after(monkeypatch, "consent_changed")

    with pytest.raises(RuntimeError, match="consent_changed failed"):
        await run(shop, csv_of(["Email", "Marketing State"], ["ann@example.com", "SUBSCRIBED"]))

    after = await stored(shop, "ann@example.com")
    assert (after["consent"], after["activity"]) == ({"state": "NOT_SUBSCRIBED", "history": []}, [])
    assert await shop.events.count_documents({}) == 0


# ---------------------------------------------------------------- labels of existing contacts


async def test_an_existing_contact_gains_the_labels_it_lacks(shop: Any) -> None:
    ann = await existing(shop, "ann@example.com", labels=["VIP"], labelKeys=["vip"])
    bob = await existing(shop, "bob@example.com")
    await shop.contacts.update_one({"_id": bob["_id"]}, {"$unset": {"labels": "", "labelKeys": ""}})
    await given_labels(shop, 1, "VIP")
    text = csv_of(
        ["Email", "Labels"],
        ["ann@example.com", "vip, Gold, gold, Silver"],
        ["bob@example.com", "gold, vip"],
        ["new@example.com", "GOLD"],
    )

    report = await run(shop, text)

    assert summary(report) == (3, 1, 2, 0, 0, 0, True)
    after = await stored(shop, "ann@example.com")
    assert (after["labels"], after["labelKeys"], after["updatedAt"]) == (
        ["VIP", "Gold", "Silver"],
        ["vip", "gold", "silver"],
        NOW,
    )
    bob_after = await stored(shop, "bob@example.com")
    assert (bob_after["labels"], bob_after["labelKeys"]) == (["Gold", "VIP"], ["gold", "vip"])
    assert (await stored(shop, "new@example.com"))["labels"] == ["Gold"]
    changed = (
        await shop.events.find({"shopId": SHOP, "type": "LABELS_CHANGED"})
        .sort("contactId")
        .to_list()
    )
    assert [(e["contactId"], e["data"]) for e in changed] == [
        (
            ann["_id"],
            {
                "id": contact_gid(ann["_id"]),
                "labels": ["VIP", "Gold", "Silver"],
                "added": ["Gold", "Silver"],
                "removed": [],
            },
        ),
        (
            bob["_id"],
            {
                "id": contact_gid(bob["_id"]),
                "labels": ["Gold", "VIP"],
                "added": ["Gold", "VIP"],
                "removed": [],
            },
        ),
    ]
    assert await label_docs(shop) == {
        "vip": ("VIP", 1),
        "gold": ("Gold", 3),
        "silver": ("Silver", 1),
    }
    assert await label_count(shop) == 3


async def test_labels_take_the_shops_spelling_whatever_the_files(shop: Any) -> None:
    ann = await existing(shop, "ann@example.com")
    await given_labels(shop, 1, "VIP")
    text = csv_of(
        ["Email", "Labels"],
        ["ann@example.com", "vip, new one"],
        ["bob@example.com", "Vip, NEW  ONE"],
    )

    report = await run(shop, text)

    assert summary(report) == (2, 1, 1, 0, 0, 0, True)
    assert (await stored(shop, "ann@example.com"))["labels"] == ["VIP", "new one"]
    assert (await stored(shop, "bob@example.com"))["labels"] == ["VIP", "new one"]
    assert await label_docs(shop) == {"vip": ("VIP", 2), "new one": ("new one", 2)}
    [changed] = await contact_events(shop, "LABELS_CHANGED")
    assert (changed["contactId"], changed["data"]["added"]) == (ann["_id"], ["VIP", "new one"])


async def test_a_label_given_since_the_look_up_is_neither_added_nor_counted_twice(
    shop: Any,
) -> None:
    ann = await existing(shop, "ann@example.com")
    await given_labels(shop, 1, "Gold")

    async def labels_add(database: Any) -> None:
        await database.contacts.update_one(
            {"_id": ann["_id"]}, {"$push": {"labels": "Gold", "labelKeys": "gold"}}
        )
        await database.labels.update_one(
            {"shopId": SHOP, "key": "gold"}, {"$inc": {"contactCount": 1}}
        )

    racing = Interleaved(shop, after=labels_add)

    report = await run(racing, csv_of(["Email", "Labels"], ["ann@example.com", "gold"]))

    assert summary(report) == (1, 0, 0, 1, 0, 0, True)
    assert (await stored(shop, "ann@example.com"))["labels"] == ["Gold"]
    assert await label_docs(shop) == {"gold": ("Gold", 1)}
    assert await contact_events(shop, "LABELS_CHANGED") == []


async def test_labels_whose_event_cannot_be_written_are_not_added(
    shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await existing(shop, "ann@example.com")

    fail_after(monkeypatch, "emit")

    with pytest.raises(RuntimeError, match="emit failed"):
        await run(shop, csv_of(["Email", "Labels"], ["ann@example.com", "Gold, Silver"]))

    after = await stored(shop, "ann@example.com")
    assert (after["labels"], after["updatedAt"]) == ([], EARLIER)
    assert await shop.events.count_documents({}) == 0


# ---------------------------------------------------------------- batches


async def test_rows_are_written_a_batch_at_a_time_with_progress(
    shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "IMPORT_BATCH", 2)
    seen: list[tuple[int, int]] = []
    five = [[f"p{i}@example.com"] for i in range(5)]

    report = await run(
        shop, csv_of(["Email"], *five), progress=lambda n, total: seen.append((n, total))
    )

    assert seen == [(2, 5), (2, 5), (1, 5)]
    assert report.created == 5
    seen.clear()
    four = [[f"q{i}@example.com"] for i in range(4)]
    rows = [four[0], ["bad"], *four[1:], ["p0@example.com"]]

    report = await run(
        shop,
        csv_of(["Email"], *rows),
        skip_bad_rows=True,
        progress=lambda n, total: seen.append((n, total)),
    )

    assert seen == [(2, 5), (2, 5), (1, 5)]
    assert (report.created, report.unchanged, report.skipped) == (4, 1, 1)


async def test_a_batch_holds_500_rows(shop: Any) -> None:
    seen: list[tuple[int, int]] = []
    rows = [[f"p{i}@example.com"] for i in range(501)]

    report = await run(
        shop,
        csv_of(["Email"], *rows),
        dry_run=True,
        progress=lambda n, total: seen.append((n, total)),
    )

    assert seen == [(500, 501), (1, 501)]
    assert report.created == 501
