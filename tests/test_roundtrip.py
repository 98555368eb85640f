"""Export, then import the file again: nothing to create, nothing to update.

Contacts are stored the way the API stores them (contactCreate, or the
seed, which runs the same checks); the file is the real export; the import
is a dry run of the real import. Any value the CSV cannot carry back
unchanged (a comma in an address line, a quote in a label, a phone number
that reads back as another) shows up as an update.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import string

from conftest import SHOP, Api
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.cli import main as cli
from graph.cli.seed import seed_shop
from resolvers.imports import ImportReport, import_contacts

CREATE = """
mutation($input: ContactInput!) {
  contactCreate(input: $input) { contact { id } userErrors { field code } }
}
"""

# What people type, and what spreadsheets and CSV treat specially.
TRICKY = ["", "=", "+", "-", "@", "'", '"', ",", " ", "\t", "'=", "=1+2", '"quoted"', "a, b"]
unicode_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20
)
word = st.text(alphabet=string.ascii_letters + "äöüßéçøł -'.", min_size=1, max_size=15)
text = st.builds(
    lambda before, middle, after: before + middle + after,
    st.sampled_from(TRICKY),
    word | unicode_text,
    st.sampled_from(TRICKY),
)
phones = st.sampled_from(
    [
        "+49 30 1234567",
        "030 1234567",
        "(06471) 4379",
        "+49 (0) 9141 777631",
        "00008063608",
        "+1 415 555 0100",
        "+44 20 7946 0958",
        "+39 06 1234 5678",
        "0049 89 123456",
        "12",
    ]
) | st.text(alphabet="0123456789 +()-", min_size=3, max_size=16)
addresses = st.fixed_dictionaries(
    {},
    optional={
        "name": text,
        "company": text,
        "line1": st.sampled_from(["Hauptstraße 5, Hinterhaus", "1 Main St, Apt 4", "Via Roma 3"])
        | text,
        "line2": text,
        "postalCode": st.sampled_from(["10115", "SW1A 2AA", "1012 AB", "94105"]),
        "city": st.sampled_from(["Frankfurt, am Main", "Köln", "San Francisco"]) | text,
        "region": text,
        "countryCode": st.sampled_from(["DE", "de", "US", "GB", "NL", "IT"]),
        "phone": phones,
    },
)
contacts = st.lists(
    st.fixed_dictionaries(
        {
            "email": st.sampled_from(
                ["ann@example.com", "Jürgen.Müller@Example.COM", "o'brien+tag@example.org"]
            ),
        },
        optional={
            "firstName": text,
            "lastName": text,
            "company": text,
            "phone": phones,
            "shippingAddress": addresses,
            "billingAddress": addresses,
            "labels": st.lists(text, max_size=4),
        },
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda c: c["email"].lower(),
)


async def empty_shop(database) -> None:  # type: ignore[no-untyped-def]
    """Each example starts from a shop without contacts or labels."""
    await database.contacts.delete_many({"shopId": SHOP})
    await database.labels.delete_many({"shopId": SHOP})
    await database.shops.update_one({"_id": SHOP}, {"$set": {"labelCount": 0}})


async def export_then_dry_run(api: Api, database) -> tuple[str, ImportReport]:  # type: ignore[no-untyped-def]
    exported = await api.client.get("/exports/contacts.csv", headers=api.headers())
    assert exported.status_code == 200, exported.text
    report = await import_contacts(
        database, SHOP, lambda: io.StringIO(exported.text, newline=""), dry_run=True
    )
    return exported.text, report


@settings(
    max_examples=60,
    deadline=None,
    # The shop is emptied at the start of every example instead.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(people=contacts)
async def test_every_stored_contact_comes_back_unchanged(api, database, people):
    await empty_shop(database)
    stored = 0
    for person in people:
        created = (await api.data(CREATE, {"input": person}))["contactCreate"]
        stored += not created["userErrors"]  # input contactCreate refuses is not stored at all

    text, report = await export_then_dry_run(api, database)

    assert report.problems == [], (report.problems, text)
    assert (report.created, report.updated, report.locked) == (0, 0, 0), text
    assert report.unchanged == report.rows == stored


async def test_a_seeded_shop_exported_and_imported_again_changes_nothing(
    database, keys, settings, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MONGODB_URI", settings.mongodb_uri)
    monkeypatch.setenv("CONTACTGRAPH_DATABASE", settings.database)
    await seed_shop(database, SHOP, 300, orders_per_contact=1)
    path = tmp_path / "contacts.csv"
    capsys.readouterr()

    assert await asyncio.to_thread(cli.main, ["export", "--out", str(path), "--shop", SHOP]) == 0
    assert (
        await asyncio.to_thread(cli.main, ["import", str(path), "--shop", SHOP, "--dry-run"]) == 0
    )

    out = capsys.readouterr()
    assert "300 rows: 0 would be created, 0 updated, 300 unchanged" in out.out, out
    with path.open(encoding="utf-8", newline="") as file:
        phones = [row["Phone"] for row in csv.DictReader(file)]
    # Stored as E.164, as contactCreate stores them (a spreadsheet-safe apostrophe before the +).
    odd = [p for p in phones if not re.fullmatch(r"'\+49\d{6,13}", p)]
    assert len(phones) == 300 and odd == [], odd
