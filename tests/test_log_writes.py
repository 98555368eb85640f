"""Writes to the activity log and the consent history append; readers put them in order.

MongoDB logs a `$push` with `$sort` (or `$position`, or a `$slice` that
cuts) as the whole array, into the oplog and every change event; a plain
append as the new positions only. These tests look at the update documents
the API really sends, at the change events they cause, and at pages read
from logs stored out of order.
"""

from __future__ import annotations

import datetime as dt
import random

from conftest import SHOP

from graph.types.node import decode_id, encode_id
from resolvers import activity
from resolvers.activity import EMBEDDED_KEEP, SPILL_AT
from resolvers.clock import now
from resolvers.contacts import new_contact
from resolvers.notes import add_note

CREATE = "mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } } }"
NOTE = """
mutation($id: ID!, $text: String!) { noteAdd(contactId: $id, text: $text) { userErrors { code } } }
"""
LABEL = """
mutation($id: ID!) { labelsAdd(contactIds: [$id], labels: ["VIP"]) { userErrors { code } } }
"""
EDIT = """
mutation($id: ID!) { contactUpdate(id: $id, input: {firstName: "Ann"}) { userErrors { code } } }
"""
CONSENT = """
mutation($id: ID!, $state: MarketingState!, $at: DateTime) {
  consentUpdate(contactId: $id, state: $state, at: $at) { userErrors { code } }
}
"""
ORDER = """
mutation($input: OrderInput!) { orderRecord(input: $input) { userErrors { field code } } }
"""
PAGE = """
query($id: ID!, $first: Int, $after: String, $kinds: [ActivityKind!]) {
  contact(id: $id) {
    activity(first: $first, after: $after, kinds: $kinds) {
      totalCount
      nodes { id }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""

T0 = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)


def key(entry: dict) -> tuple:
    return entry["at"], entry["_id"]


def pushes(commands, field: str) -> list[dict]:
    """The `$push` of `field` in every update the API sent to contacts."""
    updates = [c["update"] for c in commands.documents("findAndModify", "contacts")]
    updates += [u["u"] for c in commands.documents("update", "contacts") for u in c["updates"]]
    return [
        u["$push"][field] for u in updates if isinstance(u, dict) and field in u.get("$push", {})
    ]


async def test_every_log_write_is_a_plain_append(api, database, commands):
    gid = (await api.data(CREATE, {"email": "ann@example.com"}))["contactCreate"]["contact"]["id"]
    commands.reset()

    await api.data(NOTE, {"id": gid, "text": "called"})
    await api.data(LABEL, {"id": gid})
    await api.data(EDIT, {"id": gid})
    await api.data(CONSENT, {"id": gid, "state": "SUBSCRIBED"})
    late = {
        "externalId": "A-1",
        "email": "ann@example.com",
        "currencyCode": "EUR",
        "placedAt": "2024-01-01T00:00:00Z",  # a week-old order reported now: a late entry
        "lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": "5.00"}],
    }
    assert (await api.data(ORDER, {"input": late}))["orderRecord"]["userErrors"] == []

    sent = pushes(commands, "activity")
    assert len(sent) == 5
    for push in sent:
        assert set(push) == {"$each"}, push  # no $sort, $position or $slice
    (history,) = pushes(commands, "consent.history")
    assert set(history) == {"$each"}


async def test_a_late_entry_is_appended_and_read_in_its_place(api, database):
    gid = (await api.data(CREATE, {"email": "ann@example.com"}))["contactCreate"]["contact"]["id"]
    oid = decode_id(gid, "Contact")
    for text in ("first", "second"):
        await add_note(database, SHOP, oid, text, "A")
    late = activity.entry("FORM_SUBMITTED", text="sent last year", at=T0 - dt.timedelta(days=365))
    await database.contacts.update_one({"_id": oid}, activity.push([late]))

    stored = (await database.contacts.find_one({"_id": oid}))["activity"]
    assert stored[-1]["_id"] == late["_id"]  # written at the end, not sorted in
    page = (await api.data(PAGE, {"id": gid, "first": 10}))["contact"]["activity"]
    expected = [
        encode_id("ActivityEntry", e["_id"], oid) for e in sorted(stored, key=key, reverse=True)
    ]
    assert [n["id"] for n in page["nodes"]] == expected
    assert page["nodes"][-1]["id"] == encode_id("ActivityEntry", late["_id"], oid)


async def test_pages_read_in_order_from_a_log_stored_in_any_order(api, database):
    rng = random.Random(5)
    kinds = ("NOTE", "ORDER_PLACED", "FORM_SUBMITTED")
    entries = [
        activity.entry(
            rng.choice(kinds), text=str(i), at=T0 + dt.timedelta(minutes=rng.randint(0, 40))
        )
        for i in range(150)
    ]
    rng.shuffle(entries)
    doc = new_contact(SHOP, "mix@example.com", "mix@example.com", "LEAD", {}, T0, entries=entries)
    doc["activity"] = entries  # as mixed as stored order can get
    await database.contacts.insert_one(doc)
    gid = encode_id("Contact", doc["_id"])

    for wanted in (None, ["NOTE", "FORM_SUBMITTED"]):
        expected = [
            encode_id("ActivityEntry", e["_id"], doc["_id"])
            for e in sorted(entries, key=key, reverse=True)
            if wanted is None or e["kind"] in wanted
        ]
        read: list[str] = []
        after = None
        while True:
            page = (
                await api.data(PAGE, {"id": gid, "first": 20, "after": after, "kinds": wanted})
            )["contact"]["activity"]
            assert page["totalCount"] == len(expected)
            read += [n["id"] for n in page["nodes"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert read == expected


async def test_the_oldest_entries_are_archived_from_a_log_stored_in_any_order(database):
    rng = random.Random(9)
    entries = [
        activity.entry("FORM_SUBMITTED", text=str(i), at=T0 + dt.timedelta(seconds=i))
        for i in range(SPILL_AT - 1)
    ]
    rng.shuffle(entries)
    doc = new_contact(SHOP, "old@example.com", "old@example.com", "LEAD", {}, T0, entries=entries)
    doc["activity"] = entries
    await database.contacts.insert_one(doc)

    note, after = await add_note(database, SHOP, doc["_id"], "the 200th entry", "A")

    stored = await database.contacts.find_one({"_id": doc["_id"]})
    everything = sorted([*entries, note], key=key)
    archived = [
        e
        async for bucket in database.activity_archive.find({"contactId": doc["_id"]})
        for e in bucket["entries"]
    ]
    assert sorted(archived, key=key) == everything[: SPILL_AT - EMBEDDED_KEEP]
    assert sorted(stored["activity"], key=key) == everything[SPILL_AT - EMBEDDED_KEEP :]
    assert stored["activityEmbedded"] == EMBEDDED_KEEP
    assert stored["activityArchived"] == SPILL_AT - EMBEDDED_KEEP
    assert stored["activityArchivedAt"] == everything[SPILL_AT - EMBEDDED_KEEP - 1]["at"]


async def test_the_change_event_of_a_note_carries_the_note_alone(database):
    at = now()
    created = activity.entry("CONTACT_CREATED", at=at)
    doc = new_contact(
        SHOP, "feed@example.com", "feed@example.com", "LEAD", {}, at, entries=[created]
    )
    await database.contacts.insert_one(doc)
    async with await database.contacts.watch(
        [{"$match": {"documentKey._id": doc["_id"]}}]
    ) as stream:
        note, _ = await add_note(database, SHOP, doc["_id"], "short", "A")
        change = None
        for _ in range(50):
            change = await stream.try_next()
            if change is not None:
                break
    assert change is not None and change["operationType"] == "update"
    written = change["updateDescription"]["updatedFields"]
    # The note at its new position, after the creation entry, not the whole log.
    assert written["activity.1"] == note
    assert "activity" not in written
