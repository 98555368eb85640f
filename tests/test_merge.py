"""contactsMerge and contactsMergePreview: everything moves to the target, all or nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from bson import ObjectId
from conftest import OTHER_SHOP, SHOP

from graph.types.node import decode_id, encode_id
from resolvers import activity, merge
from resolvers.activity import BUCKET_SIZE, SPILL_AT
from resolvers.consent import ConsentEvent, record_consent

T0 = dt.datetime(2025, 2, 1, 10, 0, tzinfo=dt.UTC)

CREATE = """
mutation($input: ContactInput!) { contactCreate(input: $input) { contact { id } userErrors { code } } }
"""
ORDER = """
mutation($input: OrderInput!) { orderRecord(input: $input) { order { id } userErrors { field code message } } }
"""
NOTE = """
mutation($id: ID!, $text: String!) { noteAdd(contactId: $id, text: $text) { userErrors { code } } }
"""
MERGE = """
mutation($target: ID!, $sources: [ID!]!) {
  contactsMerge(targetId: $target, sourceIds: $sources) {
    contact {
      id email firstName lastName phone kind labels hasAccount orderCount totalSpent { amount }
      firstOrderAt lastOrderAt consent { state source history { state at } }
    }
    userErrors { field message code }
  }
}
"""
PREVIEW = """
query($target: ID!, $sources: [ID!]!) {
  contactsMergePreview(targetId: $target, sourceIds: $sources) {
    id email phone kind labels orderCount totalSpent { amount } consent { state history { state } }
  }
}
"""
ACTIVITY = """
query($id: ID!, $after: String) {
  contact(id: $id) {
    activity(first: 250, after: $after) { totalCount pageInfo { hasNextPage endCursor } nodes { id kind at text } }
  }
}
"""
ORDERS = """
query($id: ID!) { contact(id: $id) { orders(first: 50, includeCanceled: true) { nodes { number status } } } }
"""


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def create(api, email: str, **fields: Any) -> tuple[str, ObjectId]:
    data = await api.data(CREATE, {"input": {"email": email, **fields}})
    gid = data["contactCreate"]["contact"]["id"]
    return gid, decode_id(gid, "Contact")


async def order(
    api, email: str, number: str, total: str, placed: dt.datetime, status: str = "OPEN"
) -> None:
    data = await api.data(
        ORDER,
        {
            "input": {
                "externalId": number,
                "number": number,
                "email": email,
                "currencyCode": "EUR",
                "status": status,
                "placedAt": iso(placed),
                "lineItems": [{"title": "Tea", "quantity": 1, "unitPrice": total}],
            }
        },
    )
    assert data["orderRecord"]["userErrors"] == [], data


async def log_entries(
    database, contact_id: ObjectId, count: int, start: dt.datetime, text: str
) -> None:
    """Entries written as every writer does (push, then spill), so older ones reach the archive."""
    entries = [
        activity.entry("FORM_SUBMITTED", text=f"{text}{i}", at=start + dt.timedelta(seconds=i))
        for i in range(count)
    ]
    doc = await database.contacts.find_one_and_update(
        {"shopId": SHOP, "_id": contact_id},
        activity.push(entries),
        projection={"activity": 0},
        return_document=True,
    )
    await activity.spill_overflow(database, SHOP, doc)


async def snapshot(database) -> dict[str, list]:
    out = {}
    for name in ("contacts", "orders", "activity_archive", "messages", "labels", "shops"):
        out[name] = await database.db[name].find({}).sort("_id").to_list()
    return out


async def all_activity(api, gid: str) -> tuple[int, list[dict]]:
    nodes, after, total = [], None, None
    while True:
        page = (await api.data(ACTIVITY, {"id": gid, "after": after}))["contact"]["activity"]
        total = page["totalCount"]
        nodes.extend(page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            return total, nodes
        after = page["pageInfo"]["endCursor"]


@pytest.fixture
async def trio(api, database):
    """Ann (target, a customer), Bob (a customer with a long, partly archived log) and Cleo (a lead with a note)."""
    await database.shops.update_one({"_id": SHOP}, {"$set": {"currency": "EUR"}})
    ann = await create(api, "ann@example.com", firstName="Ann", labels=["VIP"])
    bob = await create(
        api,
        "ann.work@example.com",
        firstName="Bob?",
        lastName="Lee",
        phone="+4915112345678",
        labels=["vip", "Gold"],
    )
    cleo = await create(api, "ann+shop@example.com", company="Lee GmbH", labels=["Silver"])
    dora = await create(api, "dora@example.com", labels=["VIP"])
    await order(api, "ann@example.com", "A-1", "10.00", at(10))
    await order(api, "ann.work@example.com", "B-1", "20.50", at(5))
    await order(api, "ann.work@example.com", "B-2", "99.00", at(50), status="CANCELED")
    await order(api, "ann@example.com", "A-2", "5.25", at(60))
    await log_entries(database, bob[1], SPILL_AT + 20, at(-100), "bob")
    await log_entries(database, ann[1], 30, at(-90), "ann")
    assert await database.activity_archive.count_documents({"contactId": bob[1]}) >= 1
    await api.data(NOTE, {"id": cleo[0], "text": "Prefers phone calls"})
    for contact_id, state, minute in (
        (ann[1], "SUBSCRIBED", 1),
        (cleo[1], "SUBSCRIBED", 2),
        (bob[1], "UNSUBSCRIBED", 3),
    ):
        await record_consent(
            database,
            SHOP,
            contact_id,
            ConsentEvent(state=state, at=at(minute), source="ADMIN", actor="Staff"),
        )
    await database.messages.insert_one(
        {
            "_id": ObjectId(),
            "shopId": SHOP,
            "contactId": bob[1],
            "to": "ann.work@example.com",
            "subject": "Hi",
            "createdAt": at(7),
        }
    )
    return {"ann": ann, "bob": bob, "cleo": cleo, "dora": dora}


async def test_merge_moves_everything_to_the_target(api, database, trio):
    (ann_id, ann_oid), (bob_id, bob_oid), (cleo_id, cleo_oid) = (
        trio["ann"],
        trio["bob"],
        trio["cleo"],
    )
    before = {doc["_id"]: doc for doc in await database.contacts.find({"shopId": SHOP}).to_list()}
    expected_entries = sum(before[o]["activityCount"] for o in (ann_oid, bob_oid, cleo_oid)) + 1

    data = await api.data(MERGE, {"target": ann_id, "sources": [bob_id, cleo_id]})

    payload = data["contactsMerge"]
    assert payload["userErrors"] == []
    contact = payload["contact"]
    assert contact["id"] == ann_id and contact["email"] == "ann@example.com"
    assert (contact["firstName"], contact["lastName"], contact["phone"]) == (
        "Ann",
        "Lee",
        "+4915112345678",
    )
    assert contact["kind"] == "CUSTOMER"
    assert contact["labels"] == ["VIP", "Gold", "Silver"]
    # Re-derived from the orders: and B-1 count; the canceled B-2 does not.
    assert (contact["orderCount"], contact["totalSpent"]["amount"]) == (3, "35.75")
    assert (contact["firstOrderAt"], contact["lastOrderAt"]) == (
        iso(at(5)).replace("Z", ".000+00:00"),
        iso(at(60)).replace("Z", ".000+00:00"),
    )
    assert contact["consent"]["state"] == "UNSUBSCRIBED"
    assert [(e["state"], e["at"][:16]) for e in contact["consent"]["history"]] == [
        ("SUBSCRIBED", "2025-02-01T10:01"),
        ("SUBSCRIBED", "2025-02-01T10:02"),
        ("UNSUBSCRIBED", "2025-02-01T10:03"),
    ]
    # The sources are gone; their orders, messages and archive buckets are the target's.
    assert await database.contacts.count_documents({"_id": {"$in": [bob_oid, cleo_oid]}}) == 0
    numbers = [
        o["number"] for o in (await api.data(ORDERS, {"id": ann_id}))["contact"]["orders"]["nodes"]
    ]
    assert sorted(numbers) == ["A-1", "A-2", "B-1", "B-2"]
    assert await database.orders.count_documents({"contactId": {"$in": [bob_oid, cleo_oid]}}) == 0
    assert (await database.messages.find_one({"subject": "Hi"}))["contactId"] == ann_oid
    assert await database.activity_archive.count_documents({"contactId": {"$ne": ann_oid}}) == 0
    # One log, interleaved by time across embedded entries and the archive.
    total, nodes = await all_activity(api, ann_id)
    assert total == len(nodes) == expected_entries
    keys = [(e["at"], decode_id(e["id"], "ActivityEntry") or e["id"]) for e in nodes]
    assert [e["at"] for e in nodes] == sorted((e["at"] for e in nodes), reverse=True)
    assert len(set(keys)) == len(keys)
    texts = {e["text"] for e in nodes}
    assert {"bob0", f"bob{SPILL_AT + 19}", "ann0", "Prefers phone calls"} <= texts
    merged = [e for e in nodes if e["kind"] == "CONTACTS_MERGED"]
    assert [e["text"] for e in merged] == [
        "Merged into this contact: ann.work@example.com, ann+shop@example.com"
    ]
    stored = await database.contacts.find_one({"_id": ann_oid})
    assert stored["activityEmbedded"] == len(stored["activity"]) <= activity.EMBEDDED_KEEP
    buckets = await database.activity_archive.find({"contactId": ann_oid}).to_list()
    assert stored["activityArchived"] == sum(b["count"] for b in buckets)
    assert (
        stored["activityEmbedded"] + stored["activityArchived"]
        == stored["activityCount"]
        == expected_entries
    )
    assert all(len(b["entries"]) <= BUCKET_SIZE for b in buckets)
    # Label counts stay exact: VIP is held by Ann and Dora now, Gold and Silver by Ann.
    counts = {
        d["key"]: d["contactCount"] for d in await database.labels.find({"shopId": SHOP}).to_list()
    }
    assert counts == {"vip": 2, "gold": 1, "silver": 1}
    assert stored["emailCanon"] == "ann@example.com" and stored["nameKey"] == "ann lee"


async def test_the_preview_shows_the_result_and_writes_nothing(api, as_role, database, trio):
    before = await snapshot(database)

    data = await as_role("STAFF").data(
        PREVIEW, {"target": trio["ann"][0], "sources": [trio["bob"][0], trio["cleo"][0]]}
    )

    assert data["contactsMergePreview"] == {
        "id": trio["ann"][0],
        "email": "ann@example.com",
        "phone": "+4915112345678",
        "kind": "CUSTOMER",
        "labels": ["VIP", "Gold", "Silver"],
        "orderCount": 3,
        "totalSpent": {"amount": "35.75"},
        "consent": {
            "state": "UNSUBSCRIBED",
            "history": [
                {"state": "SUBSCRIBED"},
                {"state": "SUBSCRIBED"},
                {"state": "UNSUBSCRIBED"},
            ],
        },
    }
    assert await snapshot(database) == before
    merged = await api.data(
        MERGE, {"target": trio["ann"][0], "sources": [trio["bob"][0], trio["cleo"][0]]}
    )
    preview = data["contactsMergePreview"]
    assert {
        k: merged["contactsMerge"]["contact"][k]
        for k in ("phone", "labels", "orderCount", "totalSpent")
    } == {k: preview[k] for k in ("phone", "labels", "orderCount", "totalSpent")}


async def test_bad_merges_are_refused_and_change_nothing(api, as_role, database, trio):
    ann, bob = trio["ann"][0], trio["bob"][0]
    foreign = (await as_role("OTHER").data(CREATE, {"input": {"email": "x@example.com"}}))[
        "contactCreate"
    ]["contact"]["id"]
    unknown = encode_id("Contact", ObjectId())
    before = await snapshot(database)
    cases = [
        ({"target": ann, "sources": [ann]}, [(["sourceIds", "0"], "INVALID")]),
        ({"target": ann, "sources": [bob, ann]}, [(["sourceIds", "1"], "INVALID")]),
        ({"target": unknown, "sources": [bob]}, [(["targetId"], "NOT_FOUND")]),
        ({"target": "garbage", "sources": [bob]}, [(["targetId"], "NOT_FOUND")]),
        (
            {"target": ann, "sources": [bob, unknown, "garbage"]},
            [(["sourceIds", "2"], "NOT_FOUND"), (["sourceIds", "1"], "NOT_FOUND")],
        ),
        ({"target": ann, "sources": [foreign]}, [(["sourceIds", "0"], "NOT_FOUND")]),
        ({"target": foreign, "sources": [bob]}, [(["targetId"], "NOT_FOUND")]),
        ({"target": ann, "sources": []}, [(["sourceIds"], "REQUIRED")]),
        (
            {"target": ann, "sources": [encode_id("Contact", ObjectId()) for _ in range(11)]},
            [(["sourceIds"], "LIMIT_EXCEEDED")],
        ),
    ]
    for variables, expected in cases:
        data = await api.data(MERGE, variables)
        payload = data["contactsMerge"]
        assert payload["contact"] is None
        assert sorted((e["field"], e["code"]) for e in payload["userErrors"]) == sorted(expected), (
            variables
        )
    body = await as_role("READER").gql(MERGE, {"target": ann, "sources": [bob]})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    preview = await api.gql(PREVIEW, {"target": ann, "sources": [ann]})
    assert preview["data"] == {"contactsMergePreview": None}
    assert preview["errors"][0]["extensions"]["code"] == "INVALID"
    assert await snapshot(database) == before


async def test_a_failure_half_way_leaves_every_contact_as_it_was(api, database, trio, monkeypatch):
    before = await snapshot(database)
    real_delete = merge._delete_sources
    reached = []

    async def delete_then_fail(database, shop_id, plan, session):
        # Orders, messages and buckets have moved, the target is written and the sources deleted ...
        await real_delete(database, shop_id, plan, session)
        reached.append(
            await database.contacts.count_documents(
                {"_id": {"$in": plan.source_ids}}, session=session
            )
        )
        raise RuntimeError("disk on fire")  # ... and then the process fails.

    monkeypatch.setattr(merge, "_delete_sources", delete_then_fail)

    body = await api.gql(
        MERGE, {"target": trio["ann"][0], "sources": [trio["bob"][0], trio["cleo"][0]]}
    )

    assert reached == [0]
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert await snapshot(database) == before


async def test_two_merges_racing_for_one_source(api, database, trio):
    ann, bob, dora = trio["ann"], trio["bob"], trio["dora"]

    results = await asyncio.gather(
        api.data(MERGE, {"target": ann[0], "sources": [bob[0]]}),
        api.data(MERGE, {"target": dora[0], "sources": [bob[0]]}),
    )

    outcomes = sorted(bool(r["contactsMerge"]["contact"]) for r in results)
    assert outcomes == [False, True]
    loser = next(r for r in results if not r["contactsMerge"]["contact"])
    assert loser["contactsMerge"]["userErrors"] == [
        {"field": ["sourceIds", "0"], "message": "Contact not found.", "code": "NOT_FOUND"}
    ]
    winner = next(r["contactsMerge"]["contact"] for r in results if r["contactsMerge"]["contact"])
    winner_oid = decode_id(winner["id"], "Contact")
    assert (
        await database.orders.count_documents(
            {"contactId": winner_oid, "number": {"$in": ["B-1", "B-2"]}}
        )
        == 2
    )
    counts = {
        d["key"]: d["contactCount"] for d in await database.labels.find({"shopId": SHOP}).to_list()
    }
    holders = {
        key: await database.contacts.count_documents({"shopId": SHOP, "labelKeys": key})
        for key in counts
    }
    assert counts == holders


async def test_other_shops_are_untouched(api, as_role, database, trio):
    other = as_role("OTHER")
    x = (await other.data(CREATE, {"input": {"email": "ann.work@example.com"}}))["contactCreate"][
        "contact"
    ]["id"]

    await api.data(MERGE, {"target": trio["ann"][0], "sources": [trio["bob"][0]]})

    assert (await other.data("query($id: ID!) { contact(id: $id) { email } }", {"id": x}))[
        "contact"
    ] == {"email": "ann.work@example.com"}
    assert await database.contacts.count_documents({"shopId": OTHER_SHOP}) == 1
