"""An order and everything it changes land in one transaction: all of it, or none of it.

A fault hook makes one write inside the order's transaction fail, as if the
process stopped right there (the order is already inserted or changed, the
contact not yet); a proxy drops the connection mid-transaction or loses the
commit's reply, as a network failure or a failover does. Afterwards nothing
is half-written (no order without its contact's statistics and log entry,
no statistics without the order), and the shop's resend records the order
exactly once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128
from conftest import SHOP
from dropping_proxy import Cut
from plans import explain, index_names, query_of, stage_names
from pymongo.asynchronous.collection import AsyncCollection
from test_orders import CANCEL, DRAFT, RECORD, at, contact_doc, kinds, order_input
from test_transactions import cut_at, in_transaction

from loaders.mongo import Database
from resolvers.order_input import LineItemData, OrderData
from resolvers.order_record import record_order
from resolvers.order_stats import COUNTED


class ProcessStopped(Exception):
    """What the fault hook raises: not a database error, so nothing retries it."""


def fault_hook(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], dict[str, int]]:
    """`arm(method, collection)`: that write, inside a transaction, fails once."""

    def arm(method: str, collection: str) -> dict[str, int]:
        real = getattr(AsyncCollection, method)
        seen = {"left": 1, "stopped": 0}

        async def write(self: AsyncCollection, *args: Any, **kwargs: Any) -> Any:
            session = kwargs.get("session")
            in_transaction = session is not None and session.in_transaction
            if self.name == collection and in_transaction and seen["left"]:
                seen["left"] -= 1
                seen["stopped"] += 1
                raise ProcessStopped(f"stopped before {method} on {collection}")
            return await real(self, *args, **kwargs)

        monkeypatch.setattr(AsyncCollection, method, write)
        return seen

    return arm


@pytest.fixture
def stop_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], dict[str, int]]:
    return fault_hook(monkeypatch)


async def assert_whole(database: Database) -> None:
    """Every contact's statistics and log agree with the orders that name it, and vice versa."""
    contacts = {c["_id"]: c async for c in database.contacts.find({"shopId": SHOP})}
    orders = await database.orders.find({"shopId": SHOP}).to_list()
    for order in orders:
        assert order["contactId"] in contacts, f"order {order['externalId']} has no contact"
    for contact_id, contact in contacts.items():
        own = [o for o in orders if o["contactId"] == contact_id]
        counted = [o for o in own if o["status"] in COUNTED]
        assert contact.get("orderCount", 0) == len(counted)
        spent = sum((o["total"].to_decimal() for o in counted), Decimal(0))
        assert contact["totalSpent"].to_decimal() == spent
        logged = [e["orderId"] for e in contact["activity"] if e["kind"] == "ORDER_PLACED"]
        assert sorted(logged) == sorted(o["_id"] for o in own if o["status"] != "DRAFT")
        if counted:
            assert contact["firstOrderAt"] == min(o["placedAt"] for o in counted)
            assert contact["lastOrderAt"] == max(o["placedAt"] for o in counted)


async def failed(api, query: str, variables: dict) -> None:  # type: ignore[no-untyped-def]
    body = await api.gql(query, variables)
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


async def test_a_first_order_stopped_before_its_contact_leaves_nothing(api, database, stop_at):
    seen = stop_at("insert_one", "contacts")  # the order is inserted, its contact not yet

    await failed(api, RECORD, {"input": order_input("T-1", acceptsMarketing=True)})

    assert seen["stopped"] == 1
    assert await database.orders.count_documents({}) == 0
    assert await database.contacts.count_documents({}) == 0
    # The shop resends: the order counts once, with its contact, log and consent.
    again = await api.data(RECORD, {"input": order_input("T-1", acceptsMarketing=True)})
    assert again["orderRecord"]["contact"]["orderCount"] == 1
    contact = await contact_doc(database)
    assert sorted(kinds(contact)) == ["CONSENT_CHANGED", "ORDER_PLACED"]
    assert contact["consent"]["state"] == "SUBSCRIBED" and len(contact["consent"]["history"]) == 1
    await assert_whole(database)


async def test_an_order_of_a_known_contact_stopped_half_way_changes_nothing(api, database, stop_at):
    await api.data(RECORD, {"input": order_input("T-1", placedAt=at(0))})
    before = await contact_doc(database)
    stop_at("update_one", "contacts")

    await failed(
        api,
        RECORD,
        {"input": order_input("T-2", placedAt=at(1), firstName="Ann", acceptsMarketing=True)},
    )

    assert await database.orders.count_documents({}) == 1
    assert (
        await contact_doc(database) == before
    )  # statistics, log, details, consent: all as they were
    resent = await api.data(
        RECORD,
        {"input": order_input("T-2", placedAt=at(1), firstName="Ann", acceptsMarketing=True)},
    )
    contact = resent["orderRecord"]["contact"]
    assert contact["orderCount"] == 2 and contact["totalSpent"]["amount"] == "59.80"
    assert contact["firstName"] == "Ann" and contact["consent"]["state"] == "SUBSCRIBED"
    assert kinds(await contact_doc(database)).count("ORDER_PLACED") == 2
    await assert_whole(database)


async def test_a_lead_stays_a_lead_when_its_first_order_fails(api, database, stop_at):
    await api.data(
        'mutation { contactCreate(input: {email: "ann@example.com"}) { contact { id } } }'
    )
    stop_at("update_one", "contacts")

    await failed(api, RECORD, {"input": order_input("T-1")})

    lead = await contact_doc(database)
    assert lead["kind"] == "LEAD" and lead["orderCount"] == 0 and kinds(lead) == ["CONTACT_CREATED"]
    assert await database.orders.count_documents({}) == 0


@pytest.mark.parametrize("how", ["report", "orderCancel"])
async def test_a_cancellation_stopped_before_its_contact_leaves_the_order_counted(
    api, database, stop_at, how
):
    recorded = await api.data(RECORD, {"input": order_input("T-1")})
    order_id = recorded["orderRecord"]["order"]["id"]
    stop_at("update_one", "contacts")  # after the order's own update

    if how == "report":
        await failed(api, RECORD, {"input": order_input("T-1", status="CANCELED")})
    else:
        await failed(api, CANCEL, {"id": order_id})

    assert (await database.orders.find_one({"externalId": "T-1"}))["status"] == "OPEN"
    contact = await contact_doc(database)
    assert contact["orderCount"] == 1 and "ORDER_CANCELED" not in kinds(contact)
    # Sent again, the cancellation applies once.
    await api.data(RECORD, {"input": order_input("T-1", status="CANCELED")})
    await api.data(CANCEL, {"id": order_id})
    contact = await contact_doc(database)
    assert contact["orderCount"] == 0 and kinds(contact).count("ORDER_CANCELED") == 1
    assert "firstOrderAt" not in contact and "lastOrderAt" not in contact
    await assert_whole(database)


async def test_a_draft_stopped_before_its_contact_is_not_stored(api, database, stop_at):
    created = await api.data(
        'mutation { contactCreate(input: {email: "ann@example.com"}) { contact { id } } }'
    )
    await api.data(RECORD, {"input": order_input("T-0", email="other@example.com")})  # currency
    stop_at("update_one", "contacts")
    draft = {"lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": "9.00"}]}

    await failed(
        api, DRAFT, {"contactId": created["contactCreate"]["contact"]["id"], "input": draft}
    )

    assert await database.orders.count_documents({"status": "DRAFT"}) == 0
    assert (await contact_doc(database))["kind"] == "LEAD"


# ---------------------------------------------------------------- a dropped connection


def an_order(external_id: str = "T-1") -> OrderData:
    return OrderData(
        external_id=external_id,
        email="ann@example.com",
        currency_code="EUR",
        line_items=[LineItemData("Mug", 2, Decimal("12.50"))],
        placed_at=dt.datetime.fromisoformat(at(0)),
    )


async def test_a_connection_dropped_mid_order_runs_the_order_again_once(
    settings, database, commands, keys
):
    await record_order(database, SHOP, an_order("T-0"))  # the contact exists: it is updated
    # The order is inserted in the transaction when the contact's update is cut off.
    cut = Cut(in_transaction("update", "contacts"))

    async with cut_at(settings, database, cut) as flaky:
        commands.reset()
        recorded = await record_order(flaky, SHOP, an_order("T-1"))

    assert len(cut.seen) == 1, "the connection was never cut"
    assert recorded.created
    # The whole transaction ran again: the order's insert was sent twice, stored once.
    assert commands.on("orders").count("insert") == 2
    assert await database.orders.count_documents({"externalId": "T-1"}) == 1
    contact = await contact_doc(database)
    assert contact["orderCount"] == 2 and contact["totalSpent"] == Decimal128("50.00")
    await assert_whole(database)


async def test_a_commit_whose_reply_was_lost_records_the_order_once(settings, database, keys):
    # The server commits, the reply never arrives: the commit is asked again and found done.
    cut = Cut(in_transaction("commitTransaction"), times=2, after_sending=True)

    async with cut_at(settings, database, cut) as flaky:
        recorded = await record_order(flaky, SHOP, an_order())

    assert len(cut.seen) == 2 and recorded.created
    assert await database.orders.count_documents({}) == 1
    assert (await contact_doc(database))["orderCount"] == 1
    # A resend (the shop never heard back either) is a replay: counted once still.
    again = await record_order(database, SHOP, an_order())
    assert not again.created and (await contact_doc(database))["orderCount"] == 1
    await assert_whole(database)


# ---------------------------------------------------------------- indexes


def _sent_find(commands, collection: str, field: str) -> dict:  # type: ignore[no-untyped-def]
    finds = [c for c in commands.documents("find", collection) if field in c["filter"]]
    assert finds, f"no find on {collection} by {field} was sent"
    # The transaction's own fields are not part of the query.
    return {
        k: v for k, v in query_of(finds[-1]).items() if k not in {"startTransaction", "readConcern"}
    }


@pytest.mark.parametrize(
    "collection, field, index",
    [
        ("orders", "externalId", "shopId_1_externalId_1"),
        ("contacts", "emailKey", "shopId_1_emailKey_1"),
    ],
)
async def test_the_look_ups_of_an_order_are_answered_from_an_index(
    api, database, commands, collection, field, index
):
    for n in range(30):  # others' orders and contacts the look-up must not read
        await record_order(database, SHOP, _other(n))
    commands.reset()
    await api.data(RECORD, {"input": order_input("X-7", email="c7@example.com")})  # a replay
    await api.data(RECORD, {"input": order_input("N-1", email="c7@example.com")})  # a known contact

    explained = await explain(database, _sent_find(commands, collection, field))

    assert index_names(explained) == [index], stage_names(explained)
    assert "COLLSCAN" not in stage_names(explained)
    stats = explained["executionStats"]
    assert stats["nReturned"] == 1
    assert stats["totalDocsExamined"] == 1 and stats["totalKeysExamined"] <= 2


def _other(n: int) -> OrderData:
    data = an_order(f"X-{n}")
    data.email = f"c{n}@example.com"
    return data
