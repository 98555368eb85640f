"""Races decided by MongoDB's unique index, not by a look before the write."""

from __future__ import annotations

import asyncio

from conftest import SHOP

from graph.types.node import encode_id

CREATE = """
mutation($input: ContactInput!) {
  contactCreate(input: $input) { contact { id email } userErrors { field code } }
}
"""
UPDATE = """
mutation($id: ID!, $input: ContactInput!) {
  contactUpdate(id: $id, input: $input) { contact { id email } userErrors { field code } }
}
"""

SPELLINGS = [
    "race@example.com",
    "RACE@example.com",
    "Race@Example.com",
    "race@EXAMPLE.COM",
    "rAcE@eXaMpLe.CoM",
]


async def test_twenty_concurrent_creates_of_one_email_make_one_contact(api, database):
    emails = [SPELLINGS[i % len(SPELLINGS)] for i in range(20)]
    results = await asyncio.gather(
        *(
            api.data(CREATE, {"input": {"email": email, "firstName": f"Racer {i}"}})
            for i, email in enumerate(emails)
        )
    )
    payloads = [r["contactCreate"] for r in results]
    winners = [p for p in payloads if p["contact"] is not None]
    losers = [p for p in payloads if p["contact"] is None]
    assert len(winners) == 1
    assert winners[0]["userErrors"] == []
    assert len(losers) == 19
    assert all(p["userErrors"] == [{"field": ["input", "email"], "code": "TAKEN"}] for p in losers)

    stored = await database.contacts.find({"shopId": SHOP}).to_list()
    assert len(stored) == 1
    assert stored[0]["emailKey"] == "race@example.com"
    assert encode_id("Contact", stored[0]["_id"]) == winners[0]["contact"]["id"]
    found = await api.data('{ contactByEmail(email: "RACE@EXAMPLE.COM") { id } }')
    assert found["contactByEmail"]["id"] == winners[0]["contact"]["id"]


async def test_concurrent_creates_with_labels_keep_exact_label_counts(api, database):
    results = await asyncio.gather(
        *(
            api.data(CREATE, {"input": {"email": SPELLINGS[i % 5], "labels": ["VIP", f"Only {i}"]}})
            for i in range(10)
        )
    )
    assert sum(1 for r in results if r["contactCreate"]["contact"]) == 1
    labels = {
        d["key"]: d["contactCount"] for d in await database.labels.find({"shopId": SHOP}).to_list()
    }
    # Whatever the losers reserved was released again.
    assert labels["vip"] == 1
    assert sum(labels.values()) == 2
    shop = await database.shops.find_one({"_id": SHOP})
    assert shop["labelCount"] == len(labels) == 2


async def test_two_contacts_racing_to_one_new_email_one_wins(api, database):
    ids = []
    for email in ("one@example.com", "two@example.com"):
        data = await api.data(CREATE, {"input": {"email": email}})
        ids.append(data["contactCreate"]["contact"]["id"])
    results = await asyncio.gather(
        api.data(UPDATE, {"id": ids[0], "input": {"email": "Same@example.com"}}),
        api.data(UPDATE, {"id": ids[1], "input": {"email": "same@EXAMPLE.com"}}),
    )
    payloads = [r["contactUpdate"] for r in results]
    assert sorted(bool(p["contact"]) for p in payloads) == [False, True]
    [loser] = [p for p in payloads if p["contact"] is None]
    assert loser["userErrors"] == [{"field": ["input", "email"], "code": "TAKEN"}]
    keys = sorted(d["emailKey"] for d in await database.contacts.find({"shopId": SHOP}).to_list())
    assert "same@example.com" in keys and len(keys) == 2 and len(set(keys)) == 2


async def test_concurrent_edits_of_different_details_both_land(api, database):
    data = await api.data(CREATE, {"input": {"email": "edit@example.com"}})
    gid = data["contactCreate"]["contact"]["id"]
    fields = {
        "firstName": "Ada",
        "lastName": "King",
        "company": "Engines",
        "phone": "+442071234567",
    }
    results = await asyncio.gather(
        *(api.data(UPDATE, {"id": gid, "input": {k: v}}) for k, v in fields.items())
    )
    assert all(r["contactUpdate"]["userErrors"] == [] for r in results)
    stored = await database.contacts.find_one({"shopId": SHOP})
    assert {k: stored[k] for k in fields} == fields
    # Derived fields are computed from the final state, not from a stale read.
    assert stored["nameKey"] == "ada king"
    assert {"ada", "king", "engines"} <= set(stored["searchTerms"])
    assert stored["rev"] == len(fields)
    assert [e["kind"] for e in stored["activity"]].count("DETAILS_UPDATED") == len(fields)
