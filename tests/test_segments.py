"""Segments: saved filters that stay current, the four built-ins, and ContactFilter.segment."""

from __future__ import annotations

import asyncio

from bson import Decimal128
from conftest import OTHER_SHOP, SHOP

from graph.types.node import encode_id
from resolvers.clock import now
from resolvers.contacts import new_contact
from resolvers.segments import SHOP_SEGMENT_LIMIT
from resolvers.validation import email_key

FIRST_TIME_ID = encode_id("Segment", "000000000000000000000001")
REPEAT_ID = encode_id("Segment", "000000000000000000000002")
SUBSCRIBERS_ID = encode_id("Segment", "000000000000000000000003")
MEMBERS_ID = encode_id("Segment", "000000000000000000000004")
BUILT_IN_NAMES = ["First-time customers", "Repeat customers", "Subscribers", "Members"]

SEGMENTS = """
{ segments { id name query filter builtIn key contactCount } }
"""

CREATE = """
mutation($input: SegmentInput!) {
  segmentCreate(input: $input) {
    segment { id name query filter builtIn key contactCount }
    userErrors { field message code }
  }
}
"""

UPDATE = """
mutation($id: ID!, $input: SegmentInput!) {
  segmentUpdate(id: $id, input: $input) {
    segment { id name query filter contactCount }
    userErrors { field message code }
  }
}
"""

DELETE = """
mutation($id: ID!) {
  segmentDelete(id: $id) { segment { id name } userErrors { field message code } }
}
"""

CONTACTS = """
query($filter: ContactFilter, $query: String) {
  contacts(first: 50, filter: $filter, query: $query, sortKey: EMAIL) { totalCount nodes { email } }
}
"""


async def add_contact(
    database, email: str, *, shop: str = SHOP, orders: int = 0, spent: str = "0", **fields
):
    doc = new_contact(
        shop,
        email,
        email_key(email),
        "CUSTOMER" if orders else "LEAD",
        {},
        now(),
        labels=fields.pop("labels", []),
    )
    doc.update(orderCount=orders, totalSpent=Decimal128(spent), **fields)
    await database.contacts.insert_one(doc)
    return doc


async def emails(api, filter: dict, query: str | None = None) -> list[str]:
    data = await api.data(CONTACTS, {"filter": filter, "query": query})
    return [n["email"] for n in data["contacts"]["nodes"]]


async def seed_customers(database):
    await add_contact(database, "lead@example.com")
    await add_contact(database, "once-a@example.com", orders=1, spent="10.00")
    await add_contact(database, "once-b@example.com", orders=1, spent="20.00", labels=["VIP"])
    await add_contact(database, "twice@example.com", orders=2, spent="30.00", labels=["vip"])
    await add_contact(database, "often@example.com", orders=7, spent="300.00")
    await add_contact(database, "elsewhere@example.com", shop=OTHER_SHOP, orders=1)


async def test_built_in_segments_exist_in_every_shop_with_stable_ids_and_exact_counts(
    api, as_role, database
):
    await seed_customers(database)

    data = await as_role("READER").data(SEGMENTS)

    assert data["segments"] == [
        {
            "id": FIRST_TIME_ID,
            "name": "First-time customers",
            "query": None,
            "filter": {"orderCountMin": 1, "orderCountMax": 1},
            "builtIn": True,
            "key": "FIRST_TIME_CUSTOMERS",
            "contactCount": 2,
        },
        {
            "id": REPEAT_ID,
            "name": "Repeat customers",
            "query": None,
            "filter": {"orderCountMin": 2},
            "builtIn": True,
            "key": "REPEAT_CUSTOMERS",
            "contactCount": 2,
        },
        {
            "id": SUBSCRIBERS_ID,
            "name": "Subscribers",
            "query": None,
            "filter": {"hasActiveSubscription": True},
            "builtIn": True,
            "key": "SUBSCRIBERS",
            "contactCount": 0,
        },
        {
            "id": MEMBERS_ID,
            "name": "Members",
            "query": None,
            "filter": {"isMember": True},
            "builtIn": True,
            "key": "MEMBERS",
            "contactCount": 0,
        },
    ]
    other = await as_role("OTHER").data(SEGMENTS)
    assert [(s["id"], s["contactCount"]) for s in other["segments"]] == [
        (FIRST_TIME_ID, 1),
        (REPEAT_ID, 0),
        (SUBSCRIBERS_ID, 0),
        (MEMBERS_ID, 0),
    ]


async def test_a_segment_stays_current_as_contacts_change(api, database):
    await seed_customers(database)
    assert await emails(api, {"segment": REPEAT_ID}) == ["often@example.com", "twice@example.com"]

    # A first-time customer orders again: the stored filter picks that up on the next use.
    await database.contacts.update_one(
        {"shopId": SHOP, "emailKey": "once-a@example.com"}, {"$set": {"orderCount": 2}}
    )

    assert await emails(api, {"segment": REPEAT_ID}) == [
        "often@example.com",
        "once-a@example.com",
        "twice@example.com",
    ]
    assert await emails(api, {"segment": "FIRST_TIME_CUSTOMERS"}) == ["once-b@example.com"]
    data = await api.data(SEGMENTS)
    assert [s["contactCount"] for s in data["segments"]] == [1, 3, 0, 0]


async def test_create_a_segment_and_use_it_as_a_filter_combined_by_and(api, database):
    await seed_customers(database)

    created = await api.data(
        CREATE,
        {
            "input": {
                "name": "  Big VIPs ",
                "query": "example",
                "filter": {"labelsAny": ["VIP"], "totalSpentMin": "15"},
            }
        },
    )

    payload = created["segmentCreate"]
    assert payload["userErrors"] == []
    segment = payload["segment"]
    assert segment["name"] == "Big VIPs"
    assert segment["query"] == "example"
    assert segment["filter"] == {"labelsAny": ["VIP"], "totalSpentMin": "15"}
    assert segment["builtIn"] is False and segment["key"] is None
    assert segment["contactCount"] == 2
    stored = await database.segments.find_one({"shopId": SHOP})
    assert stored["filter"] == {"labelsAny": ["VIP"], "totalSpentMin": "15"}

    assert await emails(api, {"segment": segment["id"]}) == [
        "once-b@example.com",
        "twice@example.com",
    ]
    # Other fields of the filter narrow the segment further (AND).
    assert await emails(api, {"segment": segment["id"], "orderCountMin": 2}) == [
        "twice@example.com"
    ]
    assert await emails(api, {"segment": segment["id"]}, query="twice") == ["twice@example.com"]
    page = await api.data(CONTACTS, {"filter": {"segment": segment["id"], "kind": "LEAD"}})
    assert page["contacts"] == {"totalCount": 0, "nodes": []}
    node = await api.data(
        "query($id: ID!) { node(id: $id) { ... on Segment { name contactCount } } }",
        {"id": segment["id"]},
    )
    assert node["node"] == {"name": "Big VIPs", "contactCount": 2}


async def test_update_replaces_the_filter_and_delete_removes_only_the_segment(api, database):
    await seed_customers(database)
    created = await api.data(
        CREATE, {"input": {"name": "Spenders", "filter": {"totalSpentMin": "100"}}}
    )
    segment_id = created["segmentCreate"]["segment"]["id"]

    updated = await api.data(
        UPDATE,
        {
            "id": segment_id,
            "input": {
                "name": "Small spenders",
                "filter": {"totalSpentMax": "20", "kind": "CUSTOMER"},
            },
        },
    )

    assert updated["segmentUpdate"]["userErrors"] == []
    assert updated["segmentUpdate"]["segment"] == {
        "id": segment_id,
        "name": "Small spenders",
        "query": None,
        "filter": {"kind": "CUSTOMER", "totalSpentMax": "20"},
        "contactCount": 2,
    }
    deleted = await api.data(DELETE, {"id": segment_id})
    assert deleted["segmentDelete"] == {
        "segment": {"id": segment_id, "name": "Small spenders"},
        "userErrors": [],
    }
    assert await database.segments.count_documents({}) == 0
    assert await database.contacts.count_documents({"shopId": SHOP}) == 5
    assert (await database.shops.find_one({"_id": SHOP}))["segmentCount"] == 0
    again = await api.data(DELETE, {"id": segment_id})
    assert again["segmentDelete"]["userErrors"] == [
        {"field": ["id"], "message": "Segment not found.", "code": "NOT_FOUND"}
    ]


async def test_built_in_segments_cannot_be_changed_or_deleted(api, database):
    for mutation, variables, name in (
        (UPDATE, {"id": REPEAT_ID, "input": {"name": "Mine", "filter": {}}}, "segmentUpdate"),
        (DELETE, {"id": FIRST_TIME_ID}, "segmentDelete"),
    ):
        data = await api.data(mutation, variables)
        assert data[name]["segment"] is None
        assert data[name]["userErrors"] == [
            {
                "field": ["id"],
                "message": "Built-in segments cannot be changed or deleted.",
                "code": "NOT_ALLOWED",
            }
        ]
    data = await api.data(SEGMENTS)
    assert [s["name"] for s in data["segments"]] == BUILT_IN_NAMES
    assert await database.segments.count_documents({}) == 0


async def test_bad_segment_input_is_refused_field_by_field_and_nothing_is_stored(api, database):
    await api.data(CREATE, {"input": {"name": "Taken", "filter": {}}})
    cases = [
        ({"name": "   ", "filter": {}}, ["input", "name"], "REQUIRED"),
        ({"name": "x" * 101, "filter": {}}, ["input", "name"], "TOO_LONG"),
        ({"name": "bad\u0007name", "filter": {}}, ["input", "name"], "INVALID"),
        ({"name": "TAKEN", "filter": {}}, ["input", "name"], "TAKEN"),
        ({"name": "repeat  customers", "filter": {}}, ["input", "name"], "TAKEN"),
        ({"name": "Q", "query": "q" * 201, "filter": {}}, ["input", "query"], "TOO_LONG"),
        (
            {"name": "N", "filter": {"orderCountMin": -1}},
            ["input", "filter", "orderCountMin"],
            "INVALID",
        ),
        (
            {"name": "L", "filter": {"labelsAll": ["x" * 101]}},
            ["input", "filter", "labelsAll"],
            "INVALID",
        ),
        (
            {"name": "S", "filter": {"segment": REPEAT_ID}},
            ["input", "filter", "segment"],
            "INVALID",
        ),
    ]
    for input, field, code in cases:
        data = await api.data(CREATE, {"input": input})
        payload = data["segmentCreate"]
        assert payload["segment"] is None, input
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(field, code)], input
    assert [d["name"] for d in await database.segments.find({}).to_list()] == ["Taken"]
    assert (await database.shops.find_one({"_id": SHOP}))["segmentCount"] == 1


async def test_renaming_onto_another_name_is_taken_and_changes_nothing(api, database):
    first = (await api.data(CREATE, {"input": {"name": "One", "filter": {"kind": "LEAD"}}}))[
        "segmentCreate"
    ]["segment"]
    await api.data(CREATE, {"input": {"name": "Two", "filter": {}}})

    data = await api.data(UPDATE, {"id": first["id"], "input": {"name": "two", "filter": {}}})

    assert data["segmentUpdate"]["userErrors"][0]["code"] == "TAKEN"
    stored = await database.segments.find_one({"name": "One"})
    assert stored["filter"] == {"kind": "LEAD"}


async def test_unknown_or_foreign_segment_in_a_filter_is_not_found(api, as_role, database):
    await seed_customers(database)
    other = as_role("OTHER")
    foreign = (await other.data(CREATE, {"input": {"name": "Theirs", "filter": {}}}))[
        "segmentCreate"
    ]["segment"]["id"]

    for ref in (
        foreign,
        encode_id("Segment", "65f000000000000000000000"),
        "not-an-id",
        encode_id("Contact", "65f000000000000000000000"),
    ):
        body = await api.gql(CONTACTS, {"filter": {"segment": ref}})
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"], ref
        assert body["errors"][0]["message"] == "Segment not found."
    for mutation, variables, name in (
        (UPDATE, {"id": foreign, "input": {"name": "Mine", "filter": {}}}, "segmentUpdate"),
        (DELETE, {"id": foreign}, "segmentDelete"),
        (DELETE, {"id": "garbage"}, "segmentDelete"),
    ):
        data = await api.data(mutation, variables)
        assert data[name]["userErrors"] == [
            {"field": ["id"], "message": "Segment not found.", "code": "NOT_FOUND"}
        ]
    assert (await database.segments.find_one({"shopId": OTHER_SHOP}))["name"] == "Theirs"
    node = await api.data("query($id: ID!) { node(id: $id) { id } }", {"id": foreign})
    assert node["node"] is None


async def test_readers_may_list_but_not_change_segments(as_role, database):
    reader = as_role("READER")
    body = await reader.gql(CREATE, {"input": {"name": "Nope", "filter": {}}})
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await database.segments.count_documents({}) == 0
    assert len((await reader.data(SEGMENTS))["segments"]) == len(BUILT_IN_NAMES)


async def test_the_shop_limit_holds_under_concurrent_creates(api, database):
    await database.shops.update_one(
        {"_id": SHOP}, {"$set": {"segmentCount": SHOP_SEGMENT_LIMIT - 2}}
    )

    results = await asyncio.gather(
        *[api.data(CREATE, {"input": {"name": f"S{i}", "filter": {}}}) for i in range(5)]
    )

    codes = sorted(
        (r["segmentCreate"]["userErrors"][0]["code"] if r["segmentCreate"]["userErrors"] else "OK")
        for r in results
    )
    assert codes == ["LIMIT_EXCEEDED"] * 3 + ["OK"] * 2
    assert await database.segments.count_documents({"shopId": SHOP}) == 2
    assert (await database.shops.find_one({"_id": SHOP}))["segmentCount"] == SHOP_SEGMENT_LIMIT


async def test_racing_creates_of_one_name_save_it_once_and_give_the_slot_back(api, database):
    results = await asyncio.gather(
        *[api.data(CREATE, {"input": {"name": "Same", "filter": {}}}) for _ in range(4)]
    )

    codes = sorted(
        (r["segmentCreate"]["userErrors"] or [{"code": "OK"}])[0]["code"] for r in results
    )
    assert codes == ["OK", "TAKEN", "TAKEN", "TAKEN"]
    assert await database.segments.count_documents({"shopId": SHOP}) == 1
    assert (await database.shops.find_one({"_id": SHOP}))["segmentCount"] == 1


async def test_counting_many_segments_costs_one_command(api, database, commands):
    await seed_customers(database)
    for minimum in (0, 5, 25, 250):
        await api.data(
            CREATE,
            {"input": {"name": f"Over {minimum}", "filter": {"totalSpentMin": str(minimum)}}},
        )

    commands.reset()
    data = await api.data("{ segments { name contactCount } }")

    counts = {s["name"]: s["contactCount"] for s in data["segments"]}
    assert counts == {
        "First-time customers": 2,
        "Repeat customers": 2,
        "Subscribers": 0,
        "Members": 0,
        "Over 0": 5,
        "Over 25": 2,
        "Over 250": 1,
        "Over 5": 4,
    }
    assert commands.on("contacts") == ["aggregate"]
