"""contactStats: every figure, exact money, filters and segments, one aggregation."""

from __future__ import annotations

import datetime as dt

from conftest import OTHER_SHOP, SHOP
from list_factories import add_contacts, contact_doc

STATS = """
query($filter: ContactFilter, $top: Int) {
  contactStats(filter: $filter, topLabels: $top) {
    contacts customers leads subscribed repeatCustomers
    totalRevenue { amount currencyCode }
    averageOrderValue { amount currencyCode }
    newContactsByMonth { month count }
    topLabels { name contactCount }
  }
}
"""


def on(year: int, month: int, day: int = 15) -> dt.datetime:
    return dt.datetime(year, month, day, 12, tzinfo=dt.UTC)


async def seed(database):
    await database.shops.update_one({"_id": SHOP}, {"$set": {"currency": "EUR"}})
    for key, name, count in (("vip", "VIP", 3), ("newsletter", "Newsletter", 2), ("b2b", "B2B", 1)):
        await database.labels.insert_one(
            {
                "shopId": SHOP,
                "key": key,
                "name": name,
                "contactCount": count,
                "createdAt": on(2024, 1),
            }
        )
    await add_contacts(
        database,
        contact_doc(
            "a@example.com",
            orders=1,
            spent="0.10",
            created=on(2024, 11, 30),
            labels=["VIP"],
            state="SUBSCRIBED",
        ),
        contact_doc(
            "b@example.com",
            orders=2,
            spent="0.20",
            created=on(2024, 11, 1),
            labels=["vip", "Newsletter"],
        ),
        contact_doc(
            "c@example.com",
            orders=4,
            spent="1000000000.33",
            created=on(2025, 2, 28),
            labels=["Vip", "Newsletter", "B2B"],
            state="SUBSCRIBED",
        ),
        contact_doc("d@example.com", created=on(2025, 2, 1), state="UNSUBSCRIBED"),
        contact_doc(
            "e@example.com",
            created=dt.datetime(2024, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
            state="SUBSCRIBED",
        ),
        contact_doc("x@example.com", shop=OTHER_SHOP, orders=9, spent="999", created=on(2020, 1)),
    )


async def test_every_figure_over_the_whole_shop(api, as_role, database):
    await seed(database)

    data = await as_role("READER").data(STATS)

    assert data["contactStats"] == {
        "contacts": 5,
        "customers": 3,
        "leads": 2,
        "subscribed": 3,
        "repeatCustomers": 2,
        # 0.10 + 0.20 + 1000000000.33 exactly: Decimal128 in the database, a string on the wire.
        "totalRevenue": {"amount": "1000000000.63", "currencyCode": "EUR"},
        # 1000000000.63 / 7 orders = 142857142.947..., to the cent.
        "averageOrderValue": {"amount": "142857142.95", "currencyCode": "EUR"},
        "newContactsByMonth": [
            {"month": "2024-11", "count": 2},
            {"month": "2024-12", "count": 1},
            {"month": "2025-01", "count": 0},
            {"month": "2025-02", "count": 2},
        ],
        "topLabels": [
            {"name": "VIP", "contactCount": 3},
            {"name": "Newsletter", "contactCount": 2},
            {"name": "B2B", "contactCount": 1},
        ],
    }


async def test_the_filter_and_segments_narrow_every_figure(api, database):
    await seed(database)

    customers = (
        await api.data(
            STATS,
            {"filter": {"kind": "CUSTOMER", "createdAfter": "2024-11-15T00:00:00Z"}, "top": 1},
        )
    )["contactStats"]
    assert customers == {
        "contacts": 2,
        "customers": 2,
        "leads": 0,
        "subscribed": 2,
        "repeatCustomers": 1,
        "totalRevenue": {"amount": "1000000000.43", "currencyCode": "EUR"},
        "averageOrderValue": {"amount": "200000000.09", "currencyCode": "EUR"},
        "newContactsByMonth": [
            {"month": "2024-11", "count": 1},
            {"month": "2024-12", "count": 0},
            {"month": "2025-01", "count": 0},
            {"month": "2025-02", "count": 1},
        ],
        "topLabels": [{"name": "VIP", "contactCount": 2}],
    }
    repeat = (
        await api.data(
            STATS, {"filter": {"segment": "REPEAT_CUSTOMERS", "labelsAll": ["newsletter"]}}
        )
    )["contactStats"]
    assert (repeat["contacts"], repeat["repeatCustomers"], repeat["totalRevenue"]["amount"]) == (
        2,
        2,
        "1000000000.53",
    )


async def test_no_contacts_no_orders(api, database):
    data = await api.data(STATS, {"filter": {"kind": "LEAD"}})
    assert data["contactStats"] == {
        "contacts": 0,
        "customers": 0,
        "leads": 0,
        "subscribed": 0,
        "repeatCustomers": 0,
        "totalRevenue": {"amount": "0", "currencyCode": "XXX"},
        "averageOrderValue": None,
        "newContactsByMonth": [],
        "topLabels": [],
    }


async def test_bad_arguments_are_bad_user_input_and_unknown_segments_not_found(api, database):
    for variables, code in (
        ({"top": 0}, "BAD_USER_INPUT"),
        ({"top": 251}, "BAD_USER_INPUT"),
        ({"filter": {"orderCountMin": -1}}, "BAD_USER_INPUT"),
        ({"filter": {"segment": "NOPE"}}, "NOT_FOUND"),
    ):
        body = await api.gql(STATS, variables)
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == code, variables


async def test_one_aggregation_and_one_label_lookup_however_many_contacts(api, database, commands):
    await seed(database)
    await add_contacts(
        database,
        *[
            contact_doc(f"more{i}@example.com", orders=i % 3, spent=str(i), labels=["VIP"])
            for i in range(300)
        ],
    )

    commands.reset()
    data = await api.data(STATS)

    assert data["contactStats"]["contacts"] == 305
    assert commands.on("contacts") == ["aggregate"]
    assert commands.on("labels") == ["find"]
