"""The contactStats report, read straight from its loader on the embedded server.

tests/test_stats.py tells the story through the API; these pin the
aggregation underneath: exact counts of customers, leads, subscribers and
repeat customers (two orders and up), money summed exactly and its
average rounded half-up to cents, new contacts per month with empty months
as zero across a year's end, the shop's labels ranked by contact count
(ties by key) up to the asked number, the filter applied to every figure,
another shop's contacts and label names never used, and an empty shop.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from conftest import OTHER_SHOP, SHOP
from list_factories import add_contacts, contact_doc

from loaders.stats import MAX_TOP_LABELS, TOP_LABELS, contact_stats, stats_pipeline

MINE = {"shopId": SHOP}


def on(year: int, month: int, day: int = 15, hour: int = 12) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


async def name_labels(database: Any, names: dict[str, str], shop: str = SHOP) -> None:
    await database.labels.insert_many(
        [
            {"shopId": shop, "key": key, "name": name, "contactCount": 0}
            for key, name in names.items()
        ]
    )


def labelled(email: str, keys: list[str], **kw: Any) -> dict[str, Any]:
    doc = contact_doc(email, **kw)
    doc["labelKeys"] = keys
    return doc


# -- totals -------------------------------------------------------------------


async def test_every_total_is_exact_and_repeat_customers_start_at_two_orders(database):
    await add_contacts(
        database,
        contact_doc("a@x.test", orders=1, spent="0.10", state="SUBSCRIBED"),
        contact_doc("b@x.test", orders=2, spent="0.20", state="SUBSCRIBED"),
        contact_doc("c@x.test", orders=3, spent="1000000000000.01", state="UNSUBSCRIBED"),
        contact_doc("d@x.test", state="PENDING"),
        contact_doc("e@x.test"),
        contact_doc("f@x.test", kind="CUSTOMER"),
    )
    stats = await contact_stats(database, SHOP, MINE)
    assert (stats.contacts, stats.customers, stats.leads) == (6, 4, 2)
    assert stats.subscribed == 2
    assert stats.repeat_customers == 2
    assert stats.orders == 6
    assert stats.total_revenue == Decimal("1000000000000.31")
    assert str(stats.total_revenue) == "1000000000000.31"
    # 1000000000000.31 / 6 = 166666666666.718333…
    assert stats.average_order_value == Decimal("166666666666.72")


async def test_the_average_order_value_rounds_half_up_to_cents(database):
    await add_contacts(database, contact_doc("a@x.test", orders=2, spent="0.05"))
    stats = await contact_stats(database, SHOP, MINE)
    assert str(stats.average_order_value) == "0.03"  # 0.025: half-even would say 0.02

    await database.contacts.delete_many({})
    await add_contacts(database, contact_doc("b@x.test", orders=3, spent="10"))
    stats = await contact_stats(database, SHOP, MINE)
    assert str(stats.average_order_value) == "3.33"
    assert stats.total_revenue == Decimal("10")


async def test_contacts_without_orders_have_no_average_but_count_their_money(database):
    await add_contacts(database, contact_doc("a@x.test", spent="12.50"), contact_doc("b@x.test"))
    stats = await contact_stats(database, SHOP, MINE)
    assert stats.orders == 0
    assert stats.average_order_value is None
    assert stats.total_revenue == Decimal("12.50")
    assert stats.repeat_customers == 0


async def test_money_stored_as_plain_numbers_is_summed_too(database):
    await add_contacts(database, contact_doc("a@x.test", orders=1))
    await database.contacts.update_many({}, {"$set": {"totalSpent": 7}})
    stats = await contact_stats(database, SHOP, MINE)
    assert stats.total_revenue == Decimal("7")
    assert stats.average_order_value == Decimal("7.00")


async def test_an_empty_shop_reports_zeros_and_nothing_to_chart(database):
    await add_contacts(database, contact_doc("a@x.test", shop=OTHER_SHOP, orders=2, spent="5"))
    stats = await contact_stats(database, SHOP, MINE)
    assert (stats.contacts, stats.customers, stats.leads, stats.subscribed) == (0, 0, 0, 0)
    assert (stats.repeat_customers, stats.orders) == (0, 0)
    assert stats.total_revenue == Decimal("0")
    assert stats.average_order_value is None
    assert stats.new_contacts_by_month == []
    assert stats.top_labels == []


async def test_another_shops_contacts_are_never_counted(database):
    await add_contacts(
        database,
        contact_doc("a@x.test", orders=2, spent="3.00", state="SUBSCRIBED", created=on(2025, 1)),
        labelled("b@x.test", ["vip"], shop=OTHER_SHOP, orders=5, spent="90", created=on(2024, 6)),
        labelled("c@x.test", ["vip"], shop=OTHER_SHOP, state="SUBSCRIBED", created=on(2026, 6)),
    )
    stats = await contact_stats(database, SHOP, MINE)
    assert (stats.contacts, stats.customers, stats.leads, stats.subscribed) == (1, 1, 0, 1)
    assert (stats.orders, stats.total_revenue) == (2, Decimal("3.00"))
    assert stats.new_contacts_by_month == [("2025-01", 1)]
    assert stats.top_labels == []


async def test_the_filter_applies_to_every_figure(database):
    await add_contacts(
        database,
        labelled("a@x.test", ["vip"], orders=2, spent="4.00", created=on(2025, 1)),
        labelled("b@x.test", ["vip", "b2b"], orders=1, spent="1.00", created=on(2025, 3)),
        labelled("c@x.test", ["news"], created=on(2024, 11), state="SUBSCRIBED"),
    )
    stats = await contact_stats(database, SHOP, {"shopId": SHOP, "kind": "CUSTOMER"})
    assert (stats.contacts, stats.customers, stats.leads, stats.subscribed) == (2, 2, 0, 0)
    assert (stats.orders, stats.total_revenue, stats.repeat_customers) == (3, Decimal("5.00"), 1)
    assert stats.average_order_value == Decimal("1.67")
    assert stats.new_contacts_by_month == [("2025-01", 1), ("2025-02", 0), ("2025-03", 1)]
    assert [(x.key, x.contact_count) for x in stats.top_labels] == [("vip", 2), ("b2b", 1)]


# -- new contacts per month ----------------------------------------------------


async def test_months_run_from_first_to_last_in_utc_with_empty_months_as_zero(database):
    await add_contacts(
        database,
        contact_doc("a@x.test", created=on(2024, 11, 30, 23)),
        contact_doc("b@x.test", created=dt.datetime(2025, 2, 1, 0, 0, tzinfo=dt.UTC)),
        contact_doc("c@x.test", created=dt.datetime(2025, 1, 31, 23, 59, 59, tzinfo=dt.UTC)),
        contact_doc("d@x.test", created=on(2025, 2, 28)),
        contact_doc("e@x.test", created=on(2025, 4, 1)),
    )
    stats = await contact_stats(database, SHOP, MINE)
    assert stats.new_contacts_by_month == [
        ("2024-11", 1),
        ("2024-12", 0),
        ("2025-01", 1),
        ("2025-02", 2),
        ("2025-03", 0),
        ("2025-04", 1),
    ]


async def test_a_single_month_and_a_year_end_gap(database):
    await add_contacts(database, contact_doc("a@x.test", created=on(999, 12)))
    stats = await contact_stats(database, SHOP, MINE)
    assert stats.new_contacts_by_month == [("0999-12", 1)]

    await add_contacts(database, contact_doc("b@x.test", created=on(1001, 1)))
    stats = await contact_stats(database, SHOP, MINE)
    months = stats.new_contacts_by_month
    assert months[0] == ("0999-12", 1)
    assert months[1] == ("1000-01", 0)
    assert months[-1] == ("1001-01", 1)
    assert len(months) == 14
    assert sum(n for _, n in months) == 2


async def test_contacts_without_a_creation_date_count_but_chart_no_month(database):
    undated = contact_doc("a@x.test")
    del undated["createdAt"]
    await add_contacts(database, undated, contact_doc("b@x.test", created=on(2025, 5)))
    stats = await contact_stats(database, SHOP, MINE)
    assert stats.contacts == 2
    assert stats.new_contacts_by_month == [("2025-05", 1)]

    await database.contacts.delete_many({"createdAt": {"$exists": True}})
    stats = await contact_stats(database, SHOP, MINE)
    assert stats.contacts == 1
    assert stats.new_contacts_by_month == []


# -- labels ---------------------------------------------------------------------


async def test_labels_rank_by_contacts_then_key_with_the_shops_names(database):
    await name_labels(database, {"vip": "VIP", "b2b": "B2B", "news": "Newsletter"})
    await name_labels(database, {"vip": "Someone else's VIP", "zz": "Other"}, shop=OTHER_SHOP)
    await add_contacts(
        database,
        labelled("a@x.test", ["vip", "news", "zz"]),
        labelled("b@x.test", ["vip", "b2b"]),
        labelled("c@x.test", ["vip", "news"]),
        labelled("d@x.test", ["b2b"]),
        labelled("e@x.test", []),
    )
    stats = await contact_stats(database, SHOP, MINE)
    assert [(x.key, x.name, x.contact_count) for x in stats.top_labels] == [
        ("vip", "VIP", 3),
        ("b2b", "B2B", 2),
        ("news", "Newsletter", 2),
        ("zz", "zz", 1),  # no label of that key in this shop: the key stands in
    ]


async def test_top_labels_lists_ten_unless_asked_and_exactly_as_many_as_asked(database):
    keys = [f"l{n:03d}" for n in range(MAX_TOP_LABELS + 1)]
    # l000 on the most contacts, then falling: the ranking is the key order.
    docs = [labelled(f"c{i}@x.test", keys[: len(keys) - i * 25]) for i in range(11)]
    await add_contacts(database, *docs)
    assert TOP_LABELS == 10

    by_default = await contact_stats(database, SHOP, MINE)
    assert [x.key for x in by_default.top_labels] == keys[:10]
    assert by_default.top_labels[0].contact_count == 11

    one = await contact_stats(database, SHOP, MINE, 1)
    assert [(x.key, x.contact_count) for x in one.top_labels] == [("l000", 11)]

    eleven = await contact_stats(database, SHOP, MINE, 11)
    assert [x.key for x in eleven.top_labels] == keys[:11]

    most = await contact_stats(database, SHOP, MINE, MAX_TOP_LABELS)
    assert [x.key for x in most.top_labels] == keys[:MAX_TOP_LABELS]
    assert most.top_labels[-1].contact_count == 1

    every = await contact_stats(database, SHOP, MINE, MAX_TOP_LABELS + 1)
    assert [x.key for x in every.top_labels] == keys


async def test_the_raw_pipeline_lists_ten_labels_by_default(database):
    await add_contacts(database, labelled("a@x.test", [f"k{n:02d}" for n in range(12)]))
    rows = await (await database.contacts.aggregate(stats_pipeline(MINE))).to_list()
    assert [row["_id"] for row in rows[0]["labels"]] == [f"k{n:02d}" for n in range(10)]
    assert [row["n"] for row in rows[0]["labels"]] == [1] * 10
    assert rows[0]["totals"][0]["contacts"] == 1


async def test_the_raw_pipeline_lists_months_oldest_first(database):
    # Written newest first: the months come sorted by the pipeline, not by chance.
    created = [on(2025, 7), on(2024, 2), on(2025, 1), on(2023, 12), on(2024, 2)]
    await add_contacts(
        database, *[contact_doc(f"m{i}@x.test", created=c) for i, c in enumerate(created)]
    )
    rows = await (await database.contacts.aggregate(stats_pipeline(MINE))).to_list()
    assert [(row["_id"], row["n"]) for row in rows[0]["months"]] == [
        ("2023-12", 1),
        ("2024-02", 2),
        ("2025-01", 1),
        ("2025-07", 1),
    ]


async def test_label_names_are_read_only_for_the_listed_keys(database, commands):
    await name_labels(database, {"vip": "VIP"})
    await add_contacts(database, labelled("a@x.test", ["vip"]))
    commands.reset()
    stats = await contact_stats(database, SHOP, MINE)
    assert [(x.key, x.name) for x in stats.top_labels] == [("vip", "VIP")]
    finds = commands.documents("find", "labels")
    assert len(finds) == 1
    assert finds[0]["filter"] == {"shopId": SHOP, "key": {"$in": ["vip"]}}


async def test_no_label_names_are_read_when_no_contact_has_a_label(database, commands):
    await name_labels(database, {"vip": "VIP"})
    await add_contacts(database, contact_doc("a@x.test"))
    commands.reset()
    stats = await contact_stats(database, SHOP, MINE)
    assert stats.top_labels == []
    assert commands.documents("find", "labels") == []
