"""N+1 guard: the MongoDB commands a request sends do not grow with the page size."""

from __future__ import annotations

import datetime as dt

import pytest
from bson import Decimal128
from conftest import SHOP

from graph.types.node import encode_id
from resolvers.contact_counts import rebuild_counts
from resolvers.contacts import new_contact

ALL_SCALARS = """
  id email firstName lastName displayName phone company kind labels hasAccount detailsLocked
  orderCount totalSpent { amount currencyCode } averageOrderValue { amount currencyCode }
  firstOrderAt lastOrderAt createdAt updatedAt
  consent { state optInLevel updatedAt source history { state at source actor evidence } }
  shippingAddress { name line1 city countryCode phone }
  billingAddress { name line1 city countryCode }
"""

PAGE = (
    "query($first: Int) { contacts(first: $first, sortKey: NAME) { nodes {" + ALL_SCALARS + "} } }"
)
PAGE_WITH_COUNT = (
    "query($first: Int) { contacts(first: $first, sortKey: NAME) { totalCount nodes {"
    + ALL_SCALARS
    + "} pageInfo { hasNextPage endCursor } } }"
)


async def _seed(database, n: int) -> list[dict]:
    at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    docs = []
    for i in range(n):
        doc = new_contact(
            SHOP,
            f"person{i:03}@example.com",
            f"person{i:03}@example.com",
            "CUSTOMER",
            {
                "firstName": f"First{i:03}",
                "lastName": "Last",
                "shippingAddress": {
                    "name": "X",
                    "line1": "Road 1",
                    "city": "Town",
                    "countryCode": "DE",
                },
            },
            at + dt.timedelta(minutes=i),
            labels=["VIP"],
        )
        doc.update(orderCount=2, totalSpent=Decimal128("40.00"), firstOrderAt=at, lastOrderAt=at)
        docs.append(doc)
    await database.contacts.insert_many(docs)
    await rebuild_counts(database, SHOP)  # as the writes that add contacts count them
    return docs


async def _measure(api, commands, query: str, variables: dict | None = None) -> tuple[dict, list]:
    commands.reset()
    data = await api.data(query, variables)
    return data, list(commands.calls)


@pytest.fixture
async def seeded(database):
    """More contacts than the largest page (250)."""
    return await _seed(database, 260)


@pytest.fixture
async def few(database):
    """Enough for the lookups below; the page tests need `seeded`."""
    return await _seed(database, 20)


async def test_a_page_of_50_costs_what_a_page_of_5_costs(api, commands, seeded):
    measured = {}
    for first in (5, 50, 250):
        data, calls = await _measure(api, commands, PAGE, {"first": first})
        assert len(data["contacts"]["nodes"]) == first
        measured[first] = calls
    assert len(measured[50]) == len(measured[5]) == len(measured[250])
    for calls in measured.values():
        # One read of the contacts whatever the page size; the rest is the key look-up.
        assert [name for name, target in calls if target == "contacts"] == ["find"]


async def test_total_count_adds_exactly_one_read_of_the_counters(api, commands, seeded):
    for first in (5, 50, 250):
        data, _ = await _measure(api, commands, PAGE_WITH_COUNT, {"first": first})
        assert data["contacts"]["totalCount"] == 260
        # No count over the contacts (count_documents is an aggregate on the wire).
        assert commands.on("contacts") == ["find"]
        assert commands.on("contact_counts") == ["find"]


async def test_a_count_alone_reads_the_counters_and_no_page(api, commands, seeded):
    for query in (
        "{ contacts { totalCount } }",
        "{ contacts(first: 250, sortKey: NAME) { __typename totalCount } }",
    ):
        data, _ = await _measure(api, commands, query)
        assert data["contacts"]["totalCount"] == 260
        assert commands.on("contacts") == []
        assert commands.on("contact_counts") == ["find"]
    # Anything of the page selected, even through a fragment, reads the page.
    data, _ = await _measure(
        api,
        commands,
        "{ contacts(first: 3) { totalCount ... on ContactConnection { nodes { id } } } }",
    )
    assert len(data["contacts"]["nodes"]) == 3
    assert commands.on("contacts") == ["find"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("first: 0", "`first` must be between 1 and 250, got 0."),
        ("first: 2, last: 2", "Pass either `first` or `last`, not both."),
        ('after: "nonsense"', "Cursor is not valid."),
    ],
)
async def test_a_count_alone_still_refuses_bad_paging_arguments(api, arguments, message):
    body = await api.gql("{ contacts(" + arguments + ") { totalCount } }")
    assert [error["message"] for error in body["errors"]] == [message]
    assert body["data"] is None


async def test_many_contacts_by_id_in_one_request_are_one_read(api, commands, few):
    ids = [encode_id("Contact", d["_id"]) for d in few[:20]]
    fields = " ".join(f'c{i}: contact(id: "{gid}") {{ email }}' for i, gid in enumerate(ids[:10]))
    fields += " " + " ".join(f'n{i}: node(id: "{gid}") {{ id }}' for i, gid in enumerate(ids[10:]))
    data, _ = await _measure(api, commands, "{ " + fields + " }")
    assert data["c3"]["email"] == few[3]["email"]
    assert data["n4"]["id"] == ids[14]
    assert commands.on("contacts") == ["find"]


async def test_many_contacts_by_email_in_one_request_are_one_read(api, commands, few):
    fields = " ".join(
        f'e{i}: contactByEmail(email: "PERSON{i:03}@example.com") {{ id }}' for i in range(15)
    )
    data, _ = await _measure(api, commands, "{ " + fields + " }")
    assert data["e7"]["id"] == encode_id("Contact", few[7]["_id"])
    assert commands.on("contacts") == ["find"]


async def test_the_page_read_leaves_out_the_activity_log(api, commands, monkeypatch, few):
    # The embedded log can be large; a list row never needs it.
    projections = []
    record = commands.started

    def started(event):
        if event.command_name == "find" and event.command.get("find") == "contacts":
            projections.append(event.command.get("projection"))
        record(event)

    monkeypatch.setattr(commands, "started", started)
    await api.data(PAGE, {"first": 5})
    assert len(projections) == 1
    assert projections[0]["activity"] == 0


DELETE = "mutation($ids: [ID!]!) { contactsDelete(ids: $ids) { deletedIds userErrors { code } } }"


async def test_deleting_250_contacts_costs_what_deleting_2_costs(api, commands, database, seeded):
    await database.labels.insert_one(
        {"shopId": SHOP, "key": "vip", "name": "VIP", "contactCount": len(seeded)}
    )
    measured = {}
    for batch in (seeded[:2], seeded[2:252]):
        ids = [encode_id("Contact", d["_id"]) for d in batch]
        data, calls = await _measure(api, commands, DELETE, {"ids": ids})
        assert len(data["contactsDelete"]["deletedIds"]) == len(batch)
        measured[len(batch)] = [name for name, target in calls if target != "api_keys"]
    assert measured[250] == measured[2]
    assert await database.contacts.count_documents({}) == 8
    label = await database.labels.find_one({"shopId": SHOP, "key": "vip"})
    assert label["contactCount"] == 8
