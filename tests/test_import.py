"""Importing leads from CSV: checked first, nothing half-written, locked details respected."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest
from conftest import OTHER_SHOP, SHOP
from list_factories import add_contacts, at, contact_doc

from graph.cli import main as cli
from resolvers.csv_rows import COLUMNS, csv_text
from resolvers.events import contact_gid
from resolvers.imports import ImportReport, RowProblem, import_contacts

# The one-column addresses of files written before the parts had columns of their own.
OLD_COLUMNS = (
    "First Name",
    "Email",
    "Shipping Name",
    "Shipping Address",
    "Shipping Phone",
    "Billing Address",
)


def csv_file(*rows: dict[str, str], columns: tuple[str, ...] = COLUMNS) -> str:
    for row in rows:
        assert set(row) <= set(columns), set(row) - set(columns)
    defaults = dict.fromkeys(columns, "")
    return csv_text([columns, *[[{**defaults, **row}[c] for c in columns] for row in rows]])


def opener(text: str):
    return lambda: io.StringIO(text, newline="")


async def run(database, text: str, shop: str = SHOP, **options) -> ImportReport:
    return await import_contacts(database, shop, opener(text), **options)


async def snapshot(database) -> dict[str, list]:
    """Everything an import could touch, to show that nothing was written."""
    return {
        "contacts": await database.contacts.find({}, {"activity": 0}).sort("_id").to_list(),
        "labels": await database.labels.find({}, {"_id": 0}).sort("key").to_list(),
        "shops": await database.shops.find({}).sort("_id").to_list(),
    }


async def test_new_emails_become_leads_with_their_details_labels_and_consent(database, keys):
    text = csv_file(
        {
            "Type": "CUSTOMER",
            "Total Orders": "9",
            "First Name": "Ann",
            "Last Name": "Lee",
            "Email": "Ann@Example.com",
            "Phone": "'+49 151 12345678",
            "Company": "'=Lee GmbH",
            "Shipping Name": "Ann Lee",
            "Shipping Address 1": "Hauptstraße 5",
            "Shipping Address 2": "Hinterhaus, rear",
            "Shipping Postal Code": "10115",
            "Shipping City": "Berlin",
            "Shipping Country Code": "de",
            "Shipping Phone": "030 1234567",
            "Billing Company": "Lee, Lee & Partners",
            "Billing Address 1": "Markt 1",
            "Billing Postal Code": "80331",
            "Billing City": "München",
            "Billing Region": "Bayern",
            "Billing Country Code": "DE",
            "Labels": 'VIP, Newsletter, vip, "Wholesale, EU"',
            "Marketing State": "subscribed",
        },
        {"Email": "bob@example.org"},
    )

    report = await run(database, text, author="Importer")

    assert (report.rows, report.created, report.updated, report.problems, report.written) == (
        2,
        2,
        0,
        [],
        True,
    )
    ann = await database.contacts.find_one({"shopId": SHOP, "emailKey": "ann@example.com"})
    assert ann["email"] == "Ann@example.com"  # the domain normalized, the local part as given
    assert ann["kind"] == "LEAD" and ann["orderCount"] == 0
    assert (ann["firstName"], ann["lastName"], ann["phone"], ann["company"]) == (
        "Ann",
        "Lee",
        "+4915112345678",
        "=Lee GmbH",
    )
    assert ann["shippingAddress"] == {
        "name": "Ann Lee",
        "line1": "Hauptstraße 5",
        "line2": "Hinterhaus, rear",
        "postalCode": "10115",
        "city": "Berlin",
        "countryCode": "DE",
        "phone": "+49301234567",
    }
    assert ann["billingAddress"] == {
        "company": "Lee, Lee & Partners",
        "line1": "Markt 1",
        "postalCode": "80331",
        "city": "München",
        "region": "Bayern",
        "countryCode": "DE",
    }
    assert ann["labels"] == ["VIP", "Newsletter", "Wholesale, EU"]
    assert ann["labelKeys"] == ["vip", "newsletter", "wholesale, eu"]
    assert ann["consent"]["state"] == "SUBSCRIBED"
    assert ann["consent"]["source"] == "IMPORT"
    assert [(e["state"], e["source"], e["actor"]) for e in ann["consent"]["history"]] == [
        ("SUBSCRIBED", "IMPORT", "Importer")
    ]
    assert sorted(e["kind"] for e in ann["activity"]) == ["CONSENT_CHANGED", "CONTACT_CREATED"]
    assert ann["activityCount"] == 2
    assert "ann" in ann["searchTerms"] and ann["nameKey"] == "ann lee"
    bob = await database.contacts.find_one({"shopId": SHOP, "emailKey": "bob@example.org"})
    assert bob["consent"] == {"state": "NOT_SUBSCRIBED", "history": []}
    labels = {
        d["key"]: (d["name"], d["contactCount"])
        for d in await database.labels.find({"shopId": SHOP}).to_list()
    }
    assert labels == {
        "vip": ("VIP", 1),
        "newsletter": ("Newsletter", 1),
        "wholesale, eu": ("Wholesale, EU", 1),
    }
    assert (await database.shops.find_one({"_id": SHOP}))["labelCount"] == 3


async def test_files_with_one_address_column_still_import(database, keys):
    text = csv_file(
        {
            "Email": "old@example.com",
            "Shipping Name": "Old Format",
            "Shipping Address": "Hauptstraße 5, Hinterhaus, 10115 Berlin, DE",
            "Shipping Phone": "030 1234567",
            "Billing Address": "Markt 1, 80331 München, DE",
        },
        {"Email": "bad@example.com", "Shipping Address": "Street 1, 123456789012345678901 Town"},
        columns=OLD_COLUMNS,
    )

    report = await run(database, text, skip_bad_rows=True)

    # A problem in a part read from the one column is reported under that column.
    assert [(p.row, p.column, p.code) for p in report.problems] == [
        (3, "Shipping Address", "TOO_LONG")
    ]
    assert (report.created, report.skipped) == (1, 1)
    old = await database.contacts.find_one({"emailKey": "old@example.com"})
    assert old["shippingAddress"] == {
        "name": "Old Format",
        "line1": "Hauptstraße 5",
        "line2": "Hinterhaus",
        "postalCode": "10115",
        "city": "Berlin",
        "countryCode": "DE",
        "phone": "+49301234567",
    }
    assert old["billingAddress"] == {
        "line1": "Markt 1",
        "postalCode": "80331",
        "city": "München",
        "countryCode": "DE",
    }


async def test_an_address_in_both_forms_is_refused(database, keys):
    text = csv_file(
        {"Email": "a@example.com", "Shipping Address": "Main St 1, Berlin", "Shipping City": "X"},
        columns=("Email", "Shipping Address", "Shipping City", "Billing Address", "Billing Phone"),
    )

    report = await run(database, text)

    assert [(p.row, p.column, p.code) for p in report.problems] == [
        (1, "Shipping Address", "INVALID")
    ]
    assert "either as Shipping Address or in its part columns" in report.problems[0].message
    assert await database.contacts.count_documents({}) == 0


async def test_one_bad_row_stops_the_whole_import_and_every_problem_is_reported(database, keys):
    await add_contacts(database, contact_doc("old@example.com", firstName="Old"))
    before = await snapshot(database)
    text = csv_file(
        {"Email": "good@example.com", "Labels": "Fresh"},
        {"Email": "not-an-email", "Phone": "12", "First Name": "x" * 201},
        {"Email": "old@example.com", "First Name": "New"},
        {"Email": "GOOD@example.com"},
        {
            "Email": "",
            "Marketing State": "MAYBE",
            "Shipping Address 1": "Street 1",
            "Shipping City": "Town",
            "Shipping Country Code": "Deutschland",
            "Shipping Phone": "nope",
        },
    )

    report = await run(database, text)

    assert report.written is False
    assert [(p.row, p.column, p.code) for p in report.problems] == [
        (3, "Email", "INVALID"),
        (3, "First Name", "TOO_LONG"),
        (3, "Phone", "INVALID"),
        (5, "Email", "INVALID"),
        (6, "Email", "REQUIRED"),
        (6, "Shipping Country Code", "TOO_LONG"),
        (6, "Shipping Phone", "INVALID"),
        (6, "Marketing State", "INVALID"),
    ]
    assert str(report.problems[3]) == "row 5, Email: The same email is on row 2. (INVALID)"
    assert report.bad_rows == 3
    assert await snapshot(database) == before


async def test_skip_bad_rows_imports_the_good_ones_and_reports_the_rest(database, keys):
    text = csv_file(
        {"Email": "one@example.com"},
        {"Email": "broken"},
        {"Email": "two@example.com", "Labels": "A"},
    )

    report = await run(database, text, skip_bad_rows=True)

    assert (report.created, report.skipped, report.written) == (2, 1, True)
    assert [(p.row, p.column) for p in report.problems] == [(3, "Email")]
    assert sorted(
        d["emailKey"] for d in await database.contacts.find({"shopId": SHOP}).to_list()
    ) == [
        "one@example.com",
        "two@example.com",
    ]


async def test_existing_contacts_are_updated_only_where_details_are_not_locked(database, keys):
    free, locked = await add_contacts(
        database,
        contact_doc(
            "free@example.com", firstName="Free", lastName="Old", company="Keep Co", labels=["vip"]
        ),
        contact_doc("locked@example.com", firstName="Locked", lastName="Old", detailsLocked=True),
    )
    await database.labels.insert_one(
        {"shopId": SHOP, "key": "vip", "name": "vip", "contactCount": 1, "createdAt": at(0)}
    )
    await database.shops.update_one({"_id": SHOP}, {"$set": {"labelCount": 1}})
    text = csv_file(
        {"Email": "FREE@example.com", "Last Name": "New", "Labels": "VIP, Gold"},
        {
            "Email": "locked@example.com",
            "Last Name": "New",
            "Phone": "+49 30 1234567",
            "Labels": "Gold",
        },
    )

    report = await run(database, text)

    assert (report.created, report.updated, report.locked, report.unchanged) == (0, 1, 1, 0)
    free_after = await database.contacts.find_one({"_id": free["_id"]})
    assert (free_after["firstName"], free_after["lastName"], free_after["company"]) == (
        "Free",
        "New",
        "Keep Co",
    )
    assert free_after["nameKey"] == "free new"
    assert free_after["labelKeys"] == ["vip", "gold"]
    assert free_after["detailsLocked"] is False
    assert [e["kind"] for e in free_after["activity"]][:1] == ["DETAILS_UPDATED"]
    locked_after = await database.contacts.find_one({"_id": locked["_id"]})
    assert (locked_after["lastName"], locked_after["phone"]) == ("Old", None)
    assert locked_after["labelKeys"] == ["gold"]
    counts = {
        d["key"]: d["contactCount"] for d in await database.labels.find({"shopId": SHOP}).to_list()
    }
    assert counts == {"vip": 1, "gold": 2}
    # Each contact that gained a label: one LABELS_CHANGED, written with the labels.
    labelled = await database.events.find({"type": "LABELS_CHANGED"}).sort("contactId").to_list()
    assert [(e["contactId"], e["data"]["labels"], e["data"]["added"]) for e in labelled] == [
        (free["_id"], free_after["labels"], ["Gold"]),
        (locked["_id"], ["Gold"], ["Gold"]),
    ]

    [updated] = await database.events.find({"type": "CONTACT_UPDATED"}).to_list()
    assert updated["contactId"] == free["_id"]
    assert updated["data"] == {"id": contact_gid(free["_id"]), "lastName": "New"}

    again = await run(database, text)
    assert (again.updated, again.locked, again.unchanged) == (0, 1, 1)
    assert await database.events.count_documents({"type": "LABELS_CHANGED"}) == 2
    assert await database.events.count_documents({"type": "CONTACT_UPDATED"}) == 1
    same = csv_file({"Email": "free@example.com", "Last Name": "New", "Labels": "gold"})
    assert (await run(database, same)).unchanged == 1
    assert {
        d["key"]: d["contactCount"] for d in await database.labels.find({"shopId": SHOP}).to_list()
    } == counts


async def test_an_import_never_resubscribes_someone_who_was_asked_before(database, keys):
    gone, never = await add_contacts(
        database,
        contact_doc("gone@example.com"),
        contact_doc("never@example.com", detailsLocked=True),
    )
    event = {
        "state": "UNSUBSCRIBED",
        "optInLevel": None,
        "at": at(1),
        "source": "UNSUBSCRIBE_LINK",
        "actor": None,
        "evidence": None,
    }
    await database.contacts.update_one(
        {"_id": gone["_id"]},
        {
            "$set": {
                "consent": {
                    "state": "UNSUBSCRIBED",
                    "at": at(1),
                    "source": "UNSUBSCRIBE_LINK",
                    "history": [event],
                }
            }
        },
    )

    report = await run(
        database,
        csv_file(
            {"Email": "gone@example.com", "Marketing State": "SUBSCRIBED"},
            {"Email": "never@example.com", "Marketing State": "SUBSCRIBED"},
        ),
    )

    assert (report.problems, report.updated, report.unchanged) == ([], 1, 1)
    after = await database.contacts.find_one({"_id": gone["_id"]})
    assert after["consent"]["state"] == "UNSUBSCRIBED"
    assert after["consent"]["history"] == [event]
    # Never asked before (and consent is not a detail a lock protects): the file's answer is recorded.
    asked = await database.contacts.find_one({"_id": never["_id"]})
    assert asked["consent"]["state"] == "SUBSCRIBED" and asked["consent"]["source"] == "IMPORT"
    assert [e["source"] for e in asked["consent"]["history"]] == ["IMPORT"]
    assert max(asked["activity"], key=lambda e: (e["at"], e["_id"]))["kind"] == "CONSENT_CHANGED"
    assert asked["activityCount"] == never["activityCount"] + 1
    # The shop's endpoints hear of the one change, written with it.
    events = await database.events.find({"type": "CONSENT_CHANGED"}).to_list()
    assert [(e["contactId"], e["data"]["state"], e["data"]["previousState"]) for e in events] == [
        (never["_id"], "SUBSCRIBED", "NOT_SUBSCRIBED")
    ]
    assert events[0]["data"]["source"] == "IMPORT"


async def test_dry_run_reports_what_would_happen_and_writes_nothing(database, keys):
    await add_contacts(
        database,
        contact_doc("old@example.com", firstName="Old"),
        contact_doc("lock@example.com", detailsLocked=True),
    )
    before = await snapshot(database)
    text = csv_file(
        {"Email": "new@example.com", "Labels": "Fresh"},
        {"Email": "old@example.com", "First Name": "Changed"},
        {"Email": "lock@example.com", "First Name": "Changed"},
        {"Email": "old@example.com"},
    )

    report = await run(database, text, dry_run=True)
    assert report.problems == [RowProblem(5, "Email", "The same email is on row 3.", "INVALID")]
    assert report.written is False

    report = await run(database, text, dry_run=True, skip_bad_rows=True)
    assert (report.created, report.updated, report.locked, report.skipped, report.written) == (
        1,
        1,
        1,
        1,
        False,
    )
    assert await snapshot(database) == before


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", RowProblem(None, None, "The file is empty.", "REQUIRED")),
        (
            "First Name,Last Name\r\nAnn,Lee\r\n",
            RowProblem(1, "Email", "The file needs an Email column.", "REQUIRED"),
        ),
        (
            "Email,Shoe Size\r\na@example.com,42\r\n",
            RowProblem(1, "Shoe Size", "Unknown column.", "INVALID"),
        ),
        (
            "Email,email\r\na@example.com,b@example.com\r\n",
            RowProblem(1, "Email", "Column appears twice.", "INVALID"),
        ),
        (
            "Email,Phone\r\na@example.com\r\n",
            RowProblem(2, None, "The row has 1 cells; the header has 2.", "INVALID"),
        ),
        (
            'Email\r\n"a@example.com\r\n',
            RowProblem(None, None, "Not a readable CSV file: unexpected end of data.", "INVALID"),
        ),
    ],
)
async def test_a_file_that_is_not_the_export_format_is_refused(database, keys, text, problem):
    report = await run(database, text)

    assert report.problems == [problem]
    assert report.written is False
    if problem.row in (None, 1):
        # A problem with the file as a whole cannot be skipped row by row.
        assert (await run(database, text, skip_bad_rows=True)).written is False
    assert await database.contacts.count_documents({}) == 0


async def test_a_subset_of_the_columns_in_any_case_and_a_bom_is_fine(database, keys):
    text = "\ufeffeMAIL,labels\r\na@example.com,One\r\n\r\nb@example.com,\r\n"

    report = await run(database, text)

    assert (report.rows, report.created, report.problems) == (2, 2, [])


async def test_the_shop_label_limit_refuses_the_whole_import(database, keys):
    await database.shops.update_one({"_id": SHOP}, {"$set": {"labelCount": 249}})

    report = await run(
        database, csv_file({"Email": "a@example.com", "Labels": "One, Two"}), skip_bad_rows=True
    )

    assert [(p.row, p.column, p.code) for p in report.problems] == [
        (None, "Labels", "LIMIT_EXCEEDED")
    ]
    assert await database.contacts.count_documents({}) == 0
    assert await database.labels.count_documents({}) == 0


async def test_export_then_import_into_another_shop_keeps_every_detail(http, keys, database):
    source = contact_doc(
        "ann@example.com",
        orders=2,
        spent="30",
        labels=["VIP", "+Plus"],
        state="SUBSCRIBED",
        firstName="-Ann",
        lastName="Lee, Jr.",
        phone="+4915112345678",
        company='@Home "Ltd"',
        shippingAddress={
            "name": "Ann",
            "line1": "1 Main St",
            "line2": "Apt 4",
            "postalCode": "94105",
            "city": "San Francisco",
            "region": "CA",
            "countryCode": "US",
            "phone": "+14155550100",
        },
        billingAddress={
            "name": "Lee",
            "line1": "Damrak 1",
            "postalCode": "1012 AB",
            "city": "Amsterdam",
            "countryCode": "NL",
        },
    )
    await add_contacts(database, source, contact_doc("plain@example.com", created=at(1)))
    exported = await http.get(
        "/exports/contacts.csv",
        params={"bom": "1"},
        headers={"Authorization": f"Bearer {keys['ADMIN']}"},
    )

    report = await run(database, exported.content.decode("utf-8-sig"), shop=OTHER_SHOP)

    assert (report.created, report.problems) == (2, [])
    copy = await database.contacts.find_one({"shopId": OTHER_SHOP, "emailKey": "ann@example.com"})
    for name in (
        "email",
        "firstName",
        "lastName",
        "phone",
        "company",
        "shippingAddress",
        "billingAddress",
        "labels",
    ):
        assert copy[name] == source[name], name
    assert copy["consent"]["state"] == "SUBSCRIBED"
    assert copy["kind"] == "LEAD" and copy["orderCount"] == 0
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"), newline="")))
    assert len(rows) == 3


async def test_the_command_line_import(database, keys, settings, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MONGODB_URI", settings.mongodb_uri)
    monkeypatch.setenv("CONTACTGRAPH_DATABASE", settings.database)
    path = tmp_path / "people.csv"
    path.write_text(
        "\ufeff"
        + csv_file({"Email": "a@example.com"}, {"Email": "bad"}, {"Email": "c@example.com"}),
        encoding="utf-8",
    )

    refused = await asyncio.to_thread(cli.main, ["import", str(path), "--shop", SHOP])
    captured = capsys.readouterr()
    assert refused == 1
    assert "row 3, Email: Email is not valid" in captured.err
    assert "Nothing imported: 1 of 3 rows are bad" in captured.err
    assert await database.contacts.count_documents({}) == 0

    dry = await asyncio.to_thread(
        cli.main, ["import", str(path), "--shop", SHOP, "--dry-run", "--skip-bad-rows"]
    )
    assert dry == 0
    assert "3 rows: 2 would be created" in capsys.readouterr().out
    assert await database.contacts.count_documents({}) == 0

    done = await asyncio.to_thread(
        cli.main, ["import", str(path), "--shop", SHOP, "--skip-bad-rows"]
    )
    assert done == 0
    assert (
        "3 rows: 2 were created, 0 updated, 0 unchanged, 0 kept their locked details, 1 bad rows skipped."
        in capsys.readouterr().out
    )
    assert await database.contacts.count_documents({"shopId": SHOP}) == 2

    assert await asyncio.to_thread(cli.main, ["import", str(tmp_path / "missing.csv")]) == 2
    assert await asyncio.to_thread(cli.main, ["import", str(path), "--shop", "no-such-shop"]) == 2
