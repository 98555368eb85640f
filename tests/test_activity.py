"""The activity log: paging newest first across the embedded entries and the archive, kinds, totals, races."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any

import bson
from bson import ObjectId
from conftest import SHOP

from graph.types.node import decode_id, encode_id
from resolvers import activity
from resolvers.activity import BUCKET_SIZE, EMBEDDED_KEEP, MAX_BUCKETS_PER_SPILL, SPILL_AT
from resolvers.contacts import new_contact
from resolvers.order_seed import seed_orders

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

CREATE = """
mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } userErrors { code } } }
"""
PAGE = """
query($id: ID!, $first: Int, $after: String, $kinds: [ActivityKind!]) {
  contact(id: $id) {
    activity(first: $first, after: $after, kinds: $kinds) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { id kind at author text editedAt } }
    }
  }
}
"""
NOTE_ADD = """
mutation($id: ID!, $text: String!) { noteAdd(contactId: $id, text: $text) { note { id } userErrors { code } } }
"""


async def create_contact(api: Any, email: str) -> tuple[str, ObjectId]:
    data = await api.data(CREATE, {"email": email})
    gid = data["contactCreate"]["contact"]["id"]
    oid = decode_id(gid, "Contact")
    assert oid is not None
    return gid, oid


def make_entries(
    count: int, *, start: int = 0, kinds: tuple[str, ...] = ("FORM_SUBMITTED",)
) -> list[dict]:
    return [
        activity.entry(
            kinds[i % len(kinds)], text=f"e{start + i}", at=T0 + dt.timedelta(seconds=start + i)
        )
        for i in range(count)
    ]


async def write(database: Any, contact_id: ObjectId, entries: list[dict]) -> None:
    """What every writer does: push in the contact's own update, then spill."""
    doc = await database.contacts.find_one_and_update(
        {"shopId": SHOP, "_id": contact_id},
        activity.push(entries),
        projection={"activity": 0},
        return_document=True,
    )
    await activity.spill_overflow(database, SHOP, doc)


def newest_first(entries: list[dict]) -> list[ObjectId]:
    return [e["_id"] for e in sorted(entries, key=activity.sort_key, reverse=True)]


async def read_all(
    api: Any, gid: str, first: int, kinds: list[str] | None = None
) -> tuple[list[dict], int]:
    """Every entry through the API, page by page; (edges' nodes, totalCount of the first page)."""
    nodes: list[dict] = []
    after = None
    total = None
    previous = False
    while True:
        data = await api.data(PAGE, {"id": gid, "first": first, "after": after, "kinds": kinds})
        page = data["contact"]["activity"]
        total = page["totalCount"] if total is None else total
        assert page["totalCount"] == total
        assert page["pageInfo"]["hasPreviousPage"] is previous
        nodes.extend(edge["node"] for edge in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return nodes, total
        assert len(page["edges"]) == first
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        after = page["pageInfo"]["endCursor"]
        previous = True


async def stored_ids(database: Any, contact_id: ObjectId) -> tuple[list[ObjectId], list[ObjectId]]:
    doc = await database.contacts.find_one({"_id": contact_id}, {"activity": 1})
    embedded = [e["_id"] for e in doc["activity"]]
    archived = [
        e["_id"]
        async for bucket in database.activity_archive.find(
            {"shopId": SHOP, "contactId": contact_id}
        )
        for e in bucket["entries"]
    ]
    return embedded, archived


def gids(ids: list[ObjectId], contact_id: ObjectId) -> list[str]:
    return [encode_id("ActivityEntry", i, contact_id) for i in ids]


async def test_a_new_contact_has_its_creation_in_the_log(api):
    gid, _ = await create_contact(api, "ann@example.com")
    data = await api.data(PAGE, {"id": gid})
    page = data["contact"]["activity"]
    assert page["totalCount"] == 1
    assert [e["node"]["kind"] for e in page["edges"]] == ["CONTACT_CREATED"]
    assert page["edges"][0]["node"]["author"] == "Admin Person"
    assert page["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": page["edges"][0]["cursor"],
        "endCursor": page["edges"][0]["cursor"],
    }


async def test_pages_newest_first_with_cursors_and_kinds(api, database):
    gid, oid = await create_contact(api, "ann@example.com")
    entries = make_entries(30, kinds=("FORM_SUBMITTED", "LABELS_CHANGED", "NOTE"))
    await write(database, oid, entries)
    everything = await database.contacts.find_one({"_id": oid}, {"activity": 1})
    expected = newest_first(everything["activity"])
    assert len(expected) == 31  # and CONTACT_CREATED

    nodes, total = await read_all(api, gid, 7)
    assert total == 31
    assert [n["id"] for n in nodes] == gids(expected, oid)

    notes, note_total = await read_all(api, gid, 4, ["NOTE"])
    expected_notes = newest_first([e for e in entries if e["kind"] == "NOTE"])
    assert note_total == 10
    assert [n["id"] for n in notes] == gids(expected_notes, oid)
    assert {n["kind"] for n in notes} == {"NOTE"}

    two, two_total = await read_all(api, gid, 50, ["NOTE", "CONTACT_CREATED"])
    assert two_total == 11
    assert [n["id"] for n in two][0] == gids(expected, oid)[0]  # the creation, newest of all


async def test_first_and_after_are_checked(api):
    gid, _ = await create_contact(api, "ann@example.com")
    for first in (0, -1, 251):
        body = await api.gql(PAGE, {"id": gid, "first": first})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    for cursor in ("nonsense", "", "eyJ4IjoxfQ"):
        body = await api.gql(PAGE, {"id": gid, "after": cursor})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    # A cursor of another list (contacts sorted by creation) is not an activity cursor.
    contacts = await api.data("{ contacts(first: 1) { pageInfo { endCursor } } }")
    body = await api.gql(PAGE, {"id": gid, "after": contacts["contacts"]["pageInfo"]["endCursor"]})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_spill_moves_the_oldest_bucket_and_keeps_counters(api, database):
    _, oid = await create_contact(api, "ann@example.com")
    entries = make_entries(SPILL_AT - 2)
    await write(database, oid, entries)  # 299 with the creation: under the bound
    assert await database.activity_archive.count_documents({}) == 0
    await write(database, oid, make_entries(1, start=10_000))  # 300: one bucket moves

    doc = await database.contacts.find_one({"_id": oid})
    assert len(doc["activity"]) == doc["activityEmbedded"] == EMBEDDED_KEEP
    assert doc["activityArchived"] == BUCKET_SIZE
    assert doc["activityArchivedKinds"] == {"FORM_SUBMITTED": BUCKET_SIZE}
    assert doc["activityArchivedAt"] == entries[BUCKET_SIZE - 1]["at"]
    assert doc["activityCount"] == SPILL_AT
    bucket = await database.activity_archive.find_one({})
    # The oldest entries, newest first (the creation, made now, is the newest of all).
    assert [e["_id"] for e in bucket["entries"]] == newest_first(entries)[-BUCKET_SIZE:]
    assert bucket["count"] == BUCKET_SIZE
    assert bucket["kindCounts"] == {"FORM_SUBMITTED": BUCKET_SIZE}
    assert (bucket["maxAt"], bucket["maxId"]) == (
        entries[BUCKET_SIZE - 1]["at"],
        entries[BUCKET_SIZE - 1]["_id"],
    )
    assert (bucket["minAt"], bucket["minId"]) == (entries[0]["at"], entries[0]["_id"])
    assert bucket["shopId"] == SHOP and bucket["contactId"] == oid
    embedded, archived = await stored_ids(database, oid)
    assert not set(embedded) & set(archived)


async def test_a_big_push_spills_in_whole_buckets_down_to_the_bound(api, database):
    _, oid = await create_contact(api, "ann@example.com")
    entries = make_entries((MAX_BUCKETS_PER_SPILL + 2) * BUCKET_SIZE + 50)
    await write(database, oid, entries)  # more than one spill transaction can move

    doc = await database.contacts.find_one({"_id": oid})
    moved = (MAX_BUCKETS_PER_SPILL + 1) * BUCKET_SIZE
    assert len(doc["activity"]) == doc["activityEmbedded"] == len(entries) + 1 - moved
    assert EMBEDDED_KEEP <= doc["activityEmbedded"] < SPILL_AT
    assert doc["activityArchived"] == moved
    assert doc["activityCount"] == len(entries) + 1
    buckets = await database.activity_archive.find({"contactId": oid}).to_list()
    assert [b["count"] for b in buckets] == [BUCKET_SIZE] * (MAX_BUCKETS_PER_SPILL + 1)
    # The oldest entries, each exactly once, in buckets that do not overlap.
    archived = sorted((e for b in buckets for e in b["entries"]), key=activity.sort_key)
    assert [e["_id"] for e in archived] == [e["_id"] for e in entries[:moved]]
    spans = sorted((b["minAt"], b["maxAt"]) for b in buckets)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))


async def test_spill_is_cheap_below_the_bound(api, database, commands):
    _, oid = await create_contact(api, "ann@example.com")
    commands.reset()
    await activity.spill_overflow(database, SHOP, {"_id": oid, "activityEmbedded": SPILL_AT - 1})
    await activity.spill_overflow(database, SHOP, None)
    assert commands.count == 0


async def test_a_late_old_entry_is_merged_with_newer_archived_ones(api, database):
    gid, oid = await create_contact(api, "ann@example.com")
    await write(database, oid, make_entries(600, start=1_000))
    # An event from before everything arrives late: it lands at the end of the
    # embedded array while newer entries are already archived.
    late = activity.entry("ORDER_CANCELED", text="late", at=T0 + dt.timedelta(seconds=1_500))
    older = activity.entry("ORDER_CANCELED", text="older", at=T0 - dt.timedelta(days=1))
    await database.contacts.update_one({"_id": oid}, activity.push([late, older]))
    doc = await database.contacts.find_one({"_id": oid}, {"activity": 1})
    assert late["_id"] in {e["_id"] for e in doc["activity"]}
    assert (
        await database.activity_archive.count_documents({"contactId": oid})
        == (601 - len(doc["activity"]) + 2) // BUCKET_SIZE
    )

    everything = [e for e in doc["activity"]]
    async for bucket in database.activity_archive.find({"contactId": oid}):
        everything.extend(bucket["entries"])
    nodes, total = await read_all(api, gid, 37)
    assert total == 603
    assert [n["id"] for n in nodes] == gids(newest_first(everything), oid)
    assert nodes[-1]["text"] == "older"
    canceled, canceled_total = await read_all(api, gid, 1, ["ORDER_CANCELED"])
    assert canceled_total == 2
    assert [n["text"] for n in canceled] == ["late", "older"]


async def test_six_thousand_entries(api, database):
    """The log of a very active contact: the document stays small, every entry reads once, in order."""
    gid, oid = await create_contact(api, "busy@example.com")
    creation = (await database.contacts.find_one({"_id": oid}))["activity"][0]
    rng = random.Random(7)
    kinds = (
        "ORDER_PLACED",
        "FORM_SUBMITTED",
        "MESSAGE_SENT",
        "NOTE",
        "LABELS_CHANGED",
        "CONSENT_CHANGED",
        "DETAILS_UPDATED",
    )
    entries = []
    for i in range(6_000):
        seconds = i if rng.random() > 0.03 else i - rng.randrange(1, 5_000)  # some arrive late
        entries.append(
            activity.entry(
                kinds[i % len(kinds)], text=f"e{i}", at=T0 + dt.timedelta(seconds=seconds)
            )
        )
    # Two writers, each pushing 200 entries at a time and spilling after every push.
    batches = [entries[i : i + 2 * BUCKET_SIZE] for i in range(0, len(entries), 2 * BUCKET_SIZE)]

    async def writer(mine: list[list[dict]]) -> None:
        for batch in mine:
            await write(database, oid, batch)

    await asyncio.gather(writer(batches[0::2]), writer(batches[1::2]))

    doc = await database.contacts.find_one({"_id": oid})
    assert len(bson.encode(doc)) < 64_000
    assert EMBEDDED_KEEP <= len(doc["activity"]) < SPILL_AT
    assert doc["activityCount"] == 6_001
    embedded, archived = await stored_ids(database, oid)
    assert len(embedded) + len(archived) == len(set(embedded) | set(archived)) == 6_001

    expected = newest_first([*entries, creation])
    nodes, total = await read_all(api, gid, 250)
    assert total == 6_001
    assert [n["id"] for n in nodes] == gids(expected, oid)

    notes, note_total = await read_all(api, gid, 250, ["NOTE"])
    expected_notes = newest_first([e for e in entries if e["kind"] == "NOTE"])
    assert note_total == len(expected_notes) == 857
    assert [n["id"] for n in notes] == gids(expected_notes, oid)


async def test_two_writers_racing_lose_and_duplicate_nothing(api, database):
    _, oid = await create_contact(api, "race@example.com")
    written: list[dict] = []

    async def writer(offset: int) -> None:
        for round_ in range(12):
            batch = make_entries(45, start=offset + round_ * 45)
            written.extend(batch)
            await write(database, oid, batch)

    await asyncio.gather(writer(0), writer(100_000))
    # Both spill the same overflow at once as well.
    await write(database, oid, make_entries(150, start=500_000))
    doc = await database.contacts.find_one({"_id": oid}, {"activity": 0})
    await asyncio.gather(*(activity.spill_overflow(database, SHOP, doc) for _ in range(3)))

    embedded, archived = await stored_ids(database, oid)
    total = 12 * 45 * 2 + 150 + 1
    assert len(embedded) + len(archived) == len(set(embedded) | set(archived)) == total
    doc = await database.contacts.find_one({"_id": oid})
    assert len(doc["activity"]) == doc["activityEmbedded"] < SPILL_AT
    assert doc["activityArchived"] == len(archived) == sum(doc["activityArchivedKinds"].values())
    assert doc["activityCount"] == total
    buckets = await database.activity_archive.find({"contactId": oid}).to_list()
    assert all(b["count"] == len(b["entries"]) == BUCKET_SIZE for b in buckets)


async def test_list_of_contacts_with_activity_costs_the_same_for_5_and_50(api, database, commands):
    await database.contacts.insert_many(
        [
            new_contact(
                SHOP,
                f"c{i}@example.com",
                f"c{i}@example.com",
                "LEAD",
                {},
                T0 + dt.timedelta(seconds=i),
                entries=[activity.entry("CONTACT_CREATED", at=T0 + dt.timedelta(seconds=i))],
            )
            for i in range(50)
        ]
    )
    query = """
    query($n: Int) {
      contacts(first: $n) { nodes { email activity(first: 3) { totalCount nodes { kind } } } }
    }
    """
    counts = []
    for n in (5, 50):
        commands.reset()
        data = await api.data(query, {"n": n})
        counts.append(commands.count)
        assert all(c["activity"]["totalCount"] == 1 for c in data["contacts"]["nodes"])
    assert counts[0] == counts[1]


async def test_the_orders_of_entries_cost_the_same_for_5_and_50_contacts(api, database, commands):
    docs = [
        new_contact(SHOP, f"b{i}@example.com", f"b{i}@example.com", "LEAD", {}, T0)
        for i in range(50)
    ]
    await database.contacts.insert_many(docs)
    await seed_orders(database, SHOP, docs, 2, random.Random(1))
    query = """
    query($n: Int) {
      contacts(first: $n) {
        nodes { activity(first: 3, kinds: [ORDER_PLACED]) { nodes { kind order { externalId } } } }
      }
    }
    """
    counts = []
    for n in (5, 50):
        commands.reset()
        data = await api.data(query, {"n": n})
        counts.append(commands.on("orders"))
        entries = [e for c in data["contacts"]["nodes"] for e in c["activity"]["nodes"]]
        assert len(entries) == 2 * n and all(e["kind"] == "ORDER_PLACED" for e in entries)
        assert len({e["order"]["externalId"] for e in entries}) == 2 * n
    assert counts == [["find"], ["find"]]


async def test_order_entries_resolve_their_order(api, database):
    record = """
    mutation { orderRecord(input: {externalId: "1001", email: "buyer@example.com", currencyCode: "EUR",
      lineItems: [{title: "Tea", quantity: 2, unitPrice: "4.50"}]}) { contact { id } userErrors { code } } }
    """
    data = await api.data(record)
    gid = data["orderRecord"]["contact"]["id"]
    query = """
    query($id: ID!) {
      contact(id: $id) { activity(kinds: [ORDER_PLACED]) { nodes { kind order { externalId total { amount } } } } }
    }
    """
    data = await api.data(query, {"id": gid})
    nodes = data["contact"]["activity"]["nodes"]
    assert nodes == [
        {"kind": "ORDER_PLACED", "order": {"externalId": "1001", "total": {"amount": "9.00"}}}
    ]
    other = await api.data(
        query.replace("ORDER_PLACED", "CONTACT_CREATED, CONVERTED_TO_CUSTOMER"), {"id": gid}
    )
    assert all(n["order"] is None for n in other["contact"]["activity"]["nodes"])


async def test_node_finds_entries_embedded_and_archived(api, as_role, database):
    gid, oid = await create_contact(api, "ann@example.com")
    entries = make_entries(SPILL_AT)
    await write(database, oid, entries)
    embedded, archived = await stored_ids(database, oid)
    query = "query($id: ID!) { node(id: $id) { __typename id ... on ActivityEntry { kind text } } }"
    # An entry's id names its contact: the way to it, as entries have no index of their own.
    for oid_ in (embedded[0], archived[0]):
        data = await api.data(query, {"id": encode_id("ActivityEntry", oid_, oid)})
        assert data["node"]["id"] == encode_id("ActivityEntry", oid_, oid)
        assert data["node"]["__typename"] == "ActivityEntry"
    # Ids issued before they named the contact still find archived entries.
    data = await api.data(query, {"id": encode_id("ActivityEntry", archived[0])})
    assert data["node"]["id"] == encode_id("ActivityEntry", archived[0], oid)
    for unknown in (ObjectId(), embedded[0]):
        missing = await api.data(query, {"id": encode_id("ActivityEntry", unknown, ObjectId())})
        assert missing["node"] is None
    other = await as_role("OTHER").data(query, {"id": encode_id("ActivityEntry", embedded[0], oid)})
    assert other["node"] is None


async def test_an_entry_is_read_through_its_contact(api, database, commands):
    gid, oid = await create_contact(api, "ann@example.com")
    await write(database, oid, make_entries(SPILL_AT))
    embedded, _ = await stored_ids(database, oid)
    query = "query($id: ID!) { node(id: $id) { id } }"
    commands.reset()
    await api.data(query, {"id": encode_id("ActivityEntry", embedded[-1], oid)})
    (read,) = commands.documents("find", "contacts")
    assert read["filter"]["_id"] == {"$in": [oid]}
    # No index on the entries' ids is needed, nor kept.
    assert "shopId_1_activity._id_1" not in await database.contacts.index_information()


async def test_readers_see_the_log_without_notes(api, as_role, database):
    gid, oid = await create_contact(api, "ann@example.com")
    await api.data(NOTE_ADD, {"id": gid, "text": "internal"})
    reader = as_role("READER")
    data = await reader.data(PAGE, {"id": gid})
    assert [e["node"]["kind"] for e in data["contact"]["activity"]["edges"]] == ["CONTACT_CREATED"]
    assert data["contact"]["activity"]["totalCount"] == 1
    only_notes = await reader.data(PAGE, {"id": gid, "kinds": ["NOTE"]})
    assert only_notes["contact"]["activity"]["edges"] == []
    assert only_notes["contact"]["activity"]["totalCount"] == 0
    staff = await as_role("STAFF").data(PAGE, {"id": gid})
    assert staff["contact"]["activity"]["totalCount"] == 2


async def test_another_shop_cannot_read_the_log(api, as_role):
    gid, _ = await create_contact(api, "ann@example.com")
    data = await as_role("OTHER").data(PAGE, {"id": gid})
    assert data["contact"] is None
