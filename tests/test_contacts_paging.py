"""Keyset paging of `contacts`: every sort key, both directions, both ways of paging.

The data set has deliberate ties on every sort key (equal names in any
case, equal times, equal counts and amounts, several null `lastOrderAt`),
so a page boundary that falls inside a group of equal values must neither
repeat nor skip a contact.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from bson import Decimal128
from conftest import OTHER_SHOP, SHOP

from graph.types.node import encode_id
from resolvers.contacts import new_contact
from resolvers.validation import email_key

PAGE_FORWARD = """
query($first: Int, $after: String, $sortKey: ContactSortKey, $reverse: Boolean, $query: String) {
  contacts(first: $first, after: $after, sortKey: $sortKey, reverse: $reverse, query: $query) {
    edges { cursor node { id } }
    nodes { id }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

PAGE_BACKWARD = """
query($last: Int, $before: String, $sortKey: ContactSortKey, $reverse: Boolean) {
  contacts(last: $last, before: $before, sortKey: $sortKey, reverse: $reverse) {
    edges { cursor node { id } }
    nodes { id }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

BOTH_BOUNDS = """
query($first: Int, $last: Int, $after: String, $before: String) {
  contacts(first: $first, last: $last, after: $after, before: $before, sortKey: ORDER_COUNT) {
    nodes { id }
    pageInfo { hasNextPage hasPreviousPage }
  }
}
"""

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)

# first, last, email, createdAt / updatedAt (hours after T0), orderCount, totalSpent,
# lastOrderAt (hours after T0)
ROWS = [
    ("Ann", "Lee", "ann1@example.com", 0, 5, 2, "10.50", 10),
    ("ann", "lee", "ann2@example.com", 0, 5, 2, "10.5", 10),
    ("ANN", "LEE", "ann3@example.com", 0, 5, 0, "0", None),
    (None, None, "zed@example.com", 1, 5, 0, "0", None),
    ("Bob", None, "bob@example.com", 1, 6, 1, "99.99", 20),
    ("Åsa", "Öberg", "asa@example.com", 2, 6, 1, "99.99", 20),
    ("Cleo", "Diaz", "cleo@example.com", 2, 7, 3, "250", 30),
    (None, "Diaz", "diaz@example.com", 3, 7, 3, "250.00", None),
    ("Cleo", "Diaz", "cleo2@example.com", 3, 8, 0, "0", None),
    ("Eve", "Ng", "eve@example.com", 4, 8, 5, "1000", 30),
    ("eve", "ng", "eve2@example.com", 4, 9, 5, "1000.0", 40),
]

SORT_FIELDS = {
    "CREATED_AT": "createdAt",
    "UPDATED_AT": "updatedAt",
    "NAME": "nameKey",
    "EMAIL": "emailKey",
    "LAST_ORDER_AT": "lastOrderAt",
    "ORDER_COUNT": "orderCount",
    "TOTAL_SPENT": "totalSpent",
}


def _hours(offset: int | None) -> dt.datetime | None:
    return None if offset is None else T0 + dt.timedelta(hours=offset)


async def _seed(database) -> list[dict]:
    docs = []
    for first, last, email, created, updated, count, spent, last_order in ROWS:
        doc = new_contact(
            SHOP,
            email,
            email_key(email),
            "CUSTOMER" if count else "LEAD",
            {"firstName": first, "lastName": last},
            _hours(created),
        )
        doc.update(updatedAt=_hours(updated), orderCount=count, totalSpent=Decimal128(spent))
        # Contacts without orders have no lastOrderAt; older data stored null.
        # Both sort as null, and cursors over them must agree.
        if last_order is not None or len(docs) % 2:
            doc["lastOrderAt"] = _hours(last_order)
        docs.append(doc)
    await database.contacts.insert_many(docs)
    # Another shop's contacts must never show up between ours.
    stranger = new_contact(
        OTHER_SHOP, "ann1@example.com", "ann1@example.com", "LEAD", {"firstName": "Ann"}, T0
    )
    await database.contacts.insert_one(stranger)
    return docs


def _sortable(value):
    # MongoDB puts null before every value; Decimal128 compares as a number.
    if value is None:
        return (0, 0)
    if isinstance(value, Decimal128):
        return (1, value.to_decimal())
    return (1, value)


def _expected(docs: list[dict], sort_key: str, reverse: bool) -> list[str]:
    field = SORT_FIELDS[sort_key]
    ordered = sorted(docs, key=lambda d: (_sortable(d.get(field)), d["_id"]), reverse=reverse)
    return [encode_id("Contact", d["_id"]) for d in ordered]


async def _walk_forward(api, sort_key: str, reverse: bool, size: int) -> tuple[list[str], int]:
    ids: list[str] = []
    after = None
    pages = 0
    while True:
        data = await api.data(
            PAGE_FORWARD, {"first": size, "after": after, "sortKey": sort_key, "reverse": reverse}
        )
        conn = data["contacts"]
        pages += 1
        page_ids = [e["node"]["id"] for e in conn["edges"]]
        assert [n["id"] for n in conn["nodes"]] == page_ids
        assert conn["pageInfo"]["hasPreviousPage"] is (after is not None)
        assert conn["pageInfo"]["startCursor"] == conn["edges"][0]["cursor"]
        assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        ids.extend(page_ids)
        if not conn["pageInfo"]["hasNextPage"]:
            return ids, pages
        assert len(page_ids) == size
        after = conn["pageInfo"]["endCursor"]
        assert pages < 20, "paging does not end"


async def _walk_backward(api, sort_key: str, reverse: bool, size: int) -> tuple[list[str], int]:
    ids: list[str] = []
    before = None
    pages = 0
    while True:
        data = await api.data(
            PAGE_BACKWARD, {"last": size, "before": before, "sortKey": sort_key, "reverse": reverse}
        )
        conn = data["contacts"]
        pages += 1
        page_ids = [e["node"]["id"] for e in conn["edges"]]
        assert conn["pageInfo"]["hasNextPage"] is (before is not None)
        ids[:0] = page_ids
        if not conn["pageInfo"]["hasPreviousPage"]:
            return ids, pages
        assert len(page_ids) == size
        before = conn["pageInfo"]["startCursor"]
        assert pages < 20, "paging does not end"


@pytest.mark.parametrize("reverse", [False, True], ids=["ascending", "descending"])
@pytest.mark.parametrize("sort_key", list(SORT_FIELDS))
async def test_every_sort_key_pages_without_repeats_or_gaps(api, database, sort_key, reverse):
    docs = await _seed(database)
    stored = await database.contacts.find({"shopId": SHOP}).to_list()
    expected = _expected(stored, sort_key, reverse)
    assert len(expected) == len(docs) == 11

    forward, forward_pages = await _walk_forward(api, sort_key, reverse, 3)
    backward, backward_pages = await _walk_backward(api, sort_key, reverse, 3)

    assert forward == expected
    assert backward == expected
    assert forward_pages == backward_pages == 4


async def test_pages_of_one_step_through_every_tie(api, database):
    docs = await _seed(database)
    stored = await database.contacts.find({"shopId": SHOP}).to_list()
    for sort_key in ("NAME", "TOTAL_SPENT", "LAST_ORDER_AT"):
        forward, pages = await _walk_forward(api, sort_key, False, 1)
        assert forward == _expected(stored, sort_key, False)
        assert pages == len(docs)


async def test_ties_are_real_in_the_data_set(database):
    """Guards the data set itself: without ties the paging tests above would prove little."""
    docs = await _seed(database)
    for field in ("createdAt", "updatedAt", "nameKey", "orderCount", "lastOrderAt"):
        values = [d.get(field) for d in docs]
        assert len(set(values)) < len(values), field
    amounts = [d["totalSpent"].to_decimal() for d in docs]
    assert len(set(amounts)) < len(amounts)
    assert sum(1 for d in docs if "lastOrderAt" not in d) >= 2
    assert sum(1 for d in docs if "lastOrderAt" in d and d["lastOrderAt"] is None) >= 2
    # Equal names in different letter cases share one sort key.
    assert docs[0]["nameKey"] == docs[1]["nameKey"] == docs[2]["nameKey"] == "ann lee"


async def test_search_and_paging_combine(api, database):
    docs = await _seed(database)
    # Both words must match: "ANN lee" finds the three Anns in any letter case.
    anns = [d for d in docs if d["nameKey"] == "ann lee"]
    expected = [encode_id("Contact", d["_id"]) for d in sorted(anns, key=lambda d: d["_id"])]
    data = await api.data(PAGE_FORWARD, {"first": 2, "sortKey": "NAME", "query": "ANN lee"})
    assert [n["id"] for n in data["contacts"]["nodes"]] == expected[:2]
    assert data["contacts"]["pageInfo"]["hasNextPage"] is True
    after = data["contacts"]["pageInfo"]["endCursor"]
    data = await api.data(
        PAGE_FORWARD, {"first": 2, "after": after, "sortKey": "NAME", "query": "ANN lee"}
    )
    assert [n["id"] for n in data["contacts"]["nodes"]] == expected[2:]
    assert data["contacts"]["pageInfo"]["hasNextPage"] is False


async def test_default_order_is_created_at_then_id(api, database):
    docs = await _seed(database)
    data = await api.data("{ contacts { nodes { id } pageInfo { hasNextPage hasPreviousPage } } }")
    assert [n["id"] for n in data["contacts"]["nodes"]] == _expected(docs, "CREATED_AT", False)
    assert data["contacts"]["pageInfo"] == {"hasNextPage": False, "hasPreviousPage": False}


async def test_first_with_before_and_last_with_after_honour_both_bounds(api, database):
    docs = await _seed(database)
    expected = _expected(docs, "ORDER_COUNT", False)
    page = await api.data(PAGE_FORWARD, {"first": 2, "sortKey": "ORDER_COUNT"})
    after = page["contacts"]["edges"][1]["cursor"]  # after the 2nd contact
    page = await api.data(PAGE_FORWARD, {"first": 8, "sortKey": "ORDER_COUNT"})
    before = page["contacts"]["edges"][7]["cursor"]  # before the 8th contact

    window = await api.data(BOTH_BOUNDS, {"first": 10, "after": after, "before": before})
    assert [n["id"] for n in window["contacts"]["nodes"]] == expected[2:7]
    assert window["contacts"]["pageInfo"] == {"hasNextPage": True, "hasPreviousPage": True}

    window = await api.data(BOTH_BOUNDS, {"first": 2, "after": after, "before": before})
    assert [n["id"] for n in window["contacts"]["nodes"]] == expected[2:4]
    assert window["contacts"]["pageInfo"]["hasNextPage"] is True

    window = await api.data(BOTH_BOUNDS, {"last": 2, "after": after, "before": before})
    assert [n["id"] for n in window["contacts"]["nodes"]] == expected[5:7]
    assert window["contacts"]["pageInfo"] == {"hasNextPage": True, "hasPreviousPage": True}


async def test_cursor_of_another_sort_key_is_refused(api, database):
    await _seed(database)
    page = await api.data(PAGE_FORWARD, {"first": 2, "sortKey": "NAME"})
    cursor = page["contacts"]["pageInfo"]["endCursor"]
    body = await api.gql(PAGE_FORWARD, {"first": 2, "after": cursor, "sortKey": "EMAIL"})
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "sort" in body["errors"][0]["message"]


async def test_largest_page_and_empty_list(api, database):
    empty = await api.data(PAGE_FORWARD, {"first": 250})
    assert empty["contacts"]["edges"] == []
    assert empty["contacts"]["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": None,
        "endCursor": None,
    }
    docs = await _seed(database)
    full = await api.data(PAGE_FORWARD, {"first": 250, "sortKey": "TOTAL_SPENT", "reverse": True})
    assert [n["id"] for n in full["contacts"]["nodes"]] == _expected(docs, "TOTAL_SPENT", True)
    assert full["contacts"]["pageInfo"]["hasNextPage"] is False
    last = await api.data(PAGE_BACKWARD, {"last": 250, "sortKey": "EMAIL"})
    assert [n["id"] for n in last["contacts"]["nodes"]] == _expected(docs, "EMAIL", False)
    assert last["contacts"]["pageInfo"]["hasPreviousPage"] is False


async def test_amounts_equal_as_numbers_tie_whatever_their_spelling(database):
    docs = await _seed(database)
    spelled = {
        str(d["totalSpent"]) for d in docs if d["totalSpent"].to_decimal() == Decimal("10.5")
    }
    assert spelled == {"10.50", "10.5"}
