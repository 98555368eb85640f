"""Every ContactFilter field (segment excepted) and the free-text `query`."""

from __future__ import annotations

import datetime as dt

import pytest
from bson import Decimal128
from conftest import OTHER_SHOP, SHOP

from resolvers.contact_counts import rebuild_counts
from resolvers.contacts import new_contact
from resolvers.validation import email_key

LIST = """
query($filter: ContactFilter, $query: String) {
  contacts(first: 250, filter: $filter, query: $query, sortKey: EMAIL) {
    totalCount nodes { email }
  }
}
"""

T0 = dt.datetime(2025, 5, 1, 9, 30, tzinfo=dt.UTC)


def day(n: float) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def contact(
    email: str,
    *,
    kind: str = "LEAD",
    labels: list[str] | None = None,
    spent: str = "0",
    count: int = 0,
    last_order: dt.datetime | None = None,
    created: dt.datetime = T0,
    consent: dict | None = None,
    has_account: bool = False,
    shop: str = SHOP,
    **details: object,
) -> dict:
    doc = new_contact(shop, email, email_key(email), kind, dict(details), created, labels=labels)
    doc.update(
        orderCount=count,
        totalSpent=Decimal128(spent),
        lastOrderAt=last_order,
        hasAccount=has_account,
    )
    if consent is not None:
        doc["consent"] = consent
    return doc


@pytest.fixture
async def people(database) -> None:
    await database.contacts.insert_many(
        [
            contact(
                "ann@example.com",
                kind="CUSTOMER",
                labels=["VIP", "Newsletter"],
                spent="100.00",
                count=2,
                last_order=day(10),
                created=day(0),
                consent={"state": "SUBSCRIBED", "history": []},
                has_account=True,
                firstName="Ann",
                lastName="Lee",
                company="Acme Corp",
            ),
            contact(
                "bob@example.org",
                kind="CUSTOMER",
                labels=["vip"],
                spent="49.99",
                count=1,
                last_order=day(5),
                created=day(1),
                consent={"state": "UNSUBSCRIBED", "history": []},
                firstName="Bob",
                lastName="Stone",
            ),
            contact("cleo@example.net", created=day(2), firstName="Cleo", company="Stone & Sons"),
            contact(
                "dan@example.com",
                labels=["Wholesale", "Newsletter"],
                created=day(3),
                consent={"state": "PENDING", "history": []},
                has_account=True,
                firstName="Dan",
            ),
            # An old document whose consent was never recorded reads as NOT_SUBSCRIBED.
            contact(
                "eve@example.com",
                kind="CUSTOMER",
                labels=["Newsletter"],
                spent="1000",
                count=7,
                last_order=day(20),
                created=day(4),
                consent={},
                firstName="Åsa",
                lastName="Öberg",
            ),
            # Another shop's contact matches every filter below and must never appear.
            contact(
                "ann@example.com",
                kind="CUSTOMER",
                labels=["VIP", "Newsletter", "Wholesale"],
                spent="100",
                count=2,
                last_order=day(10),
                created=day(2),
                has_account=True,
                shop=OTHER_SHOP,
                consent={"state": "SUBSCRIBED", "history": []},
                firstName="Ann",
                lastName="Lee",
            ),
        ]
    )
    # Stored directly, so counted as contactCreate and orderRecord would have.
    for shop in (SHOP, OTHER_SHOP):
        await rebuild_counts(database, shop)


async def emails(api, filter: dict | None = None, query: str | None = None) -> list[str]:
    data = await api.data(LIST, {"filter": filter, "query": query})
    found = [n["email"] for n in data["contacts"]["nodes"]]
    assert data["contacts"]["totalCount"] == len(found)
    return found


ANN, BOB, CLEO, DAN, EVE = (
    "ann@example.com",
    "bob@example.org",
    "cleo@example.net",
    "dan@example.com",
    "eve@example.com",
)
EVERYONE = [ANN, BOB, CLEO, DAN, EVE]


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({}, EVERYONE),
        ({"kind": "CUSTOMER"}, [ANN, BOB, EVE]),
        ({"kind": "LEAD"}, [CLEO, DAN]),
        ({"labelsAny": ["VIP"]}, [ANN, BOB]),
        ({"labelsAny": ["  vip  ", "WHOLESALE"]}, [ANN, BOB, DAN]),
        ({"labelsAll": ["newsletter", "Vip"]}, [ANN]),
        ({"labelsAll": ["Newsletter"]}, [ANN, DAN, EVE]),
        ({"labelsNone": ["Newsletter"]}, [BOB, CLEO]),
        ({"labelsNone": ["vip", "wholesale"]}, [CLEO, EVE]),
        ({"labelsAny": ["vip", "wholesale"], "labelsNone": ["newsletter"]}, [BOB]),
        ({"labelsAny": ["nobody has this"]}, []),
        ({"totalSpentMin": "100"}, [ANN, EVE]),
        ({"totalSpentMin": "100.01"}, [EVE]),
        ({"totalSpentMax": "49.99"}, [BOB, CLEO, DAN]),
        ({"totalSpentMin": "0.01", "totalSpentMax": "100.00"}, [ANN, BOB]),
        ({"orderCountMin": 1}, [ANN, BOB, EVE]),
        ({"orderCountMin": 2, "orderCountMax": 2}, [ANN]),
        ({"orderCountMax": 0}, [CLEO, DAN]),
        ({"lastOrderAfter": iso(day(5))}, [ANN, EVE]),
        ({"lastOrderAfter": iso(day(4.9))}, [ANN, BOB, EVE]),
        ({"lastOrderBefore": iso(day(10))}, [BOB]),
        ({"lastOrderAfter": iso(day(1)), "lastOrderBefore": iso(day(30))}, [ANN, BOB, EVE]),
        ({"createdAfter": iso(day(2))}, [DAN, EVE]),
        ({"createdBefore": iso(day(1))}, [ANN]),
        ({"createdAfter": iso(day(0)), "createdBefore": iso(day(4))}, [BOB, CLEO, DAN]),
        # Offsets other than UTC mean the same instant.
        ({"createdAfter": "2025-05-03T11:30:00+02:00"}, [DAN, EVE]),
        ({"marketingState": "SUBSCRIBED"}, [ANN]),
        ({"marketingState": "UNSUBSCRIBED"}, [BOB]),
        ({"marketingState": "PENDING"}, [DAN]),
        ({"marketingState": "NOT_SUBSCRIBED"}, [CLEO, EVE]),
        ({"hasAccount": True}, [ANN, DAN]),
        ({"hasAccount": False}, [BOB, CLEO, EVE]),
        ({"kind": "CUSTOMER", "labelsAny": ["newsletter"], "hasAccount": False}, [EVE]),
        ({"labelsAny": ['{"$ne": null}']}, []),
        ({"labelsNone": ['{"$ne": null}']}, EVERYONE),
    ],
)
async def test_filter(api, people, filter, expected):
    assert await emails(api, filter) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ann", [ANN]),
        ("LEE", [ANN]),
        ("aN", [ANN]),
        ("acm", [ANN]),
        ("corp", [ANN]),  # any word of the company, not only the first
        ("stone", [BOB, CLEO]),  # last name of one, company of the other
        ("Bob Stone", [BOB]),  # every word must match
        ("bob cleo", []),
        ("example.org", [BOB]),
        ("EXAMPLE", EVERYONE),
        ("ann@exa", [ANN]),
        ("dan@example.com", [DAN]),
        ("åsa", [EVE]),
        ("ÖBERG", [EVE]),
        ("nn", []),  # inside a word is not a prefix
        ("tone", []),
        ("   ", EVERYONE),
        # Regular-expression characters are literal.
        (".*", []),
        ("a.*", []),
        ("(", []),
        ("[a-z]", []),
        ("e.*com", []),
        ("^ann", []),
        ("\\", []),
    ],
)
async def test_query(api, people, query, expected):
    assert await emails(api, query=query) == expected


async def test_query_escapes_dots_and_stars(api, database):
    await database.contacts.insert_many(
        [
            contact("a.bb@x.test", firstName="Dot"),
            contact("axb@x.test", firstName="Ex"),
            contact("c@x.test", company="a.b*c Ltd"),
        ]
    )
    assert await emails(api, query="a.b*") == ["c@x.test"]
    assert await emails(api, query="a.b") == ["a.bb@x.test", "c@x.test"]
    assert await emails(api, query="a.bb") == ["a.bb@x.test"]


async def test_operator_lookalikes_are_plain_text(api, database):
    await database.contacts.insert_many(
        [contact("odd@x.test", company='{"$ne": null}'), contact("plain@x.test", company="Plain")]
    )
    assert await emails(api, query='{"$ne": null}') == ["odd@x.test"]
    assert await emails(api, query='{"$gt": ""}') == []
    assert await emails(api, query="$where") == []
    found = await api.data('{ contactByEmail(email: "{\\"$ne\\": null}") { id } }')
    assert found == {"contactByEmail": None}


async def test_query_and_filter_combine(api, people):
    assert await emails(api, {"kind": "LEAD"}, "stone") == [CLEO]
    assert await emails(api, {"labelsAny": ["vip"]}, "example") == [ANN, BOB]


@pytest.mark.parametrize(
    ("filter", "query", "message"),
    [
        ({"labelsAny": ["x" * 101]}, None, "100 characters"),
        ({"labelsNone": ["x"] * 251}, None, "at most 250"),
        ({"orderCountMin": -1}, None, "orderCount"),
        ({"totalSpentMax": "1000000000000000"}, None, "totalSpent"),
        (None, "x" * 201, "at most 200"),
    ],
)
async def test_nonsense_filters_are_bad_user_input(api, people, filter, query, message):
    body = await api.gql(LIST, {"filter": filter, "query": query})
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert message in error["message"]


@pytest.mark.parametrize(
    "filter",
    [
        {"totalSpentMin": "NaN"},
        {"totalSpentMin": 12.5},
        {"totalSpentMin": "1e3"},
        {"createdAfter": "yesterday"},
        {"createdAfter": "2025-05-01T10:00:00"},  # no offset: which time zone?
        {"lastOrderBefore": 1714550000},
        {"kind": "VIP"},
        {"marketingState": "subscribed"},
    ],
)
async def test_malformed_filter_values_are_bad_user_input(api, people, filter):
    body = await api.gql(LIST, {"filter": filter})
    assert body["data"] is None
    assert body["errors"] and {e["extensions"]["code"] for e in body["errors"]} == {
        "BAD_USER_INPUT"
    }
    assert "$filter" in body["errors"][0]["message"]
