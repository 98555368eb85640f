"""`contactgraph seed`: bulk fake data that is exactly what the API would have stored."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from conftest import SHOP
from serve_process import cli_env, run_cli

from graph.cli import seed as seeding
from graph.cli.seed import MAX_ORDERS_PER_CONTACT, SeedError, seed_shop
from loaders.contacts import label_key
from resolvers.contacts import ContactDetails, check_details
from resolvers.labels import SHOP_LABEL_LIMIT
from resolvers.order_docs import order_doc
from resolvers.order_input import LineItemData, OrderData, check_order

COUNTED = ["OPEN", "FULFILLED"]


async def order_statistics(database) -> dict:
    """Each contact's statistics, computed from its orders."""
    pipeline = [
        {"$match": {"shopId": SHOP, "status": {"$in": COUNTED}}},
        {
            "$group": {
                "_id": "$contactId",
                "orderCount": {"$sum": 1},
                "totalSpent": {"$sum": "$total"},
                "firstOrderAt": {"$min": "$placedAt"},
                "lastOrderAt": {"$max": "$placedAt"},
            }
        },
    ]
    return {doc.pop("_id"): doc async for doc in await database.orders.aggregate(pipeline)}


async def test_every_contacts_statistics_are_what_its_orders_say(database):
    seeded = await seed_shop(database, SHOP, 120, orders_per_contact=2, seed=7, progress=False)

    assert (seeded.contacts, seeded.orders, seeded.skipped) == (120, 240, 0)
    contacts = await database.contacts.find({"shopId": SHOP}).to_list()
    orders = await database.orders.find({"shopId": SHOP}).to_list()
    assert len(contacts) == 120 and len(orders) == 240
    expected = await order_statistics(database)
    without_counted = 0
    for contact in contacts:
        stats = expected.get(contact["_id"])
        if stats is None:  # every order of it canceled: no times at all, never null
            without_counted += 1
            assert contact["orderCount"] == 0
            assert contact["totalSpent"].to_decimal() == 0
            assert "firstOrderAt" not in contact and "lastOrderAt" not in contact
            continue
        assert contact["orderCount"] == stats["orderCount"]
        assert contact["totalSpent"].to_decimal() == stats["totalSpent"].to_decimal()
        assert contact["firstOrderAt"] == stats["firstOrderAt"]
        assert contact["lastOrderAt"] == stats["lastOrderAt"]
    # The seed draws some canceled orders; with this seed, some contact has only those.
    assert without_counted >= 1
    assert {c["kind"] for c in contacts} == {"CUSTOMER"}
    shop = await database.shops.find_one({"_id": SHOP})
    assert {o["currency"] for o in orders} == {shop["currency"]} == {"EUR"}


async def test_each_contacts_log_holds_its_creation_and_every_order(database):
    await seed_shop(database, SHOP, 40, orders_per_contact=3, seed=3, progress=False)

    orders = await database.orders.find({"shopId": SHOP}).to_list()
    by_contact: dict = {}
    for order in orders:
        by_contact.setdefault(order["contactId"], []).append(order)
    async for contact in database.contacts.find({"shopId": SHOP}):
        own = by_contact[contact["_id"]]
        log = contact["activity"]
        kinds = Counter(entry["kind"] for entry in log)
        canceled = sum(o["status"] == "CANCELED" for o in own)
        assert kinds == Counter(
            {
                "CONTACT_CREATED": 1,
                "CONVERTED_TO_CUSTOMER": 1,
                "ORDER_PLACED": 3,
                **({"ORDER_CANCELED": canceled} if canceled else {}),
            }
        )
        placed = {e["orderId"] for e in log if e["kind"] == "ORDER_PLACED"}
        assert placed == {o["_id"] for o in own}
        assert contact["activityCount"] == contact["activityEmbedded"] == len(log)
        # In write order (oldest first), as recording the orders one by one leaves it.
        assert [(e["at"], e["_id"]) for e in log] == sorted((e["at"], e["_id"]) for e in log)
        assert contact["createdAt"] <= min(o["placedAt"] for o in own)


async def test_seeded_orders_pass_the_checks_of_order_record_unchanged(database):
    await seed_shop(database, SHOP, 30, orders_per_contact=2, seed=11, progress=False)

    async for stored in database.orders.find({"shopId": SHOP}):
        checked = check_order(
            OrderData(
                external_id=stored["externalId"],
                number=stored["number"],
                status=stored["status"],
                email=stored["email"],
                currency_code=stored["currency"],
                line_items=[
                    LineItemData(
                        line["title"],
                        line["quantity"],
                        line["unitPrice"].to_decimal(),
                        line["sku"],
                        line["requiresShipping"],
                    )
                    for line in stored["lineItems"]
                ],
                first_name=stored["firstName"],
                last_name=stored["lastName"],
                phone=stored["phone"],
                placed_at=stored["placedAt"],
                shipping=stored["shipping"].to_decimal(),
                tax=stored["tax"].to_decimal(),
                total=stored["total"].to_decimal(),
                shipping_address=stored["shippingAddress"],
            )
        )
        again = order_doc(SHOP, checked, stored["contactId"], stored["createdAt"])
        assert {**again, "_id": stored["_id"]} == stored


async def test_seeded_contacts_pass_the_checks_of_contact_create_unchanged(database):
    await seed_shop(database, SHOP, 30, seed=5, progress=False)

    async for stored in database.contacts.find({"shopId": SHOP}):
        checked = check_details(
            ContactDetails(
                email=stored["email"],
                first_name=stored["firstName"],
                last_name=stored["lastName"],
                phone=stored["phone"],
                company=stored["company"],
                shipping_address=stored["shippingAddress"],
                labels=stored["labels"],
            ),
            creating=True,
        )
        assert checked.email_key == stored["emailKey"]
        assert checked.labels == stored["labels"]
        assert {k: stored[k] for k in checked.set} == checked.set
        assert stored["kind"] == "LEAD" and stored["orderCount"] == 0
        assert "firstOrderAt" not in stored and "lastOrderAt" not in stored


async def test_label_counts_match_the_contacts_and_the_shops_spelling_is_kept(database):
    await database.shops.insert_one({"_id": SHOP, "labelCount": 1})
    await database.labels.insert_one(
        {"shopId": SHOP, "key": "vip", "name": "Vip", "contactCount": 0}
    )

    await seed_shop(database, SHOP, 150, seed=2, progress=False)

    contacts = await database.contacts.find({"shopId": SHOP}).to_list()
    per_label = Counter(key for c in contacts for key in c["labelKeys"])
    labels = await database.labels.find({"shopId": SHOP}).to_list()
    assert {doc["key"]: doc["contactCount"] for doc in labels} == {
        label_key(name): per_label[label_key(name)] for name in seeding.LABELS
    }
    assert sum(per_label.values()) > 0
    spelled = {name for c in contacts for name in c["labels"]}
    assert "Vip" in spelled and "VIP" not in spelled
    shop = await database.shops.find_one({"_id": SHOP})
    assert shop["labelCount"] == len(labels) == len(seeding.LABELS)


async def test_orders_take_the_shops_own_currency(database):
    await database.shops.insert_one({"_id": SHOP, "currency": "CHF", "labelCount": 0})

    await seed_shop(database, SHOP, 10, orders_per_contact=1, seed=1, progress=False)

    assert await database.orders.distinct("currency", {"shopId": SHOP}) == ["CHF"]


async def test_the_same_seed_again_skips_every_email_the_shop_has_and_changes_nothing(database):
    first = await seed_shop(database, SHOP, 25, orders_per_contact=1, seed=9, progress=False)
    labels = await database.labels.find({"shopId": SHOP}, {"_id": 0}).to_list()

    again = await seed_shop(database, SHOP, 25, orders_per_contact=1, seed=9, progress=False)

    assert (first.contacts, again.contacts, again.orders, again.skipped) == (25, 0, 0, 25)
    assert "skipped 25 whose e-mail the shop already had" in again.summary(SHOP)
    assert await database.contacts.count_documents({"shopId": SHOP}) == 25
    assert await database.orders.count_documents({"shopId": SHOP}) == 25
    assert await database.labels.find({"shopId": SHOP}, {"_id": 0}).to_list() == labels


async def test_a_batch_lands_whole_or_not_at_all(database, monkeypatch):
    monkeypatch.setattr(seeding, "BATCH", 10)
    made = seeding.Faked.order
    count = 0

    def order(self, contact, placed):  # the 25th order repeats an earlier order's id
        nonlocal count
        count += 1
        doc = made(self, contact, placed)
        if count == 25:
            doc["externalId"] = first["externalId"]
        elif count == 1:
            first.update(doc)
        return doc

    first: dict = {}
    monkeypatch.setattr(seeding.Faked, "order", order)

    with pytest.raises(Exception, match="duplicate key"):
        await seed_shop(database, SHOP, 30, orders_per_contact=2, seed=4, progress=False)

    # The first batch (10 contacts, 20 orders) landed; the second failed as a whole.
    contacts = await database.contacts.find({"shopId": SHOP}).to_list()
    assert len(contacts) == 10
    assert await database.orders.count_documents({"shopId": SHOP}) == 20
    per_label = Counter(key for c in contacts for key in c["labelKeys"])
    async for label in database.labels.find({"shopId": SHOP}):
        assert label["contactCount"] == per_label[label["key"]], label


@pytest.mark.parametrize(
    ("contacts", "orders", "message"),
    [
        (-1, 0, "counts must not be negative"),
        (5, -2, "counts must not be negative"),
        (5, MAX_ORDERS_PER_CONTACT + 1, f"at most {MAX_ORDERS_PER_CONTACT}"),
    ],
)
async def test_counts_out_of_range_are_refused_and_write_nothing(
    database, contacts, orders, message
):
    with pytest.raises(SeedError, match=message):
        await seed_shop(database, SHOP, contacts, orders, progress=False)

    for name in ("shops", "contacts", "orders", "labels"):
        assert await database.db[name].count_documents({}) == 0, name


async def test_a_shop_without_room_for_the_labels_is_refused_and_keeps_its_data(database):
    taken = SHOP_LABEL_LIMIT - 3
    await database.shops.insert_one({"_id": SHOP, "labelCount": taken})
    await database.labels.insert_many(
        [{"shopId": SHOP, "key": f"l{i}", "name": f"L{i}", "contactCount": 1} for i in range(taken)]
    )

    with pytest.raises(SeedError, match="at most 250 distinct labels"):
        await seed_shop(database, SHOP, 5, orders_per_contact=1, progress=False)

    assert await database.contacts.count_documents({}) == 0
    assert await database.orders.count_documents({}) == 0
    assert await database.labels.count_documents({}) == taken
    assert (await database.shops.find_one({"_id": SHOP}))["labelCount"] == taken


def cli_on(settings) -> dict[str, str]:
    return cli_env(MONGODB_URI=settings.mongodb_uri or "", CONTACTGRAPH_DATABASE=settings.database)


async def test_the_command_ends_with_one_summary_line(database, settings, tmp_path):
    done = run_cli(
        ["seed", "--shop", SHOP, "--contacts", "20", "--orders-per-contact", "2"],
        cli_on(settings),
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        rf"Seeded 20 contacts and 40 orders in shop '{SHOP}' in \d+\.\d s \(\d+ contacts/s\)\.\n",
        done.stdout,
    ), done.stdout
    assert "seeding" in done.stderr  # the progress bar
    assert await database.contacts.count_documents({"shopId": SHOP}) == 20
    assert await database.orders.count_documents({"shopId": SHOP}) == 40


async def test_the_command_refuses_too_many_orders_per_contact_before_writing(
    database, settings, tmp_path
):
    done = run_cli(
        ["seed", "--contacts", "5", "--orders-per-contact", str(MAX_ORDERS_PER_CONTACT + 1)],
        cli_on(settings),
        cwd=tmp_path,
    )

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"contactgraph: --orders-per-contact is at most {MAX_ORDERS_PER_CONTACT}\n"
    )
    assert await database.shops.count_documents({}) == 0
