"""GET /exports/contacts.csv and `contactgraph export`: columns, safety, selection, streaming."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import pytest
from bson import Decimal128
from conftest import OTHER_SHOP, SHOP
from hypothesis import given, settings
from hypothesis import strategies as st
from list_factories import add_contacts, at, contact_doc

from graph.cli import main as cli
from graph.http.exports import ExportRequest, csv_pieces
from graph.types.node import encode_id
from resolvers import activity
from resolvers.csv_rows import (
    COLUMNS,
    address_text,
    contact_row,
    csv_text,
    labels_text,
    neutralize,
    parse_address_text,
    parse_labels_text,
    restore,
)

URL = "/exports/contacts.csv"
HEADER = (
    "Type,Account,First Name,Last Name,Email,Phone,Company,Total Orders,Total Spent,Average Order Value,"
    "Currency,Last Order Date,Customer Since,"
    "Shipping Name,Shipping Company,Shipping Address 1,Shipping Address 2,Shipping Postal Code,"
    "Shipping City,Shipping Region,Shipping Country Code,Shipping Phone,"
    "Billing Name,Billing Company,Billing Address 1,Billing Address 2,Billing Postal Code,"
    "Billing City,Billing Region,Billing Country Code,Billing Phone,"
    "Labels,Marketing State,Created At,Active Subscriptions,Member"
)

ANN_SHIPPING = {
    "name": "Ann Lee",
    "line1": "Hauptstraße 5",
    "line2": "Hinterhaus",
    "postalCode": "10115",
    "city": "Berlin",
    "countryCode": "DE",
    "phone": "+493012345678",
}
ANN_BILLING = {
    "name": "Lee GmbH",
    "line1": "Markt 1",
    "postalCode": "80331",
    "city": "München",
    "countryCode": "DE",
}


def ann(**overrides):
    fields = dict(
        kind="CUSTOMER",
        orders=3,
        spent="100.00",
        labels=["VIP", "Newsletter"],
        created=at(0),
        state="SUBSCRIBED",
        firstName="Ann",
        lastName="Lee",
        phone="+4915112345678",
        company="Lee GmbH",
        shippingAddress=ANN_SHIPPING,
        billingAddress=ANN_BILLING,
        hasAccount=True,
        firstOrderAt=at(1),
        lastOrderAt=at(30),
    )
    fields.update(overrides)
    return contact_doc("ann@example.com", **fields)


async def get(http, key: str | None, **params):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return await http.get(URL, params=params, headers=headers)


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def emails_of(text: str) -> list[str]:
    return [row[4] for row in rows_of(text)[1:]]


async def test_columns_and_values_in_the_documented_order(http, keys, database):
    await database.shops.update_one({"_id": SHOP}, {"$set": {"currency": "EUR"}})
    await add_contacts(database, ann(), contact_doc("lead@example.com", created=at(2)))

    response = await get(http, keys["READER"])

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="contacts.csv"'
    assert response.content.startswith(HEADER.encode() + b"\r\n")
    assert not response.content.startswith(b"\xef\xbb\xbf")
    rows = rows_of(response.text)
    assert rows[0] == list(COLUMNS)
    assert dict(zip(COLUMNS, rows[1], strict=True)) == {
        "Type": "CUSTOMER",
        "Account": "yes",
        "First Name": "Ann",
        "Last Name": "Lee",
        "Email": "ann@example.com",
        "Phone": "'+4915112345678",
        "Company": "Lee GmbH",
        "Total Orders": "3",
        "Total Spent": "100.00",
        "Average Order Value": "33.33",
        "Currency": "EUR",
        "Last Order Date": "2025-04-09T08:00:00.000+00:00",
        "Customer Since": "2025-03-11T08:00:00.000+00:00",
        "Shipping Name": "Ann Lee",
        "Shipping Company": "",
        "Shipping Address 1": "Hauptstraße 5",
        "Shipping Address 2": "Hinterhaus",
        "Shipping Postal Code": "10115",
        "Shipping City": "Berlin",
        "Shipping Region": "",
        "Shipping Country Code": "DE",
        "Shipping Phone": "'+493012345678",
        "Billing Name": "Lee GmbH",
        "Billing Company": "",
        "Billing Address 1": "Markt 1",
        "Billing Address 2": "",
        "Billing Postal Code": "80331",
        "Billing City": "München",
        "Billing Region": "",
        "Billing Country Code": "DE",
        "Billing Phone": "",
        "Labels": "VIP, Newsletter",
        "Marketing State": "SUBSCRIBED",
        "Created At": "2025-03-10T08:00:00.000+00:00",
        "Active Subscriptions": "0",
        "Member": "no",
    }
    assert dict(zip(COLUMNS, rows[2], strict=True)) == {
        **dict.fromkeys(COLUMNS, ""),
        "Type": "LEAD",
        "Account": "no",
        "Email": "lead@example.com",
        "Total Orders": "0",
        "Total Spent": "0",
        "Currency": "EUR",
        "Marketing State": "NOT_SUBSCRIBED",
        "Created At": "2025-03-12T08:00:00.000+00:00",
        "Active Subscriptions": "0",
        "Member": "no",
    }
    assert len(rows) == 3


async def test_notes_and_the_activity_log_are_never_exported(http, keys, database):
    note = activity.entry("NOTE", text="Secret: owes us a favour", author="Staff Person", at=at(3))
    doc = ann(activity=[note], activityCount=1, activityEmbedded=1)
    await add_contacts(database, doc)
    await database.activity_archive.insert_one(
        {
            "shopId": SHOP,
            "contactId": doc["_id"],
            "seq": 0,
            "entries": [activity.entry("NOTE", text="Archived secret")],
        }
    )

    response = await get(http, keys["ADMIN"])

    assert response.status_code == 200
    assert "Secret" not in response.text and "secret" not in response.text
    assert "NOTE" not in response.text


async def test_formula_cells_are_neutralized_and_special_characters_quoted(http, keys, database):
    await add_contacts(
        database,
        contact_doc(
            "calc@example.com",
            firstName='=HYPERLINK("http://evil","x")',
            lastName="-2+3",
            company="@SUM(A1:A9)",
            labels=["+1 club", "Comma, inside", 'Quote " inside'],
            billingAddress={
                "name": "\tTabbed",
                "line1": "Line with\nbreak",
                "line2": "Rear, 2nd floor",
                "city": "Köln",
            },
        ),
    )

    response = await get(http, keys["ADMIN"])

    row = dict(zip(COLUMNS, rows_of(response.text)[1], strict=True))
    assert row["First Name"] == '\'=HYPERLINK("http://evil","x")'
    assert row["Last Name"] == "'-2+3"
    assert row["Company"] == "'@SUM(A1:A9)"
    # A label with a comma or a quote is quoted, so the cell reads back as the same labels.
    assert row["Labels"] == '\'+1 club, "Comma, inside", "Quote "" inside"'
    assert parse_labels_text(restore(row["Labels"])) == [
        "+1 club",
        "Comma, inside",
        'Quote " inside',
    ]
    assert row["Billing Name"] == "'\tTabbed"
    assert row["Billing Address 1"] == "Line with\nbreak"
    assert row["Billing Address 2"] == "Rear, 2nd floor" and row["Billing City"] == "Köln"
    # RFC 4180: the quote is doubled inside a quoted field; rows end in CRLF.
    assert '"\'=HYPERLINK(""http://evil"",""x"")"' in response.text
    assert response.text.endswith("\r\n")


async def test_bom_on_request_and_decimals_plain(http, keys, database):
    await add_contacts(
        database,
        contact_doc("big@example.com", orders=7, spent="1234567.5"),
        contact_doc("round@example.com", orders=1, spent="1E+3", created=at(1)),
    )

    response = await get(http, keys["ADMIN"], bom="1")

    assert response.content.startswith(b"\xef\xbb\xbf" + HEADER.encode())
    rows = rows_of(response.content.decode("utf-8-sig"))
    assert [(r[7], r[8], r[9]) for r in rows[1:]] == [
        ("7", "1234567.5", "176366.79"),
        ("1", "1000", "1000.00"),
    ]


async def test_keys_and_roles(http, keys, database):
    await add_contacts(database, ann())
    assert (await get(http, None)).status_code == 401
    assert (await get(http, "cg_admin_wrong")).status_code == 401
    for role, refusal in (
        ("INGEST", "An INGEST key may not export contacts."),
        ("PUBLIC", "A PUBLIC key may not export contacts."),
    ):
        response = await get(http, keys[role])
        assert response.status_code == 403
        assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert response.json()["errors"][0]["message"] == refusal
    for role in ("ADMIN", "STAFF", "READER"):
        assert emails_of((await get(http, keys[role])).text) == ["ann@example.com"]
    assert emails_of((await get(http, keys["OTHER"])).text) == []


@pytest.fixture
async def crowd(database):
    docs = [
        ann(),
        contact_doc(
            "bob@example.org", orders=1, spent="20", created=at(1), firstName="Bob", labels=["vip"]
        ),
        contact_doc("cleo@example.net", created=at(2), firstName="Cleo", company="Stone & Sons"),
        contact_doc(
            "dan@example.com",
            orders=2,
            spent="50",
            created=at(3),
            firstName="Dan",
            state="SUBSCRIBED",
        ),
        contact_doc("other@example.com", shop=OTHER_SHOP, orders=5),
    ]
    await add_contacts(database, *docs)
    return {d["email"]: d for d in docs}


async def test_selection_by_ids_query_filter_and_segment(http, keys, crowd):
    key = keys["READER"]

    def gid(email: str) -> str:
        return encode_id("Contact", crowd[email]["_id"])

    by_ids = await get(
        http,
        key,
        ids=f"{gid('dan@example.com')},{gid('ann@example.com')},{gid('other@example.com')}",
    )
    assert emails_of(by_ids.text) == ["ann@example.com", "dan@example.com"]
    repeated = await http.get(
        URL,
        params=[("ids", gid("bob@example.org")), ("ids", gid("cleo@example.net"))],
        headers={"Authorization": f"Bearer {key}"},
    )
    assert emails_of(repeated.text) == ["bob@example.org", "cleo@example.net"]
    assert emails_of((await get(http, key, query="stone")).text) == ["cleo@example.net"]
    filtered = await get(
        http, key, filter=json.dumps({"labelsAny": ["VIP"], "totalSpentMax": "50"})
    )
    assert emails_of(filtered.text) == ["bob@example.org"]
    assert emails_of((await get(http, key, segment="REPEAT_CUSTOMERS")).text) == [
        "ann@example.com",
        "dan@example.com",
    ]
    first_time = encode_id("Segment", "000000000000000000000001")
    assert emails_of((await get(http, key, segment=first_time)).text) == ["bob@example.org"]
    combined = await get(
        http,
        key,
        segment="REPEAT_CUSTOMERS",
        filter=json.dumps({"marketingState": "SUBSCRIBED", "orderCountMax": 2}),
    )
    assert emails_of(combined.text) == ["dan@example.com"]
    inner = await get(
        http, key, filter=json.dumps({"segment": "REPEAT_CUSTOMERS", "kind": "CUSTOMER"})
    )
    assert emails_of(inner.text) == ["ann@example.com", "dan@example.com"]


async def test_saved_segment_and_sort_order(api, http, keys, crowd):
    created = await api.data(
        "mutation($i: SegmentInput!) { segmentCreate(input: $i) { segment { id } } }",
        {"i": {"name": "Named", "filter": {"kind": "LEAD"}, "query": "cleo"}},
    )
    segment_id = created["segmentCreate"]["segment"]["id"]
    assert emails_of((await get(http, keys["STAFF"], segment=segment_id)).text) == [
        "cleo@example.net"
    ]

    by_spent = await get(http, keys["STAFF"], sortKey="TOTAL_SPENT", reverse="true")
    assert emails_of(by_spent.text) == [
        "ann@example.com",
        "dan@example.com",
        "bob@example.org",
        "cleo@example.net",
    ]
    by_email = await get(http, keys["STAFF"], sortKey="EMAIL")
    assert emails_of(by_email.text) == sorted(emails_of(by_email.text))


@pytest.mark.parametrize(
    ("params", "status", "code", "message"),
    [
        ({"filter": "{not json"}, 400, "BAD_USER_INPUT", "`filter` is not valid JSON"),
        ({"filter": "[1, 2]"}, 400, "BAD_USER_INPUT", "`filter`: A filter is a JSON object"),
        (
            {"filter": '{"kindd": "LEAD"}'},
            400,
            "BAD_USER_INPUT",
            "`filter`: Unknown filter field `kindd`",
        ),
        (
            {"filter": '{"orderCountMin": "two"}'},
            400,
            "BAD_USER_INPUT",
            "`filter`: `orderCountMin` must be a whole number.",
        ),
        (
            {"filter": '{"totalSpentMin": 1.5}'},
            400,
            "BAD_USER_INPUT",
            "`filter`: `totalSpentMin` must be a decimal amount",
        ),
        (
            {"filter": '{"createdAfter": "2025-01-01T00:00:00"}'},
            400,
            "BAD_USER_INPUT",
            "`filter`: `createdAfter` has no UTC offset",
        ),
        (
            {"filter": '{"kind": "ROBOT"}'},
            400,
            "BAD_USER_INPUT",
            "`filter`: `kind` must be one of CUSTOMER, LEAD.",
        ),
        ({"sortKey": "SHOE_SIZE"}, 400, "BAD_USER_INPUT", "`sortKey` must be one of"),
        ({"reverse": "maybe"}, 400, "BAD_USER_INPUT", "`reverse` must be 1 or 0"),
        ({"ids": "bm9wZQ"}, 400, "BAD_USER_INPUT", "ids[0] is not a contact id."),
        ({"ids": " , "}, 400, "BAD_USER_INPUT", "`ids` names no contact."),
        (
            {"ids": encode_id("Contact", "65f000000000000000000000"), "query": "x"},
            400,
            "BAD_USER_INPUT",
            "Select contacts either by `ids`",
        ),
        (
            {"ids": ",".join([encode_id("Contact", "65f000000000000000000000")] * 1001)},
            400,
            "BAD_USER_INPUT",
            "At most 1000 ids",
        ),
        ({"query": "q" * 201}, 400, "BAD_USER_INPUT", "`query` is at most 200 characters."),
        ({"fitler": "{}"}, 400, "BAD_USER_INPUT", "Unknown parameter `fitler`"),
        ({"segment": "NO_SUCH_SEGMENT"}, 404, "NOT_FOUND", "Segment not found."),
        (
            {"segment": encode_id("Segment", "65f000000000000000000000")},
            404,
            "NOT_FOUND",
            "Segment not found.",
        ),
        ({"filter": json.dumps({"segment": "nope"})}, 404, "NOT_FOUND", "Segment not found."),
    ],
)
async def test_bad_requests_are_answered_with_a_json_error_before_any_csv(
    http, keys, crowd, params, status, code, message
):
    response = await get(http, keys["ADMIN"], **params)

    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == code
    assert error["message"].startswith(message), error["message"]


async def test_a_foreign_segment_is_not_found(http, keys, as_role, crowd):
    other = as_role("OTHER")
    data = await other.data(
        "mutation($i: SegmentInput!) { segmentCreate(input: $i) { segment { id } } }",
        {"i": {"name": "X", "filter": {}}},
    )
    response = await get(http, keys["ADMIN"], segment=data["segmentCreate"]["segment"]["id"])
    assert response.status_code == 404


async def test_rows_stream_from_one_cursor_in_batches(served, database, commands):
    docs = [contact_doc(f"p{i:04d}@example.com", created=at(i / 1000)) for i in range(1203)]
    await database.contacts.insert_many(docs)
    request = ExportRequest()

    commands.reset()
    pieces = [(text, n) async for text, n in csv_pieces(database, {"shopId": SHOP}, request, None)]

    # The header, then one piece per batch of 500 as the cursor delivers them.
    assert [n for _, n in pieces] == [0, 500, 500, 203]
    assert commands.on("contacts") == ["find", "getMore", "getMore"]
    text = "".join(t for t, _ in pieces)
    assert emails_of(text) == [d["email"] for d in docs]


async def test_the_command_line_export_writes_the_same_file(
    http, keys, crowd, settings, tmp_path, monkeypatch
):
    monkeypatch.setenv("MONGODB_URI", settings.mongodb_uri)
    monkeypatch.setenv("CONTACTGRAPH_DATABASE", settings.database)
    out = tmp_path / "repeat.csv"

    code = await asyncio.to_thread(
        cli.main,
        [
            "export",
            "--shop",
            SHOP,
            "--out",
            str(out),
            "--segment",
            "REPEAT_CUSTOMERS",
            "--filter",
            '{"labelsNone": ["x"]}',
        ],
    )

    assert code == 0
    served_copy = await get(
        http, keys["ADMIN"], segment="REPEAT_CUSTOMERS", filter='{"labelsNone": ["x"]}'
    )
    assert out.read_bytes() == served_copy.content
    assert emails_of(out.read_text(encoding="utf-8")) == ["ann@example.com", "dan@example.com"]
    assert not (tmp_path / "repeat.csv.part").exists()

    bad = await asyncio.to_thread(
        cli.main, ["export", "--shop", SHOP, "--out", str(tmp_path / "x.csv"), "--filter", "{"]
    )
    assert bad == 2
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.csv.part").exists()


def test_one_column_addresses_of_older_files_read_back_as_written():
    for address in (
        ANN_SHIPPING,
        ANN_BILLING,
        {
            "line1": "1 Main St",
            "line2": "Apt 4",
            "postalCode": "94105",
            "city": "San Francisco",
            "region": "CA",
            "countryCode": "US",
        },
        {
            "line1": "10 Downing Street",
            "postalCode": "SW1A 2AA",
            "city": "London",
            "countryCode": "GB",
        },
        {"line1": "Via Roma 3", "city": "Roma", "countryCode": "IT"},
        {"line1": "Damrak 1", "postalCode": "1012 AB", "city": "Amsterdam", "countryCode": "NL"},
        {"line1": "Only a street"},
    ):
        parsed = parse_address_text(address_text(address))
        expected = {
            k: v
            for k, v in address.items()
            if k in {"line1", "line2", "postalCode", "city", "region", "countryCode"}
        }
        assert parsed == expected


# Any text at all, including the characters CSV and spreadsheets treat specially.
cells = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["=1+2", "+49", "-", "@x", "\t", "\r", "\r\n", "'", "'=", '"', ",", "\n", " ", ""]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(cells, min_size=1, max_size=len(COLUMNS)))
def test_every_value_survives_csv_reader_apart_from_neutralization(values):
    text = csv_text([[neutralize(v) for v in values]])

    (read,) = list(csv.reader(io.StringIO(text, newline="")))

    assert read == [neutralize(v) for v in values]
    assert [restore(cell) for cell in read] == values
    for cell in read:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30
)
# Labels as stored: trimmed, inner whitespace one space, no control characters.
stored_labels = (
    (
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=30)
        | st.sampled_from(['"', '"quoted"', "a, b", ",", "'", "=1", 'say "hi", ok'])
    )
    .map(lambda text: " ".join(text.split()))
    .filter(bool)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(stored_labels, max_size=5))
def test_labels_read_back_as_written(labels):
    # As the import reads the cell: the neutralization taken off, then trimmed.
    cell = restore(neutralize(labels_text(labels))).strip()
    assert parse_labels_text(cell) == labels


@settings(max_examples=150, deadline=None)
@given(
    first=names,
    last=names,
    company=names,
    phone=names,
    email=names,
    # Labels as stored: trimmed, inner whitespace one space, no control characters.
    label_list=st.lists(stored_labels, max_size=3),
    spent=st.decimals(min_value=0, max_value=10**9, places=2),
    count=st.integers(min_value=0, max_value=10**6),
)
def test_every_contact_value_survives_a_round_trip(
    first, last, company, phone, email, label_list, spent, count
):
    doc = contact_doc(
        "x@example.com",
        firstName=first,
        lastName=last,
        company=company,
        phone=phone,
        labels=label_list,
        orders=count,
        spent=str(spent),
    )
    doc["email"] = email

    (read,) = list(csv.reader(io.StringIO(csv_text([contact_row(doc, "EUR")]), newline="")))

    row = dict(zip(COLUMNS, read, strict=True))
    assert restore(row["First Name"]) == first
    assert restore(row["Last Name"]) == last
    assert restore(row["Company"]) == company
    assert restore(row["Phone"]) == phone
    assert restore(row["Email"]) == email
    assert parse_labels_text(restore(row["Labels"])) == label_list
    assert row["Total Orders"] == str(count)
    assert Decimal128(row["Total Spent"]).to_decimal() == spent
    assert "," not in row["Total Spent"] and "E" not in row["Total Spent"]
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in read)
