"""Every hot path's query, as the code sends it, is answered from an index.

Each test drives the API with a few hundred contacts stored, captures the
commands sent, and asks the server to `explain` each of them: no collection
scan, and no more documents examined than the query selects (plus a few).

The two servers explain differently:

- MongoDB (MONGODB_URI) explains the command itself, writes included, with
  real execution statistics; a list page must examine no more documents
  than its filter selects.
- The embedded server explains only a find's filter, counts as examined
  exactly the documents its chosen index yields, and sorts after its index
  scan, so a page examines every document its filter selects. Its explain
  does not show one step its look-ups take: for a filter no index covers
  whole, it looks up the first field (in the filter's order) that an index
  serves alone and checks the rest on the documents found. That is why
  write filters name `_id` first; `examined` below follows the same steps.

Where a filter cannot be answered from an index by design, the test says
so and asserts exactly that exception, with the reason.
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from conftest import SHOP
from list_factories import add_contacts, at, contact_doc, order_doc
from plans import is_embedded, query_of, stage_names

from graph.types.node import encode_id
from resolvers import activity

CONTACTS = 300
# Documents a plan may examine beyond what its filter selects (the look-ahead row and such).
SLACK = 2


def stored_contacts() -> list[dict[str, Any]]:
    """A shop of varied contacts: kinds, labels, spending, order dates, consent, accounts."""
    docs = []
    for i in range(CONTACTS):
        orders = i % 4
        doc = contact_doc(
            f"p{i:03}@{('shop', 'mail', 'corp')[i % 3]}.example",
            orders=orders,
            spent=f"{orders * 25}.00",
            labels=["VIP"] if i % 10 == 0 else (["Wholesale", "VIP"] if i % 25 == 1 else None),
            created=at(i),
            state=("SUBSCRIBED" if i % 7 == 0 else None),
            firstName=f"Name{i:03}",
            lastName=("Lee", "Kim", "Roe")[i % 3],
            hasAccount=i % 9 == 0,
            activeSubscriptionCount=1 if i % 6 == 0 else 0,
            isMember=i % 12 == 0,
        )
        if orders:
            doc["lastOrderAt"] = at(i + 1)
            doc["firstOrderAt"] = at(i + 1)
        docs.append(doc)
    return docs


# --- what the server does with a command -------------------------------------------------


_SESSION = {"startTransaction", "readConcern", "writeConcern", "bypassDocumentValidation"}
_FILTER_OF = {"find": "filter", "count": "query", "findAndModify": "query"}


def filters_of(name: str, command: dict[str, Any]) -> list[dict[str, Any]]:
    """The filters of a command: one, or one per statement of a bulk update or delete."""
    if name in _FILTER_OF:
        return [command.get(_FILTER_OF[name]) or {}]
    if name == "update":
        return [one["q"] for one in command["updates"]]
    if name == "delete":
        return [one["q"] for one in command["deletes"]]
    if name == "aggregate":  # what its first stage selects
        return [command["pipeline"][0]["$match"]]
    raise AssertionError(f"no filter known for {name}")


def _uses_index(explained: dict[str, Any]) -> bool:
    return "COLLSCAN" not in stage_names(explained) and "IXSCAN" in stage_names(explained)


async def _explain_find(database: Any, collection: str, condition: dict[str, Any]) -> dict:
    return await database.db.command(
        {"explain": {"find": collection, "filter": condition}, "verbosity": "executionStats"}
    )


async def examined(
    database: Any, collection: str, name: str, command: dict[str, Any], statement: int = 0
) -> int:
    """Documents the server examines for one statement of the command; AssertionError for a scan."""
    condition = filters_of(name, command)[statement]
    if not await is_embedded(database):
        # What belongs to the session or the transaction, not to the query.
        body = {k: v for k, v in query_of(command).items() if k not in _SESSION}
        if name in ("update", "delete"):
            key = "updates" if name == "update" else "deletes"
            body = {**body, key: [body[key][statement]]}
        explained = await database.db.command({"explain": body, "verbosity": "executionStats"})
        stages = _all_stage_names(explained)
        assert "COLLSCAN" not in stages, f"{name} {condition} scans {collection}: {stages}"
        return _docs_examined(explained)
    assert condition, f"{name} on {collection} has no filter: a scan"
    assert not any(k.startswith("$") for k in condition), (
        f"{condition}: the embedded server scans {collection} for a top-level operator"
    )
    explained = await _explain_find(database, collection, condition)
    if _uses_index(explained):
        return int(explained["executionStats"]["totalDocsExamined"])
    # No index covers the whole filter: the server looks up the first field an index serves.
    for field, clause in condition.items():
        alone = await _explain_find(database, collection, {field: clause})
        if _uses_index(alone):
            return await database.db[collection].count_documents({field: clause})
    raise AssertionError(f"{condition}: no field of it is served by an index of {collection}")


def _docs_examined(explained: dict[str, Any]) -> int:
    """MongoDB's count, at the top or, for an aggregation not pushed down whole, in its cursor stage."""
    if "executionStats" in explained:
        return int(explained["executionStats"]["totalDocsExamined"])
    for stage in explained.get("stages") or []:
        if "$cursor" in stage:
            return int(stage["$cursor"]["executionStats"]["totalDocsExamined"])
    raise AssertionError(f"no execution statistics in {explained}")


def _all_stage_names(explained: dict[str, Any]) -> list[str]:
    """Stage names anywhere in a MongoDB explain (find, write and aggregate shapes alike)."""
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("stage"), str):
                names.append(node["stage"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(explained.get("queryPlanner") or explained.get("stages") or explained)
    return names


async def assert_narrow(
    database: Any, commands: Any, name: str, collection: str, *, most: int = 1
) -> None:
    """Every `name` command sent to `collection` examines at most `most` documents (+ SLACK)."""
    sent = commands.documents(name, collection)
    assert sent, f"no {name} on {collection} was sent"
    for command in sent:
        for statement, condition in enumerate(filters_of(name, command)):
            seen = await examined(database, collection, name, command, statement)
            assert seen <= most + SLACK, (
                f"{name} {condition} examines {seen} documents of {collection}"
            )


# --- point look-ups and the writes of each mutation -----------------------------------------


async def test_a_contact_is_read_by_id_node_and_email_from_an_index(api, database, commands):
    docs = await add_contacts(database, *stored_contacts())
    gid = encode_id("Contact", docs[150]["_id"])

    for query, variables in (
        ("query($id: ID!) { contact(id: $id) { email } }", {"id": gid}),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": gid}),
        ('{ contactByEmail(email: "P150@corp.example") { email } }', None),
    ):
        commands.reset()
        assert (await api.data(query, variables)) != {}
        await assert_narrow(database, commands, "find", "contacts")


CONTACT_PAGE = """
query($id: ID!) {
  contact(id: $id) {
    email orderCount
    activity(first: 50) { pageInfo { hasNextPage } nodes { id kind text order { id } } }
    orders(first: 5) { nodes { id externalId status } }
  }
}
"""


async def test_the_contact_page_reads_its_contact_log_and_orders_from_indexes(
    api, database, commands
):
    docs = await add_contacts(database, *stored_contacts())
    for doc in docs[:40]:
        await database.orders.insert_many([order_doc(doc, "10.00") for _ in range(3)])
        # Earlier log entries archived, so that the page reads the archive too.
        entries = [activity.entry("NOTE", text="old", author="Ann") for _ in range(3)]
        await database.activity_archive.insert_one(activity.bucket_of(SHOP, doc["_id"], entries))
        await database.contacts.update_one(
            {"_id": doc["_id"]},
            {"$inc": {"activityCount": 3, "activityArchived": 3, "activityArchivedKinds.NOTE": 3}},
        )

    commands.reset()
    page = (await api.data(CONTACT_PAGE, {"id": encode_id("Contact", docs[8]["_id"])}))["contact"]

    assert len(page["orders"]["nodes"]) == 3
    assert [n["text"] for n in page["activity"]["nodes"]] == ["old"] * 3
    await assert_narrow(database, commands, "find", "contacts")
    for name in ("aggregate", "find"):
        for collection in ("contacts", "orders", "activity_archive"):
            if commands.documents(name, collection):
                await assert_narrow(database, commands, name, collection, most=3)
    for collection in ("orders", "activity_archive"):
        read = commands.documents("aggregate", collection) + commands.documents("find", collection)
        assert read, f"the page read nothing from {collection}: the check would prove nothing"


ORDER = """
mutation($input: OrderInput!) { orderRecord(input: $input) { userErrors { code } } }
"""


def order_input(external_id: str, email: str) -> dict[str, Any]:
    return {
        "externalId": external_id,
        "email": email,
        "currencyCode": "EUR",
        "lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": "5.00"}],
    }


async def test_order_ingestion_finds_and_writes_through_indexes(api, database, commands):
    await add_contacts(database, *stored_contacts())
    for n in range(20):
        await api.data(ORDER, {"input": order_input(f"old-{n}", f"p{n:03}@shop.example")})

    for label, external_id, email in (
        ("new e-mail", "N-1", "newcomer@example.com"),
        ("existing contact", "E-1", "p120@shop.example"),
        ("replay", "E-1", "p120@shop.example"),
    ):
        commands.reset()
        result = await api.data(ORDER, {"input": order_input(external_id, email)})
        assert result["orderRecord"]["userErrors"] == [], label
        await assert_narrow(database, commands, "find", "orders")
        if label != "replay":
            await assert_narrow(database, commands, "find", "contacts")
        if label == "existing contact":
            await assert_narrow(database, commands, "update", "contacts")
    assert await database.orders.count_documents({"shopId": SHOP}) == 22


NOTE_ADD = """
mutation($id: ID!) { noteAdd(contactId: $id, text: "Called back") { note { id } userErrors { code } } }
"""
NOTE_UPDATE = """
mutation($id: ID!, $note: ID!) {
  noteUpdate(contactId: $id, noteId: $note, text: "Called back twice") { userErrors { code } }
}
"""
NOTE_DELETE = """
mutation($id: ID!, $note: ID!) { noteDelete(contactId: $id, noteId: $note) { userErrors { code } } }
"""


async def test_notes_are_added_edited_and_deleted_through_indexes(api, database, commands):
    docs = await add_contacts(database, *stored_contacts())
    gid = encode_id("Contact", docs[42]["_id"])

    commands.reset()
    added = (await api.data(NOTE_ADD, {"id": gid}))["noteAdd"]
    assert added["userErrors"] == []
    await assert_narrow(database, commands, "findAndModify", "contacts")

    note = {"id": gid, "note": added["note"]["id"]}
    commands.reset()
    assert (await api.data(NOTE_UPDATE, note))["noteUpdate"]["userErrors"] == []
    await assert_narrow(database, commands, "findAndModify", "contacts")

    commands.reset()
    assert (await api.data(NOTE_DELETE, note))["noteDelete"]["userErrors"] == []
    await assert_narrow(database, commands, "update", "contacts")
    stored = await database.contacts.find_one({"_id": docs[42]["_id"]})
    assert [e for e in stored["activity"] if e["kind"] == "NOTE"] == []


async def test_an_archived_note_is_found_by_its_entry_id_through_an_index(api, database, commands):
    docs = await add_contacts(database, *stored_contacts())
    # Other contacts' archives, so that a look-up by shop alone would show.
    for doc in docs[:40]:
        entries = [activity.entry("NOTE", text="old", author="Ann") for _ in range(3)]
        await database.activity_archive.insert_one(activity.bucket_of(SHOP, doc["_id"], entries))
    owner = docs[7]
    archived = await database.activity_archive.find_one({"contactId": owner["_id"]})
    note_id = archived["entries"][0]["_id"]
    await database.contacts.update_one(
        {"_id": owner["_id"]},
        {"$inc": {"activityCount": 3, "activityArchived": 3, "activityArchivedKinds.NOTE": 3}},
    )
    note = {"id": encode_id("Contact", owner["_id"]), "note": encode_note(note_id, owner["_id"])}

    commands.reset()
    assert (await api.data(NOTE_DELETE, note))["noteDelete"]["userErrors"] == []

    await assert_narrow(database, commands, "find", "activity_archive")
    await assert_narrow(database, commands, "update", "activity_archive")
    left = await database.activity_archive.find_one({"_id": archived["_id"]})
    assert [e["_id"] for e in left["entries"]] == [e["_id"] for e in archived["entries"][1:]]


def encode_note(note_id: ObjectId, contact_id: ObjectId) -> str:
    return encode_id("ActivityEntry", note_id, contact_id)


LABELS = """
mutation($ids: [ID!]!, $add: Boolean!) {
  labelsAdd(contactIds: $ids, labels: ["Gold"]) @include(if: $add) { userErrors { code } }
  labelsRemove(contactIds: $ids, labels: ["Gold"]) @skip(if: $add) { userErrors { code } }
}
"""


async def test_labels_are_added_and_removed_through_indexes(api, database, commands):
    docs = await add_contacts(database, *stored_contacts())
    ids = [encode_id("Contact", d["_id"]) for d in docs[10:13]]

    for add in (True, False):
        commands.reset()
        result = await api.data(LABELS, {"ids": ids, "add": add})
        assert next(iter(result.values()))["userErrors"] == []
        await assert_narrow(database, commands, "find", "contacts", most=len(ids))
        await assert_narrow(database, commands, "update", "contacts")
    stored = await database.contacts.find(
        {"_id": {"$in": [d["_id"] for d in docs[10:13]]}}
    ).to_list()
    assert all("gold" not in d["labelKeys"] for d in stored)


CONSENT = """
mutation($id: ID!, $state: MarketingState!) {
  consentUpdate(contactId: $id, state: $state) { userErrors { code } }
}
"""


async def test_consent_changes_are_written_through_an_index(api, database, commands):
    docs = await add_contacts(database, *stored_contacts())
    gid = encode_id("Contact", docs[1]["_id"])

    for state in ("SUBSCRIBED", "UNSUBSCRIBED"):
        commands.reset()
        assert (await api.data(CONSENT, {"id": gid, "state": state}))["consentUpdate"][
            "userErrors"
        ] == []
        await assert_narrow(database, commands, "findAndModify", "contacts")
    stored = await database.contacts.find_one({"_id": docs[1]["_id"]})
    assert stored["consent"]["state"] == "UNSUBSCRIBED"


async def test_a_long_log_is_archived_through_an_index(api, database, commands):
    docs = await add_contacts(database, *stored_contacts())
    owner = docs[3]
    entries = [activity.entry("NOTE", text=f"n{i}", author="Ann") for i in range(activity.SPILL_AT)]
    await database.contacts.update_one(
        {"_id": owner["_id"]},
        {"$set": {"activity": entries}, "$inc": {"activityCount": len(entries)}},
    )
    await database.contacts.update_one(
        {"_id": owner["_id"]}, {"$set": {"activityEmbedded": len(entries)}}
    )

    commands.reset()
    await api.data(NOTE_ADD, {"id": encode_id("Contact", owner["_id"])})

    await assert_narrow(database, commands, "update", "contacts")
    assert await database.activity_archive.count_documents({"contactId": owner["_id"]}) >= 1


# --- list pages ----------------------------------------------------------------------------

PAGE = """
query($filter: ContactFilter, $query: String, $sortKey: ContactSortKey, $after: String) {
  contacts(first: 10, filter: $filter, query: $query, sortKey: $sortKey, after: $after) {
    nodes { email }
    pageInfo { endCursor hasNextPage }
  }
}
"""

T_MID = at(150).isoformat()
T_LATE = at(220).isoformat()

# Each filter of ContactFilter (and the free-text query); the last item, when
# set, is why the embedded server cannot answer it from an index: SCANS (it
# scans the collection) or SHOP_WIDE (it reads the shop's contacts through the
# shop's index and checks each), with the reason.
SCANS, SHOP_WIDE = "scans", "shop"
AT_MOST = (
    SCANS,
    "`at most` is sent to it as `$lt` OR `$eq` (its `$lte` on a compound index loses "
    "the bound itself), and it scans for any top-level `$or`",
)
REGEX = (SHOP_WIDE, "it has no index bounds for a prefix `$regex`; MongoDB has")
NEGATION = (SHOP_WIDE, "a negation: it looks up the shop; MongoDB walks the index around the value")
FILTERS: list[tuple[str, dict[str, Any] | None, str | None, tuple[str, str] | None]] = [
    ("kind", {"kind": "LEAD"}, None, None),
    ("labelsAny", {"labelsAny": ["Wholesale"]}, None, None),
    ("totalSpentMin", {"totalSpentMin": "70"}, None, None),
    ("orderCountMin (has orders)", {"orderCountMin": 3}, None, None),
    ("createdAt range", {"createdAfter": T_MID, "createdBefore": T_LATE}, None, None),
    ("lastOrderAt range", {"lastOrderAfter": T_MID, "lastOrderBefore": T_LATE}, None, None),
    ("marketingState", {"marketingState": "SUBSCRIBED"}, None, None),
    ("hasActiveSubscription", {"hasActiveSubscription": True}, None, None),
    ("isMember", {"isMember": True}, None, None),
    ("hasActiveSubscription: false", {"hasActiveSubscription": False}, None, NEGATION),
    ("isMember: false", {"isMember": False}, None, NEGATION),
    ("orderCountMax", {"orderCountMax": 0}, None, AT_MOST),
    ("totalSpentMax", {"totalSpentMax": "0"}, None, AT_MOST),
    ("search by word", None, "name042", REGEX),
    ("search by e-mail domain", None, "corp.example", REGEX),
    (
        "search with two words",
        None,
        "name042 lee",
        (SCANS, "two words are two conditions under `$and`, and it scans for a top-level `$and`"),
    ),
]


def _selects(database: Any, condition: dict[str, Any]) -> Any:
    return database.contacts.count_documents(condition)


def last_page_find(commands: Any) -> dict[str, Any]:
    finds = [c for c in commands.documents("find", "contacts") if c.get("sort")]
    assert finds, "no sorted find on contacts was sent"
    return finds[-1]


async def check_page(
    database: Any, command: dict[str, Any], embedded: bool, why: tuple[str, str] | None
) -> None:
    condition = command["filter"]
    selected = await _selects(database, condition)
    if embedded and why is not None:
        # The documented exception, asserted: the test notices when it no longer holds.
        how, reason = why
        if how == SCANS:
            assert any(k.startswith("$") for k in condition), condition
            explained = await _explain_find(database, "contacts", condition)
            assert stage_names(explained)[-1] == "COLLSCAN", reason
        else:
            seen = await examined(database, "contacts", "find", command)
            assert seen == await _selects(database, {"shopId": SHOP}), reason
        return
    seen = await examined(database, "contacts", "find", command)
    # The embedded server sorts after its index scan: it examines what the filter
    # selects. MongoDB examines no more than that either (less when its index walks the sort).
    assert seen <= selected + SLACK, f"{condition} examines {seen} for {selected} selected"


async def test_each_filter_pages_from_an_index(api, database, commands):
    await add_contacts(database, *stored_contacts())
    embedded = await is_embedded(database)

    for name, condition, text, why in FILTERS:
        commands.reset()
        page = (await api.data(PAGE, {"filter": condition, "query": text}))["contacts"]
        assert page["nodes"], f"{name} selects no contact: the check would prove nothing"
        await check_page(database, last_page_find(commands), embedded, why)


SORT_KEYS = [
    "CREATED_AT",
    "UPDATED_AT",
    "NAME",
    "EMAIL",
    "LAST_ORDER_AT",
    "ORDER_COUNT",
    "TOTAL_SPENT",
]

AFTER_A_CURSOR = (
    SCANS,
    "a page after a cursor adds `$or` (after the value, or the same value and a greater id) "
    "under `$and`, which it scans for",
)


async def test_each_sort_key_pages_from_an_index(api, database, commands):
    await add_contacts(database, *stored_contacts())
    embedded = await is_embedded(database)
    for sort_key in SORT_KEYS:
        await page_twice(api, database, commands, sort_key, embedded)


async def page_twice(api: Any, database: Any, commands: Any, sort_key: str, embedded: bool) -> None:

    commands.reset()
    first = (await api.data(PAGE, {"sortKey": sort_key}))["contacts"]
    command = last_page_find(commands)
    assert set(command["sort"]) == {"_id", next(k for k in command["sort"] if k != "_id")}
    await check_page(database, command, embedded, None)
    if not embedded:
        explained = await database.db.command(
            {"explain": query_of(command), "verbosity": "executionStats"}
        )
        # MongoDB walks the (shopId, field, _id) index: no sort, one page of documents.
        assert "SORT" not in stage_names(explained), stage_names(explained)
        assert explained["executionStats"]["totalDocsExamined"] <= 11

    commands.reset()
    second = (await api.data(PAGE, {"sortKey": sort_key, "after": first["pageInfo"]["endCursor"]}))[
        "contacts"
    ]
    assert set(n["email"] for n in second["nodes"]).isdisjoint(n["email"] for n in first["nodes"])
    await check_page(database, last_page_find(commands), embedded, AFTER_A_CURSOR)


async def test_filters_that_no_index_narrows_are_named(api, database, commands):
    """labelsAll, labelsNone and hasAccount: served by the shop's index, checked on each document.

    - labelsNone is a negation: an index holds the labels a contact has, not
      the ones it lacks, so it narrows nothing (on MongoDB either).
    - labelsAll: the embedded server has no index bounds for `$all`; MongoDB
      looks up its first label and checks the rest.
    - hasAccount: a yes/no that most contacts share; an index would narrow
      little and cost every write, so none is kept.
    """
    await add_contacts(database, *stored_contacts())
    embedded = await is_embedded(database)
    shop_size = await database.contacts.count_documents({"shopId": SHOP})

    for condition in (
        {"labelsNone": ["VIP"]},
        {"labelsAll": ["VIP", "Wholesale"]},
        {"hasAccount": True},
    ):
        commands.reset()
        assert (await api.data(PAGE, {"filter": condition}))["contacts"]["nodes"]
        command = last_page_find(commands)
        seen = await examined(database, "contacts", "find", command)
        # Never the whole collection, and never more than the shop.
        assert seen <= shop_size + SLACK, (condition, seen)
        if embedded:
            assert seen == shop_size, (condition, seen)
