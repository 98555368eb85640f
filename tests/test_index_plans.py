"""The queries the code sends are answered from an index that fits them (see tests/plans.py)."""

from __future__ import annotations

from conftest import SHOP
from list_factories import add_contacts, contact_doc, order_doc
from plans import (
    assert_index_walk,
    assert_or_branches_indexed,
    explain,
    index_names,
    is_embedded,
    keys_examined,
)

from graph.types.node import encode_id
from loaders import contacts as loaders_contacts
from loaders.mongo import Database

EMAIL_PAGE = """
query($after: String, $reverse: Boolean) {
  contacts(first: 10, after: $after, sortKey: EMAIL, reverse: $reverse) {
    nodes { email }
    pageInfo { endCursor }
  }
}
"""


def last_sorted_find(commands, collection: str = "contacts") -> dict:
    finds = [c for c in commands.documents("find", collection) if c.get("sort")]
    assert finds, f"no sorted find on {collection} was sent"
    return finds[-1]


async def test_an_email_sorted_page_walks_the_email_index(api, database, commands):
    await add_contacts(database, *[contact_doc(f"c{i:02}@example.com") for i in range(30)])

    for reverse in (False, True):
        commands.reset()
        first = (await api.data(EMAIL_PAGE, {"reverse": reverse}))["contacts"]
        await assert_index_walk(
            database,
            "contacts",
            last_sorted_find(commands),
            "shopId_1_emailKey_1__id_1",
            most_keys=11,
        )
        commands.reset()
        after = first["pageInfo"]["endCursor"]
        second = (await api.data(EMAIL_PAGE, {"after": after, "reverse": reverse}))["contacts"]
        assert second["nodes"][0]["email"] != first["nodes"][-1]["email"]
        await assert_index_walk(
            database,
            "contacts",
            last_sorted_find(commands),
            "shopId_1_emailKey_1__id_1",
            most_keys=12,
        )


async def test_the_csv_export_by_email_walks_the_email_index(http, keys, database, commands):
    await add_contacts(database, *[contact_doc(f"c{i:02}@example.com") for i in range(30)])
    commands.reset()

    response = await http.get(
        "/exports/contacts.csv",
        params={"sortKey": "EMAIL"},
        headers={"Authorization": f"Bearer {keys['READER']}"},
    )

    assert response.status_code == 200 and response.text.count("@example.com") == 30
    await assert_index_walk(
        database, "contacts", last_sorted_find(commands), "shopId_1_emailKey_1__id_1", most_keys=31
    )


KIND_PAGE = """
query($after: String) {
  contacts(first: 5, after: $after, filter: {kind: LEAD}) { pageInfo { endCursor } }
}
"""


async def test_a_page_filtered_by_kind_walks_the_kind_index_to_the_last_tie(
    api, database, commands
):
    # Equal creation times: only _id orders them, and the index must hold it.
    await add_contacts(
        database,
        *[contact_doc(f"lead{i}@example.com") for i in range(12)],
        *[contact_doc(f"buyer{i}@example.com", orders=1) for i in range(3)],
    )
    commands.reset()
    first = (await api.data(KIND_PAGE))["contacts"]
    await assert_index_walk(
        database,
        "contacts",
        last_sorted_find(commands),
        "shopId_1_kind_1_createdAt_-1__id_-1",
        most_keys=6,
    )
    commands.reset()
    await api.data(KIND_PAGE, {"after": first["pageInfo"]["endCursor"]})
    await assert_index_walk(
        database,
        "contacts",
        last_sorted_find(commands),
        "shopId_1_kind_1_createdAt_-1__id_-1",
        most_keys=7,
    )


async def test_the_phone_index_is_not_sparse_and_serves_the_phone_duplicates(
    api, database, commands
):
    indexes = await database.contacts.index_information()
    assert indexes["shopId_1_phone_1"]["key"] == [("shopId", 1), ("phone", 1)]
    assert "sparse" not in indexes["shopId_1_phone_1"]
    await add_contacts(
        database,
        contact_doc("a@example.com", phone="+4930111111"),
        contact_doc("b@example.com", phone="+4930111111"),
        contact_doc("c@example.com"),
    )
    commands.reset()
    await api.data("{ duplicateCandidates { contactCount } }")

    phone = commands.documents("aggregate", "contacts")[0]
    assert phone["pipeline"][0] == {"$match": {"shopId": SHOP, "phone": {"$type": "string"}}}
    embedded = await is_embedded(database)
    explained = await explain(database, phone, hint="shopId_1_phone_1" if embedded else None)
    assert index_names(explained) == ["shopId_1_phone_1"]


async def test_export_and_erasure_find_messages_and_orders_by_index(api, database, commands):
    ann = contact_doc("Ann.Lee@example.com")
    await add_contacts(database, ann, contact_doc("bob@example.com"))
    unlinked = order_doc(ann, "10.00")
    unlinked["contactId"] = None  # left by an earlier delete of Ann
    await database.orders.insert_many([order_doc(ann, "20.00"), unlinked])
    gid = encode_id("Contact", ann["_id"])

    commands.reset()
    await api.data("query($id: ID!) { contactDataExport(id: $id) }", {"id": gid})
    (messages,) = commands.documents("find", "messages")
    (orders,) = commands.documents("find", "orders")
    commands.reset()
    await api.data("mutation($id: ID!) { contactErase(id: $id) { deletedIds } }", {"id": gid})
    (erase_messages,) = commands.documents("delete", "messages")
    (erase_orders,) = commands.documents("update", "orders")

    for command in (messages, {"filter": erase_messages["deletes"][0]["q"]}):
        assert command["filter"]["$or"][1] == {"toKey": "ann.lee@example.com"}
        await assert_or_branches_indexed(
            database,
            "messages",
            {"find": "messages", **command},
            ["shopId_1_contactId_1_createdAt_-1", "shopId_1_toKey_1"],
        )
    for command in (orders, {"filter": erase_orders["updates"][0]["q"]}):
        await assert_or_branches_indexed(
            database,
            "orders",
            {"find": "orders", **command},
            ["shopId_1_contactId_1_placedAt_-1__id_-1", "shopId_1_emailKey_1"],
        )


AT_MOST = """
query($max: Int!) {
  contacts(first: 10, sortKey: ORDER_COUNT, filter: {orderCountMax: $max}) { nodes { email } }
}
"""


def _order_count_bound(find: dict) -> dict:
    """How the filter says "at most" for orderCount."""
    parts = find["filter"].get("$and", [find["filter"]])
    found = [
        {k: v for k, v in p.items() if k in ("orderCount", "$or")}
        for p in parts
        if "orderCount" in p or "$or" in p
    ]
    assert len(found) == 1, find["filter"]
    return found[0]


async def test_at_most_is_lte_to_mongodb_and_lt_or_eq_to_the_embedded_server(
    api, database, commands, monkeypatch
):
    await add_contacts(database, *[contact_doc(f"c{n}@example.com", orders=n) for n in (1, 2, 3)])
    embedded = await is_embedded(database)
    # Learnt at connect, from what the server says of itself.
    assert loaders_contacts._lte_as_lt_or_eq is embedded

    commands.reset()
    found = (await api.data(AT_MOST, {"max": 2}))["contacts"]["nodes"]
    assert sorted(n["email"] for n in found) == ["c1@example.com", "c2@example.com"]
    workaround = {"$or": [{"orderCount": {"$lt": 2}}, {"orderCount": {"$eq": 2}}]}
    bound = _order_count_bound(last_sorted_find(commands))
    assert bound == (workaround if embedded else {"orderCount": {"$lte": 2}})

    # What MongoDB is sent: one range, which its (shopId, orderCount, _id) index answers.
    monkeypatch.setattr(loaders_contacts, "_lte_as_lt_or_eq", False)
    commands.reset()
    await api.data(AT_MOST, {"max": 2})
    assert _order_count_bound(last_sorted_find(commands)) == {"orderCount": {"$lte": 2}}


async def test_the_server_is_recognised_by_its_build_info(monkeypatch):
    class Reporting:
        def __init__(self, info: dict) -> None:
            self.info = info

        async def command(self, name: str) -> dict:
            assert name == "buildInfo"
            return self.info

    monkeypatch.setattr(loaders_contacts, "_lte_as_lt_or_eq", True)
    for info, workaround in (
        ({"version": "8.0.4"}, False),
        ({"version": "8.2.11", "secantusVersion": "0.7.0b3"}, True),
    ):
        await loaders_contacts.adapt_to_server(Database(Reporting(info)))  # type: ignore[arg-type]
        assert loaders_contacts._lte_as_lt_or_eq is workaround


RECORD = """
mutation($input: OrderInput!) { orderRecord(input: $input) { userErrors { code } } }
"""


async def test_an_order_is_found_by_its_external_id_through_the_unique_index(
    api, database, commands
):
    order = {
        "externalId": "A-1",
        "email": "ann@example.com",
        "currencyCode": "EUR",
        "lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": "5.00"}],
    }
    for n in range(3):
        await api.data(RECORD, {"input": {**order, "externalId": f"B-{n}"}})
    commands.reset()
    assert (await api.data(RECORD, {"input": order}))["orderRecord"]["userErrors"] == []
    assert (await api.data(RECORD, {"input": order}))["orderRecord"]["userErrors"] == []  # replay

    look_ups = [
        c for c in commands.documents("find", "orders") if c["filter"].get("externalId") == "A-1"
    ]
    assert look_ups, "no look-up by externalId was sent"
    spec = (await database.orders.index_information())["shopId_1_externalId_1"]
    # A plain unique index: a partial one (drafts left out by `$type`) is not
    # used by MongoDB's planner for {shopId, externalId: "A-1"}.
    assert spec["unique"] and "partialFilterExpression" not in spec
    embedded = await is_embedded(database)
    for look_up in look_ups:
        explained = await explain(
            database, look_up, hint="shopId_1_externalId_1" if embedded else None
        )
        assert index_names(explained) == ["shopId_1_externalId_1"]
        assert keys_examined(explained) <= 1
