"""Transactions survive a connection dropped mid-way: retried whole, never half-written.

Each test runs a real multi-document write (deleting a contact: the
contact, its label counts, its orders and archive in one transaction)
through a proxy that cuts the connection at one command, as a network
failure or a failover would. MongoDB's rules for that case: a failure
labelled TransientTransactionError (a dropped connection inside a
transaction is one) runs the whole transaction again; a commit whose
outcome is unknown is retried as a commit, because it may have happened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bson import ObjectId
from conftest import SHOP
from dropping_proxy import Command, Cut, DroppingProxy
from list_factories import add_contacts, contact_doc, order_doc
from pymongo import uri_parser

from loaders.mongo import Database, connect
from resolvers.contacts import delete_contacts


@asynccontextmanager
async def cut_at(settings: Any, database: Database, cut: Cut) -> AsyncIterator[Database]:
    """The test database as seen through a connection that `cut` drops."""
    hello = await database.client.admin.command("hello")
    host, port = (hello.get("primary") or hello["me"]).rsplit(":", 1)
    parsed = uri_parser.parse_uri(settings.mongodb_uri)
    auth = {
        key: value
        for key, value in (
            ("username", parsed.get("username")),
            ("password", parsed.get("password")),
            ("authSource", parsed["options"].get("authsource")),
        )
        if value
    }
    async with DroppingProxy(host, int(port), cut) as proxy:
        client = connect(
            f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true",
            serverSelectionTimeoutMS=5000,
            **auth,
        )
        try:
            yield Database(client[settings.database])
        finally:
            await client.close()


def in_transaction(name: str, collection: str | None = None) -> Any:
    def matches(command: Command) -> bool:
        if "txnNumber" not in command or name not in command:
            return False
        return collection is None or command[name] == collection

    return matches


async def two_labelled_contacts_with_orders(database: Database) -> tuple[dict, dict]:
    ann, bob = await add_contacts(
        database,
        contact_doc("ann@example.com", labels=["VIP"], orders=1),
        contact_doc("bob@example.com", labels=["VIP"], orders=1),
    )
    await database.labels.insert_one(
        {"_id": ObjectId(), "shopId": SHOP, "key": "vip", "name": "VIP", "contactCount": 2}
    )
    await database.orders.insert_many([order_doc(ann, "10.00"), order_doc(bob, "20.00")])
    return ann, bob


async def assert_ann_deleted_once(database: Database, ann: dict, bob: dict) -> None:
    assert await database.contacts.count_documents({"_id": ann["_id"]}) == 0
    assert await database.contacts.count_documents({"_id": bob["_id"]}) == 1
    # Decremented exactly once: neither lost nor applied twice.
    label = await database.labels.find_one({"shopId": SHOP, "key": "vip"})
    assert label is not None and label["contactCount"] == 1
    orders = {o["total"].to_decimal(): o["contactId"] async for o in database.orders.find({})}
    assert orders == {10: None, 20: bob["_id"]}


async def test_a_connection_dropped_mid_transaction_runs_the_transaction_again(
    settings, database, commands
):
    ann, bob = await two_labelled_contacts_with_orders(database)
    # The contact is already deleted inside the transaction when its orders'
    # update is cut off: a half-done transaction, never committed.
    cut = Cut(in_transaction("update", "orders"))

    async with cut_at(settings, database, cut) as flaky:
        commands.reset()
        deleted, problems = await delete_contacts(flaky, SHOP, [(0, ann["_id"])])

    assert len(cut.seen) == 1, "the connection was never cut"
    assert (deleted, problems) == ([ann["_id"]], [])
    await assert_ann_deleted_once(database, ann, bob)
    # The whole transaction ran twice: the contact's delete was sent again.
    assert commands.on("contacts").count("delete") == 2


async def test_a_commit_that_never_arrived_is_sent_again(settings, database):
    ann, bob = await two_labelled_contacts_with_orders(database)
    # Twice: the driver's own single retry of a commit is not enough.
    cut = Cut(in_transaction("commitTransaction"), times=2)

    async with cut_at(settings, database, cut) as flaky:
        deleted, problems = await delete_contacts(flaky, SHOP, [(0, ann["_id"])])

    assert len(cut.seen) == 2
    assert (deleted, problems) == ([ann["_id"]], [])
    await assert_ann_deleted_once(database, ann, bob)


async def test_a_commit_whose_reply_was_lost_is_not_reported_as_a_failure(settings, database):
    ann, bob = await two_labelled_contacts_with_orders(database)
    # The server commits, the answer never comes back (twice): the outcome
    # is unknown, so the commit is asked again and found done.
    cut = Cut(in_transaction("commitTransaction"), times=2, after_sending=True)

    async with cut_at(settings, database, cut) as flaky:
        deleted, problems = await delete_contacts(flaky, SHOP, [(0, ann["_id"])])

    assert len(cut.seen) == 2
    assert (deleted, problems) == ([ann["_id"]], [])
    await assert_ann_deleted_once(database, ann, bob)
