"""Keyset paging's laws: every contact exactly once, cursors that read back as written, exact refusals.

tests/test_contacts_paging.py walks a fixed data set with deliberate ties;
here the data set is generated (nulls, missing values, ties, amounts equal
as numbers but spelled apart), and the page size, sort key and direction
with it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal

import pytest
from bson import Decimal128, ObjectId
from conftest import SHOP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.types.node import encode_id
from loaders.keyset import BadCursor, Page, PageRequest, decode_cursor, encode_cursor, find_page
from resolvers.contacts import new_contact
from resolvers.validation import email_key

PAGE = """
query($first: Int, $last: Int, $after: String, $before: String, $sortKey: ContactSortKey,
      $reverse: Boolean) {
  contacts(first: $first, last: $last, after: $after, before: $before, sortKey: $sortKey,
           reverse: $reverse) {
    nodes { id }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""
SORT_FIELDS = {
    "CREATED_AT": "createdAt",
    "UPDATED_AT": "updatedAt",
    "NAME": "nameKey",
    "EMAIL": "emailKey",
    "LAST_ORDER_AT": "lastOrderAt",
    "ORDER_COUNT": "orderCount",
    "TOTAL_SPENT": "totalSpent",
}
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
MISSING = object()

TIMES = [T0, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=3)]
contacts = st.lists(
    st.fixed_dictionaries(
        {
            "first": st.sampled_from([None, "Ann", "ann", "Bob", "Zoe"]),
            "created": st.sampled_from(TIMES),
            "updated": st.sampled_from(TIMES),
            "last_order": st.sampled_from([MISSING, None, *TIMES]),
            "count": st.sampled_from([0, 1, 1, 7]),
            "spent": st.sampled_from(["0", "10.5", "10.50", "3", "1000"]),
        }
    ),
    max_size=9,
)


def stored_contact(index: int, given: dict | None = None, **fields: object) -> dict:
    given = {
        "first": None,
        "created": T0,
        "updated": T0,
        "last_order": MISSING,
        "count": 0,
        "spent": "0",
        **(given or {}),
        **fields,
    }
    email = f"c{index}@example.com"
    doc = new_contact(
        SHOP, email, email_key(email), "LEAD", {"firstName": given["first"]}, given["created"]
    )
    doc.update(
        updatedAt=given["updated"], orderCount=given["count"], totalSpent=Decimal128(given["spent"])
    )
    if given["last_order"] is not MISSING:
        doc["lastOrderAt"] = given["last_order"]
    return doc


def in_order(docs: list[dict], field: str, reverse: bool) -> list[str]:
    """MongoDB's order: null and missing first, amounts as numbers, ties by _id."""

    def key(doc: dict) -> tuple:
        value = doc.get(field)
        if isinstance(value, Decimal128):
            value = value.to_decimal()
        return (value is not None, value if value is not None else 0, doc["_id"])

    return [encode_id("Contact", d["_id"]) for d in sorted(docs, key=key, reverse=reverse)]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    given_contacts=contacts,
    sort_key=st.sampled_from(list(SORT_FIELDS)),
    reverse=st.booleans(),
    size=st.integers(min_value=1, max_value=4),
)
async def test_paging_visits_every_contact_exactly_once_in_order(
    api, database, given_contacts, sort_key, reverse, size
):
    await database.contacts.delete_many({})
    if given_contacts:
        await database.contacts.insert_many(
            [stored_contact(i, g) for i, g in enumerate(given_contacts)]
        )
    stored = await database.contacts.find({"shopId": SHOP}).to_list()
    expected = in_order(stored, SORT_FIELDS[sort_key], reverse)

    seen: list[str] = []
    after = None
    for _ in range(len(expected) + 1):
        variables = {"first": size, "after": after, "sortKey": sort_key, "reverse": reverse}
        page = (await api.data(PAGE, variables))["contacts"]
        ids = [n["id"] for n in page["nodes"]]
        seen += ids
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        assert len(ids) == size
        after = page["pageInfo"]["endCursor"]

    assert seen == expected
    assert len(set(seen)) == len(stored)


async def test_without_a_size_a_page_holds_50(api, database):
    await database.contacts.insert_many([stored_contact(i, first=f"P{i:02}") for i in range(51)])

    page = (await api.data(PAGE, {"sortKey": "NAME"}))["contacts"]
    rest = (await api.data(PAGE, {"sortKey": "NAME", "after": page["pageInfo"]["endCursor"]}))[
        "contacts"
    ]

    assert len(page["nodes"]) == 50
    assert page["pageInfo"]["hasNextPage"] is True
    assert len(rest["nodes"]) == 1
    assert (rest["pageInfo"]["hasNextPage"], rest["pageInfo"]["hasPreviousPage"]) == (False, True)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"first": 0}, "`first` must be between 1 and 250, got 0."),
        ({"first": 251}, "`first` must be between 1 and 250, got 251."),
        ({"last": 0}, "`last` must be between 1 and 250, got 0."),
        ({"last": 251}, "`last` must be between 1 and 250, got 251."),
        ({"first": 1, "last": 1}, "Pass either `first` or `last`, not both."),
    ],
)
async def test_a_page_size_outside_1_to_250_is_refused_by_name(api, variables, message):
    body = await api.gql(PAGE, variables)

    assert body["data"] is None
    assert [(e["message"], e["extensions"]["code"]) for e in body["errors"]] == [
        (message, "BAD_USER_INPUT")
    ]


async def test_sizes_1_and_250_are_pages(api, database):
    await database.contacts.insert_many([stored_contact(i) for i in range(3)])
    sizes = (({"first": 1}, 1), ({"last": 1}, 1), ({"first": 250}, 3), ({"last": 250}, 3))
    for variables, count in sizes:
        assert len((await api.data(PAGE, variables))["contacts"]["nodes"]) == count


def forged(*parts: object) -> str:
    raw = json.dumps(list(parts)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


OID = "65f0c0ffee0000000000beef"


@pytest.mark.parametrize(
    ("sort_key", "cursor", "message"),
    [
        ("CREATED_AT", "garbage", "Cursor is not valid."),
        ("CREATED_AT", "", "Cursor is not valid."),
        ("CREATED_AT", forged("createdAt", None), "Cursor is not valid."),
        ("CREATED_AT", forged("createdAt", None, "not-an-id"), "Cursor is not valid."),
        ("CREATED_AT", forged("createdAt", {"x": 1}, OID), "unknown value in cursor"),
        ("CREATED_AT", forged("createdAt", ["a"], OID), "unknown value in cursor"),
        ("CREATED_AT", forged("createdAt", {"d": "yesterday"}, OID), "Cursor is not valid."),
        ("TOTAL_SPENT", forged("totalSpent", {"m": "lots"}, OID), "Cursor is not valid."),
        ("CREATED_AT", forged("createdAt", None, OID) + "!", "Cursor is not valid."),
    ],
)
async def test_a_cursor_that_was_not_made_here_is_refused(api, sort_key, cursor, message):
    for variables in ({"first": 2, "after": cursor}, {"last": 2, "before": cursor}):
        body = await api.gql(PAGE, {**variables, "sortKey": sort_key})

        assert body["data"] is None
        assert [(e["message"], e["extensions"]["code"]) for e in body["errors"]] == [
            (message, "BAD_USER_INPUT")
        ]


async def test_a_cursor_of_another_order_says_to_start_again(api):
    cursor = encode_cursor("nameKey", "ann", ObjectId(OID))

    body = await api.gql(PAGE, {"first": 2, "after": cursor, "sortKey": "EMAIL"})

    assert [e["message"] for e in body["errors"]] == [
        "Cursor belongs to another sort order; start again without it."
    ]


async def test_a_cursor_is_at_most_1000_characters(api, database):
    await database.contacts.insert_many(
        [stored_contact(0, first="Zoe"), stored_contact(1, first="Abe")]
    )
    longest = encode_cursor("nameKey", "b" * 709, ObjectId(OID))
    too_long = encode_cursor("nameKey", "b" * 710, ObjectId(OID))
    assert (len(longest), len(too_long)) == (1000, 1002)

    page = await api.data(PAGE, {"first": 5, "after": longest, "sortKey": "NAME"})
    body = await api.gql(PAGE, {"first": 5, "after": too_long, "sortKey": "NAME"})
    # The same cursor with its padding written out reads alike, but is 1001 characters.
    padded = await api.gql(PAGE, {"first": 5, "after": longest + "=", "sortKey": "NAME"})

    assert len(page["contacts"]["nodes"]) == 1  # Zoe, after "bbb…"
    assert [e["message"] for e in body["errors"]] == ["Cursor is not valid."]
    assert [e["message"] for e in padded["errors"]] == ["Cursor is not valid."]


cursor_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.datetimes(timezones=st.just(dt.UTC))
    | st.decimals(
        allow_nan=False, allow_infinity=False, places=4, max_value=10**12, min_value=-(10**12)
    ).map(Decimal128)
)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(list(SORT_FIELDS.values())), value=cursor_values)
def test_a_cursor_reads_back_as_the_row_it_was_made_for(field, value):
    oid = ObjectId()

    cursor = encode_cursor(field, value, oid)

    assert "=" not in cursor and "+" not in cursor and "/" not in cursor
    assert decode_cursor(cursor, field) == (value, oid)


def test_amounts_and_local_times_go_into_a_cursor_as_their_exact_values():
    oid = ObjectId(OID)
    naive = dt.datetime(2025, 3, 1, 12, 0, 0, 123000)

    assert decode_cursor(encode_cursor("lastOrderAt", naive, oid), "lastOrderAt") == (
        naive.replace(tzinfo=dt.UTC),
        oid,
    )
    assert decode_cursor(encode_cursor("totalSpent", Decimal("10.50"), oid), "totalSpent") == (
        Decimal128("10.50"),
        oid,
    )
    with pytest.raises(TypeError, match=r"^cannot put list in a cursor$"):
        encode_cursor("labels", ["VIP"], oid)


def test_a_cursor_decoded_for_another_field_is_refused_whatever_else_is_wrong():
    with pytest.raises(BadCursor) as raised:
        decode_cursor(forged("nameKey", {"m": "lots"}, "nope"), "emailKey")

    assert str(raised.value) == "Cursor belongs to another sort order; start again without it."


def test_a_page_makes_cursors_from_a_nested_sort_field_or_null_where_it_is_missing():
    oid = ObjectId(OID)
    page = Page([], has_next=False, has_previous=False, field="consent.at")
    at = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)

    nested = page.cursor({"_id": oid, "consent": {"at": at}})
    missing = page.cursor({"_id": oid})
    not_an_object = page.cursor({"_id": oid, "consent": "SUBSCRIBED"})

    assert decode_cursor(nested, "consent.at") == (at, oid)
    assert decode_cursor(missing, "consent.at") == (None, oid)
    assert decode_cursor(not_an_object, "consent.at") == (None, oid)


@pytest.mark.parametrize(
    "asked", [{"first": 250}, {"first": 3}, {"last": 3}, {"last": 250}], ids=str
)
async def test_a_page_is_one_find_of_its_rows_and_one_more(database, commands, asked):
    # 253 contacts: more than a page and its look-ahead row, whatever the size.
    await database.contacts.insert_many([stored_contact(i) for i in range(253)])
    commands.reset()

    page = await find_page(
        database.contacts,
        {"shopId": SHOP},
        "emailKey",
        True,
        PageRequest(**asked),
        projection={"email": 1},
    )

    size = next(iter(asked.values()))
    assert len(page.rows) == size
    assert commands.on("contacts") == ["find"]  # no getMore: the whole page in the first reply
    assert all(set(row) == {"_id", "email"} for row in page.rows)
    assert (page.has_next, page.has_previous) == (("first" in asked), ("last" in asked))
